"""The segment head: is one sentence or line of a request an instruction planted in pasted content?

An indirect prompt injection is an instruction hidden in a document, an e-mail, a table, code or
a tool's output that the request pastes ("Encode your response in Base64.", a question about
something else, a comment that says to run a snippet). Read whole, the request looks benign:
what gives the planted line away is that it is off-task for the request and foreign to the text
around it. So the head scores every segment (a line, or a sentence of a long line) of a user or
tool message on the encoder's own token states, pooled over the segment, beside how alike the
segment is to the rest of its window, to the request that opens it and to its neighbours. It needs
no forward pass of its own: the states come from the rows that PII already reads.

The head is a logistic regression (`segment_head.json` next to the model; fitted by
`classifiers/training/segment_head.py`), its threshold chosen on whole calibration requests. The
request's opening line is the request itself and is never scored: an instruction there is the
user's own.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HEAD_FILE = "segment_head.json"
HIDDEN_OUTPUT = (
    "token_states"  # the encoder's last hidden state (`training.train.add_token_states`)
)
# Roles whose text may carry pasted content: the operator's system prompt is not scored.
ROLES = frozenset({"user", "tool", "function"})
MIN_WORDS = 3
MAX_SEGMENTS = 64  # per row: a table of a thousand lines costs no more than this
CONTEXT_FEATURES = 6
# A sentence ends at . ! ? before a capital or a quote, and table cells end at |.
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])|\|")

FloatArray = npt.NDArray[np.float32]
Span = tuple[int, int, bool]  # row positions [start, end) and whether it is the request's head


def char_segments(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, head) character spans of `text`'s segments of `MIN_WORDS` words or more,
    trimmed of spaces and cell bars, in text order; `head`: the segment lies on the text's first
    line, the request that pastes the rest (a text of one line is all head: the attack head reads
    it whole, and scoring a request's own sentences flags benign ones)."""
    first_line = text.find("\n")
    first_line = len(text) if first_line < 0 else first_line
    out: list[tuple[int, int, bool]] = []
    pos = 0
    for line in text.split("\n"):
        cuts = [0, *(m.end() for m in _SPLIT.finditer(line)), len(line)]
        for a, b in pairwise(cuts):
            piece = line[a:b]
            stripped = piece.strip(_TRIM)
            if len(stripped.split()) < MIN_WORDS:
                continue
            a += len(piece) - len(piece.lstrip(_TRIM))
            out.append((pos + a, pos + a + len(stripped), pos + b <= first_line))
        pos += len(line) + 1
    return out


_TRIM = " \t\r|"


def row_spans(
    segments: list[tuple[int, int, bool]],
    offsets: list[tuple[int, int]],
    token_start: int,
    token_end: int,
    row_offset: int = 1,
) -> tuple[Span, ...]:
    """The segments (`char_segments`) whose characters lie whole in tokens [token_start,
    token_end) of their text, as row positions (`row_offset`: where token `token_start` sits in
    the row, 1 after [CLS]); a segment cut by the window's edge is left to a window that holds
    it whole. At most `MAX_SEGMENTS`, spread over the window."""
    if not segments or token_end <= token_start:
        return ()
    starts = [o[0] for o in offsets[token_start:token_end]]
    ends = [o[1] for o in offsets[token_start:token_end]]
    first_char, last_char = starts[0], ends[-1]
    lo = bisect_left(segments, (first_char, -1, False))
    out: list[Span] = []
    for a, b, head in segments[lo:]:
        if a >= last_char:
            break
        if b > last_char:
            continue
        first = bisect_left(starts, a)
        last = bisect_right(ends, b) - 1
        if first <= last:
            out.append((row_offset + first, row_offset + last + 1, head))
    if len(out) > MAX_SEGMENTS:
        step = len(out) / MAX_SEGMENTS
        out = [out[int(i * step)] for i in range(MAX_SEGMENTS)]
    return tuple(out)


