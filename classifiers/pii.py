"""From per-token PII probabilities to entity spans, merged with the validated pattern hits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from classifiers.signals import PiiEntity

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class TokenSpan:
    """Tokens `first..last` (inclusive) tagged as one entity of `type`, with its mean score."""

    type: str
    first: int
    last: int
    score: float


class TagScheme:
    """The BIO tag set of the model (`O`, `B-TYPE`, `I-TYPE`, ...) as index arrays."""

    def __init__(self, tags: Sequence[str]) -> None:
        self.types = tuple(dict.fromkeys(t[2:] for t in tags[1:]))
        index = {t: i for i, t in enumerate(self.types)}
        self.type_of: IntArray = np.array([-1, *(index[t[2:]] for t in tags[1:])], dtype=np.intp)
        self.begins = np.array([t.startswith("B-") for t in tags], dtype=bool)
        self.b_col: IntArray = np.array([tags.index(f"B-{t}") for t in self.types], dtype=np.intp)
        self.i_col: IntArray = np.array([tags.index(f"I-{t}") for t in self.types], dtype=np.intp)

    def decode(self, probs: FloatArray, threshold: float) -> list[TokenSpan]:
        """BIO spans: a token is an entity when 1 - P(O) >= threshold, tagged with its best tag.

        A B- tag, a gap, or a change of type opens a new span (so an I- after O opens one too);
        a span's score is the mean over its tokens of P(B-type) + P(I-type).
        """
        tokens = np.flatnonzero(probs[:, 0] <= 1.0 - threshold)
        if tokens.size == 0:
            return []
        tags = probs[tokens, 1:].argmax(axis=1) + 1
        types = self.type_of[tags]
        scores = probs[tokens, self.b_col[types]] + probs[tokens, self.i_col[types]]
        opens = np.ones(tokens.size, dtype=bool)
        opens[1:] = (np.diff(tokens) != 1) | (types[1:] != types[:-1]) | self.begins[tags[1:]]
        starts = np.flatnonzero(opens)
        ends = np.append(starts[1:], tokens.size)
        means = np.add.reduceat(scores, starts) / (ends - starts)
        return [
            TokenSpan(self.types[types[s]], int(tokens[s]), int(tokens[e - 1]), float(m))
            for s, e, m in zip(starts, ends, means, strict=True)
        ]


def to_words(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen `[start, end)` to whole words, so a span never ends inside a word piece."""
    while 0 < start < len(text) and text[start - 1].isalnum() and text[start].isalnum():
        start -= 1
    while 0 < end < len(text) and text[end].isalnum() and text[end - 1].isalnum():
        end += 1
    return start, end


def merge(model: Iterable[PiiEntity], patterns: Sequence[PiiEntity]) -> list[PiiEntity]:
    """Pattern hits win their spans: a model span overlapping any validated hit is dropped."""
    kept = [m for m in model if not any(m.start < p.end and p.start < m.end for p in patterns)]
    return sorted([*kept, *patterns], key=lambda e: (e.start, e.end))
