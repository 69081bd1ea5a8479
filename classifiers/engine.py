"""`SignalEngine`: chat messages or text in, `Signals` out, from one fused ONNX forward pass.

One request becomes a few rows of the model's input: the sequence window (domain, attack and
difficulty read it) and the PII windows of every message. All rows of the requests in a batch
run together, sorted by length and padded only to the longest row of each forward.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from classifiers import pii_scan
from classifiers.batching import BatchStats, MicroBatcher
from classifiers.pii import (
    VALIDATED_TYPES,
    FloatArray,
    IntArray,
    TagScheme,
    merge,
    plausible,
    tidy_span,
    to_words,
)
from classifiers.session import create_session
from classifiers.signals import (
    AttackSignal,
    BatchTiming,
    DifficultySignal,
    DomainSignal,
    PiiEntity,
    Signals,
)
from classifiers.spec import INPUTS, MODEL_FILE, OUTPUTS, SPEC_FILE, TOKENIZER_FILE, ModelSpec
from classifiers.text import message_text, part_joins
from classifiers.windows import (
    EncodedText,
    IdArray,
    TextTokenizer,
    Window,
    last_user_index,
    pii_windows,
    sequence_window,
)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models"
MAX_LENGTH = 512  # the encoder's position embeddings

ChatMessages = Sequence[Mapping[str, Any]]
ClassifyInput = str | ChatMessages


class InvalidInput(ValueError):
    """The input is not a text or a list of OpenAI chat messages; the message says where."""


@dataclass(frozen=True, slots=True)
class Job:
    """One request, validated: the text and role of each message."""

    texts: tuple[str, ...]
    roles: tuple[str, ...]
    chat: bool  # PII spans name their message only for chat input
    # (path, text) of the request's other text-bearing fields: the pattern detectors read them.
    fields: tuple[tuple[str, str], ...] = ()
    part_joins: tuple[tuple[int, ...], ...] = ()  # per message: where its text parts meet

    @classmethod
    def of(cls, value: ClassifyInput) -> Job:
        """Validate a text or a list of chat messages; raises `InvalidInput`."""
        if isinstance(value, str):
            return cls((value,), ("user",), chat=False)
        if isinstance(value, bytes | bytearray) or not isinstance(value, Sequence):
            raise InvalidInput(
                f"Expected a text or a list of chat messages, got {type(value).__name__}."
            )
        if not value:
            raise InvalidInput("'messages' is empty; send at least one message.")
        texts, roles, joins = [], [], []
        for i, message in enumerate(value):
            if not isinstance(message, Mapping):
                raise InvalidInput(
                    f"messages[{i}] must be an object, not {type(message).__name__}."
                )
            role = message.get("role", "user")
            content = message.get("content")
            if not isinstance(role, str):
                raise InvalidInput(f"messages[{i}].role must be a string, not {role!r}.")
            if content is not None and not isinstance(content, str | list):
                raise InvalidInput(
                    f"messages[{i}].content must be a string or a list of content parts, "
                    f"not {type(content).__name__}."
                )
            texts.append(message_text(message))
            roles.append(role)
            joins.append(part_joins(message))
        return cls(tuple(texts), tuple(roles), chat=True, part_joins=tuple(joins))


@dataclass(frozen=True, slots=True)
class _Plan:
    """Where one job's rows are: the sequence row and each message's PII windows."""

    encoded: list[EncodedText]
    sequence_row: int
    windows: list[list[tuple[Window, int]]]  # per message: (window, row)


@dataclass(frozen=True, slots=True)
class _Outputs:
    domain: FloatArray
    attack: FloatArray
    difficulty: FloatArray
    pii: list[FloatArray]  # per row: the tokens between [CLS] and the last [SEP]


class SignalEngine:
    """Classifies requests with the fused signals model; concurrent calls are micro-batched."""

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: TextTokenizer,
        spec: ModelSpec,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 1.0,
        max_length: int | None = None,
        context_tokens: int = 32,
        pii_overlap: int | None = None,
    ) -> None:
        self.max_length = max_length or min(spec.max_length, 256)
        if not 16 <= self.max_length <= MAX_LENGTH:
            raise ValueError(f"max_length is {self.max_length}; use 16..{MAX_LENGTH} tokens.")
        self._window = self.max_length - 2
        # Enough context either side of a window edge; a quarter of the window at most.
        pii_overlap = min(32, self._window // 4) if pii_overlap is None else pii_overlap
        if not 0 <= pii_overlap <= self._window // 2:
            raise ValueError(f"pii_overlap is {pii_overlap}; use 0..{self._window // 2} tokens.")
        _check_graph(session, spec)
        self.session = session
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_batch = max_batch
        self.context_tokens = context_tokens
        self.pii_overlap = pii_overlap
        self._scheme = TagScheme(spec.pii_tags)
        self._batcher: MicroBatcher[Job, Signals] = MicroBatcher(
            self._run, max_batch=max_batch, max_wait_ms=max_wait_ms, weight=self._rows_estimate
        )

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        *,
        force_cpu: bool = False,
        max_batch: int = 32,
        max_wait_ms: float = 1.0,
        max_length: int | None = None,
        intra_op_threads: int | None = None,
        context_tokens: int = 32,
        pii_overlap: int | None = None,
    ) -> SignalEngine:
        """Load the model, tokenizer and `signals.json` from `model_dir` (default: the package's).

        `max_length` bounds every row in tokens (default: the model's, at most 256); a request's
        last user turn keeps its head and tail, and long messages are read in PII windows.
        """
        directory = model_dir or DEFAULT_MODEL_DIR
        spec = ModelSpec.load(directory / SPEC_FILE)
        tokenizer = TextTokenizer.from_file(directory / TOKENIZER_FILE)
        session = create_session(
            directory / MODEL_FILE, force_cpu=force_cpu, intra_op_threads=intra_op_threads
        )
        return cls(
            session,
            tokenizer,
            spec,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_length=max_length,
            context_tokens=context_tokens,
            pii_overlap=pii_overlap,
        )

    @property
    def provider(self) -> str:
        """The execution provider that runs the model (`CUDAExecutionProvider` or `CPU...`)."""
        return str(self.session.get_providers()[0])

    @property
    def batch_stats(self) -> BatchStats:
        return self._batcher.stats

    async def classify_messages(
        self, messages: ChatMessages, fields: Sequence[tuple[str, str]] = ()
    ) -> Signals:
        """The signals of an OpenAI chat request; PII spans carry their message index, or the
        path of the other field (`fields`: (path, text) pairs) they were found in."""
        if isinstance(messages, str):
            raise InvalidInput("'messages' must be a list of chat messages, not a string.")
        return await self._batcher.submit(replace(Job.of(messages), fields=tuple(fields)))

    async def classify_text(self, text: str) -> Signals:
        """The signals of one text, read as a single user turn."""
        if not isinstance(text, str):
            raise InvalidInput(f"The text must be a string, not {type(text).__name__}.")
        return await self._batcher.submit(Job.of(text))

    def classify_batch(self, inputs: Sequence[ClassifyInput]) -> list[Signals]:
        """Classify many inputs synchronously (offline use); raises on the first bad input."""
        jobs = [Job.of(value) for value in inputs]
        results: list[Signals] = []
        for start in range(0, len(jobs), self.max_batch):
            for result in self._run(jobs[start : start + self.max_batch]):
                if isinstance(result, BaseException):
                    raise result
                results.append(result)
        return results

    def model_rows(self, value: ClassifyInput) -> list[IdArray]:
        """The rows of the model's input that one request becomes (`[CLS] ... [SEP]` token ids):
        what the encoder runs for it, e.g. to time the bare forward pass of the same request."""
        job = Job.of(value)
        rows: list[IdArray] = []
        self._plan(job, self.tokenizer.encode(list(job.texts)), rows)
        return rows

    def close(self) -> None:
        """Fail queued calls and stop the worker thread; call from the event loop's thread."""
        self._batcher.close()

    # -- the worker thread -----------------------------------------------------------------

    def _rows_estimate(self, job: Job) -> int:
        # About four characters a token: the rows this job adds to a batch, before tokenizing.
        windows = sum(math.ceil(len(t) / (4 * self._window)) for t in job.texts)
        return windows + (len(job.texts) > 1)

    def _run(self, jobs: Sequence[Job]) -> list[Signals | BaseException]:
        tokenize_start = time.time_ns()
        encoded = self.tokenizer.encode([text for job in jobs for text in job.texts])
        rows: list[IdArray] = []
        plans: list[_Plan] = []
        at = 0
        for job in jobs:
            plans.append(self._plan(job, encoded[at : at + len(job.texts)], rows))
            at += len(job.texts)
        inference_start = time.time_ns()
        outputs = self._forward(rows)
        timing = BatchTiming(
            len(jobs), len(rows), tokenize_start, inference_start, inference_start, time.time_ns()
        )
        results: list[Signals | BaseException] = []
        for job, plan in zip(jobs, plans, strict=True):
            try:
                results.append(replace(self._signals(job, plan, outputs), timing=timing))
            except Exception as exc:  # one request's failure is only that request's
                results.append(exc)
        return results

    def _plan(self, job: Job, encoded: list[EncodedText], rows: list[IdArray]) -> _Plan:
        sequence = sequence_window(
            self.tokenizer,
            encoded,
            job.roles,
            max_length=self.max_length,
            context_tokens=self.context_tokens,
        )
        user = last_user_index(job.roles) if encoded else -1
        sequence_row: int | None = None
        windows: list[list[tuple[Window, int]]] = []
        for m, message in enumerate(encoded):
            mine = []
            spans = pii_windows(len(message), self._window, self.pii_overlap)
            for window in spans:
                if m == user and len(spans) == 1 and _opens_with(sequence, message.ids):
                    # The whole user turn leads the sequence row ([CLS] turn [SEP] context):
                    # one row feeds every head and the turn's PII tags.
                    sequence_row = len(rows)
                    rows.append(sequence)
                else:
                    rows.append(self.tokenizer.wrap(message.ids[window.start : window.end]))
                mine.append((window, len(rows) - 1))
            windows.append(mine)
        if sequence_row is None:
            sequence_row = len(rows)
            rows.append(sequence)
        return _Plan(encoded, sequence_row, windows)

    def _forward(self, rows: list[IdArray]) -> _Outputs:
        n = len(rows)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.intp, count=n)
        order = np.argsort(lengths, kind="stable")
        domain = np.empty((n, len(self.spec.domain_labels)), dtype=np.float32)
        attack = np.empty(n, dtype=np.float32)
        difficulty = np.empty(n, dtype=np.float32)
        pii: list[FloatArray] = [domain[:0]] * n
        for chunk in _length_buckets(order, lengths, self.max_batch):
            sizes = lengths[chunk]
            ids = np.full((len(chunk), int(sizes.max())), self.tokenizer.pad_id, dtype=np.int64)
            for r, i in enumerate(chunk):
                ids[r, : sizes[r]] = rows[i]
            mask = (np.arange(ids.shape[1]) < sizes[:, None]).astype(np.int64)
            d, a, f, p = self.session.run(OUTPUTS, {INPUTS[0]: ids, INPUTS[1]: mask})
            domain[chunk] = d
            attack[chunk] = a
            difficulty[chunk] = f
            for r, i in enumerate(chunk):
                pii[i] = p[r, 1 : sizes[r] - 1]
        return _Outputs(domain, attack, difficulty, pii)

    def _signals(self, job: Job, plan: _Plan, outputs: _Outputs) -> Signals:
        row = plan.sequence_row
        labels = self.spec.domain_labels
        probs = outputs.domain[row].tolist()
        attack = float(outputs.attack[row])
        entities: list[PiiEntity] = []
        # Patterns read every text and field together, so a value split between two is found.
        texts = [*job.texts, *(text for _, text in job.fields)]
        found = pii_scan.scan(texts, len(job.texts), job.part_joins)
        for m, (text, message, windows) in enumerate(
            zip(job.texts, plan.encoded, plan.windows, strict=True)
        ):
            if not text:
                continue
            index = m if job.chat else None
            patterns = [replace(hit, message=index) for hit in found[m]]
            entities += merge(self._model_pii(text, message, windows, index, outputs), patterns)
        for (path, _), hits in zip(job.fields, found[len(job.texts) :], strict=True):
            entities += [replace(hit, field=path) for hit in hits]
        return Signals(
            domain=DomainSignal(
                labels[int(np.argmax(outputs.domain[row]))], dict(zip(labels, probs, strict=True))
            ),
            prompt_attack=AttackSignal(attack, attack >= self.spec.thresholds.prompt_attack),
            pii=tuple(entities),
            difficulty=DifficultySignal(float(outputs.difficulty[row])),
            tokens=sum(len(message) for message in plan.encoded),
        )

    def _model_pii(
        self,
        text: str,
        message: EncodedText,
        windows: list[tuple[Window, int]],
        index: int | None,
        outputs: _Outputs,
    ) -> list[PiiEntity]:
        if not windows:
            return []
        if len(windows) == 1:  # the row may run on past the message (the sequence row's context)
            window, row = windows[0]
            probs = outputs.pii[row][: window.end - window.start]
        else:  # each token from the window that owns it
            probs = np.concatenate(
                [
                    outputs.pii[row][w.own_start - w.start : w.own_end - w.start]
                    for w, row in windows
                ]
            )
        spans = self._scheme.decode(probs, self.spec.thresholds.pii_token)
        if not spans:
            return []
        offsets = message.encoding.offsets  # built on each access: read it once
        found = []
        for s in spans:
            if s.type in VALIDATED_TYPES:
                continue  # the validators own these types: an unvalidated model span is noise
            bounds = tidy_span(
                text, *to_words(text, offsets[s.first][0], offsets[s.last][1]), s.type
            )
            if bounds is not None and plausible(s.type, text[bounds[0] : bounds[1]]):
                found.append(PiiEntity(s.type, *bounds, s.score, index))
        return found


def _opens_with(row: IdArray, ids: IdArray) -> bool:
    """Whether `row` is [CLS] followed by all of `ids` (then [SEP] and anything)."""
    return len(row) >= len(ids) + 2 and np.array_equal(row[1 : len(ids) + 1], ids)


# What one more `session.run` costs, in tokens of encoder work: ~1 ms of fixed cost per run on
# the bench CPU, where a token costs ~0.07 ms (bench/results/classifier.json, 16 vs 128 tokens).
_RUN_COST_TOKENS = 16


def _length_buckets(order: IntArray, lengths: IntArray, max_batch: int) -> list[IntArray]:
    """Rows (`order`: sorted by length) in batches of at most `max_batch`, split where that is
    cheapest: every row is padded to its batch's longest, and the encoder's cost grows with the
    padded tokens, so a short system prompt must not ride with a long user turn, nor two short
    PII windows with the long sequence row; each extra run costs `_RUN_COST_TOKENS`."""
    n = len(order)
    sizes = lengths[order]
    best = [0] * (n + 1)  # best[j]: the cheapest cost of rows [0, j)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        best[j], cut[j] = min(
            (best[i] + (j - i) * int(sizes[j - 1]) + _RUN_COST_TOKENS, i)
            for i in range(max(0, j - max_batch), j)
        )
    buckets: list[IntArray] = []
    j = n
    while j > 0:
        buckets.append(order[cut[j] : j])
        j = cut[j]
    return buckets[::-1]


def _check_graph(session: ort.InferenceSession, spec: ModelSpec) -> None:
    """Fail at load time, naming the tensor, when the graph and signals.json disagree."""
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    missing = [n for n in INPUTS if n not in inputs] + [n for n in OUTPUTS if n not in outputs]
    if missing:
        raise ValueError(f"The signals model lacks the tensors {missing}; re-export it.")
    for name, width in (
        ("domain_probs", len(spec.domain_labels)),
        ("pii_probs", len(spec.pii_tags)),
    ):
        size = outputs[name][-1]
        if isinstance(size, int) and size != width:
            raise ValueError(
                f"The model's {name} has {size} columns but signals.json names {width} labels."
            )