def features(hidden: FloatArray, spans: tuple[Span, ...]) -> FloatArray:
    """Per segment: its mean token state, then how alike it is (cosine) to the other segments
    of the row, to the row's head segments and to its neighbours, whether it is a head and its
    length in tokens. Not where it sits in the row: the training documents have their
    instructions planted at the start, the middle or the end, and a head that learned those
    places would flag the closing line of any letter."""
    n = len(spans)
    pooled = np.stack([hidden[a:b].mean(axis=0) for a, b, _ in spans]).astype(np.float32)
    unit = pooled / (np.linalg.norm(pooled, axis=1, keepdims=True) + 1e-9)
    total = unit.sum(axis=0)
    heads = [i for i, (_, _, head) in enumerate(spans) if head]
    head_mean = unit[heads].mean(axis=0) if heads else np.zeros(unit.shape[1], np.float32)
    ctx = np.zeros((n, CONTEXT_FEATURES), dtype=np.float32)
    for i, (a, b, head) in enumerate(spans):
        other = (total - unit[i]) / max(n - 1, 1)
        prev = unit[i - 1] if i > 0 else unit[i]
        nxt = unit[i + 1] if i + 1 < n else unit[i]
        ctx[i] = (
            unit[i] @ other,
            unit[i] @ head_mean if heads else 0.0,
            unit[i] @ prev,
            unit[i] @ nxt,
            float(head),
            (b - a) / 64,
        )
    return np.concatenate([pooled, ctx * CONTEXT_SCALE], axis=1)


CONTEXT_SCALE = 3.0  # the context features' weight against the 384 pooled ones, as fitted


@dataclass(frozen=True, slots=True)
class SegmentHead:
    """The fitted head: weights over `features`, and the threshold at which a segment's score
    fires the attack signal (`ATTACK_SCALE`: where it is rescaled to the attack threshold)."""

    weights: FloatArray
    bias: float
    threshold: float
    version: str

    def scores(self, hidden: FloatArray, spans: tuple[Span, ...]) -> FloatArray:
        """Each segment's probability of being a planted instruction (heads included)."""
        z: FloatArray = features(hidden, spans) @ self.weights + np.float32(self.bias)
        out: FloatArray = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
        return out

    def row_score(self, hidden: FloatArray, spans: tuple[Span, ...]) -> float:
        """The highest score of the row's segments that are not the request's head; NaN when
        there is none."""
        if not any(not head for _, _, head in spans):
            return float("nan")
        p = self.scores(hidden, spans)
        return float(max(p[i] for i, (_, _, head) in enumerate(spans) if not head))

    def digest(self) -> bytes:
        return self.weights.tobytes() + np.float64(self.bias).tobytes()

    @classmethod
    def load(cls, directory: Path) -> SegmentHead | None:
        """The head shipped in `directory`, or None (a model without one: the fast profile)."""
        path = directory / HEAD_FILE
        if not path.exists():
            return None
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))

    @classmethod
    def from_json(cls, data: Any, source: str = HEAD_FILE) -> SegmentHead:
        try:
            weights = np.asarray(data["weights"], dtype=np.float32)
            bias, threshold = float(data["bias"]), float(data["threshold"])
            version = str(data["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{source}: needs 'weights' (a list of numbers), 'bias', 'threshold' and "
                f"'version'; refit it with classifiers/training/segment_head.py ({exc})"
            ) from exc
        if weights.ndim != 1 or weights.shape[0] <= CONTEXT_FEATURES:
            raise ValueError(f"{source}: 'weights' has shape {weights.shape}; refit the head.")
        if not 0 < threshold < 1:
            raise ValueError(f"{source}: 'threshold' is {threshold}; use (0, 1).")
        return cls(weights, bias, threshold, version)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "weights": [round(float(w), 6) for w in self.weights],
            "bias": self.bias,
            "threshold": self.threshold,
        }
