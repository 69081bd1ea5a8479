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
        """Spans as the model was trained and calibrated to be read (`pii_decoding` in
        signals.json): a token is an entity token when 1 - P(O) >= threshold; each maximal run of
        consecutive entity tokens is one span, typed by the largest summed P(B-type) + P(I-type)
        over the run; its score is that mass per token."""
        tokens = np.flatnonzero(probs[:, 0] <= 1.0 - threshold)
        if tokens.size == 0:
            return []
        opens = np.ones(tokens.size, dtype=bool)
        opens[1:] = np.diff(tokens) != 1
        starts = np.flatnonzero(opens)
        ends = np.append(starts[1:], tokens.size)
        rows = probs[tokens]
        mass = np.add.reduceat(rows[:, self.b_col] + rows[:, self.i_col], starts, axis=0)
        types = mass.argmax(axis=1)
        scores = mass[np.arange(types.size), types] / (ends - starts)
        return [
            TokenSpan(self.types[t], int(tokens[s]), int(tokens[e - 1]), float(m))
            for t, s, e, m in zip(types, starts, ends, scores, strict=True)
        ]


def to_words(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen `[start, end)` to whole words, so a span never ends inside a word piece."""
    while 0 < start < len(text) and text[start - 1].isalnum() and text[start].isalnum():
        start -= 1
    while 0 < end < len(text) and text[end].isalnum() and text[end - 1].isalnum():
        end += 1
    return start, end


# Types whose every real instance the pattern detectors find and check (Luhn, mod-97, SSN rules,
# address syntax): on the dev split, model spans of these types that no validator confirmed were
# false positives (domains read as e-mails, lone dots as IPs, order numbers as cards).
VALIDATED_TYPES = frozenset({"CREDIT_CARD", "IBAN_CODE", "US_SSN", "EMAIL_ADDRESS", "IP_ADDRESS"})
_EDGE = " \t\r\n-,;:."


def tidy_span(text: str, start: int, end: int, kind: str) -> tuple[int, int] | None:
    """A model span without the separators it spilled over: edge punctuation and whitespace, and
    anything past a blank line (only addresses run over several lines); None if nothing is left."""
    if kind != "STREET_ADDRESS":
        cut = text.find("\n\n", start, end)
        if cut != -1:
            end = cut
    while start < end and text[start] in _EDGE:
        start += 1
    while end > start and text[end - 1] in _EDGE and not _abbreviation(text, start, end):
        end -= 1
    return (start, end) if end > start else None


_PHONE_CHARS = frozenset("0123456789+()-./ \t")


def plausible(kind: str, text: str) -> bool:
    """A model span that can be what it is called: a phone number is 7 to 15 digits (E.164)
    with nothing but dialling punctuation around them (the model also tags arithmetic)."""
    if kind != "PHONE_NUMBER":
        return True
    digits = sum(ch.isdigit() for ch in text)
    return 7 <= digits <= 15 and all(ch in _PHONE_CHARS for ch in text)


def _abbreviation(text: str, start: int, end: int) -> bool:
    # "J." or "St." keep their dot: a single letter or a short capitalised word before it.
    if text[end - 1] != ".":
        return False
    word = text[start : end - 1].rsplit(maxsplit=1)[-1] if end - 1 > start else ""
    return 0 < len(word) <= 3 and word[:1].isupper()


def merge(model: Iterable[PiiEntity], patterns: Sequence[PiiEntity]) -> list[PiiEntity]:
    """Pattern hits win their spans: a model span overlapping any validated hit is dropped."""
    kept = [m for m in model if not any(m.start < p.end and p.start < m.end for p in patterns)]
    return sorted([*kept, *patterns], key=lambda e: (e.start, e.end))
