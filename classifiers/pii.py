"""From per-token PII probabilities to entity spans, merged with the validated pattern hits."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

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
        """Spans from per-token probabilities: a token is an entity token when 1 - P(O) >=
        threshold (as the model was calibrated, `pii_decoding` in signals.json); a maximal run of
        consecutive entity tokens is one span, typed by the largest summed P(B-type) + P(I-type)
        over it, its score that mass per token. Unlike `pii_decoding`, a run is cut where its
        tokens' own type changes for `MIN_PIECE` tokens or more: a name on the line above an
        address, or a phone number just before one, is a run of two types, and read whole it
        was one address (the name lost) or one phone number (the address lost)."""
        tokens = np.flatnonzero(probs[:, 0] <= 1.0 - threshold)
        if tokens.size == 0:
            return []
        mass = probs[tokens][:, self.b_col] + probs[tokens][:, self.i_col]
        own = mass.argmax(axis=1)
        opens = np.ones(tokens.size, dtype=bool)
        opens[1:] = np.diff(tokens) != 1
        runs = [*np.flatnonzero(opens).tolist(), tokens.size]
        spans = []
        for start, end in itertools.pairwise(runs):
            for a, b in _pieces(own[start:end], MIN_PIECE):
                total = mass[start + a : start + b].sum(axis=0)
                t = int(total.argmax())
                spans.append(
                    TokenSpan(
                        self.types[t],
                        int(tokens[start + a]),
                        int(tokens[start + b - 1]),
                        float(total[t] / (b - a)),
                    )
                )
        return spans


# The fewest tokens of one type that make a piece of their own within a run (fewer: a wobble
# of the tags, read with their neighbours).
MIN_PIECE = 2


def _pieces(types: IntArray, least: int) -> list[tuple[int, int]]:
    """`[a, b)` stretches of `types` of one value, each of `least` or more (a shorter one joins
    the stretch before it, or the one after it at the start)."""
    cuts = np.flatnonzero(types[1:] != types[:-1]) + 1
    bounds = [0, *cuts.tolist(), len(types)]
    pieces = [[a, b] for a, b in itertools.pairwise(bounds)]
    merged: list[list[int]] = []
    for piece in pieces:
        if merged and piece[1] - piece[0] < least:
            merged[-1][1] = piece[1]
        elif merged and merged[-1][1] - merged[-1][0] < least:
            merged[-1][1] = piece[1]  # a short first stretch joins the next
        else:
            merged.append(piece)
    return [(a, b) for a, b in merged]


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
# The model's types that code identifiers are mistaken for.
CODE_SHAPED = frozenset({"PERSON", "STREET_ADDRESS"})


def plausible(
    kind: str,
    text: str,
    start: int = 0,
    end: int | None = None,
    *,
    code: bool | None = None,
) -> bool:
    """Whether the model span `text[start:end]` can be what it is called: a phone number is 7 to
    15 digits (E.164) with nothing but dialling punctuation around them (the model also tags
    arithmetic; a + between the groups is kept, though sums look so too: `+1 415+555+0100` is a
    way to write a number past a boundary); a person or an address is not an identifier in code
    (the model reads `fib` in `def fib(n):` as a name); an address has a word in it, and is not a
    run of table cells (the model tags the numbers of a pasted CSV table as addresses). `code`:
    `mostly_code(text)`, when the caller has it already (it reads the whole text)."""
    end = len(text) if end is None else end
    span = text[start:end]
    if kind == "PHONE_NUMBER":
        digits = sum(ch.isdigit() for ch in span)
        if _MEASUREMENT.fullmatch(span.strip()):
            return False  # 54.57870: a coordinate or a measurement, not a number to dial
        if _DATE.fullmatch(span.strip()):
            return False  # 2024-01-23: a date (a table's column of them was read as numbers)
        return 7 <= digits <= 15 and all(ch in _PHONE_CHARS for ch in span)
    if kind == "PERSON" and not _name_shaped(text, span):
        return False
    if kind == "STREET_ADDRESS" and not _address_shaped(span):
        return False
    if kind in CODE_SHAPED:
        return not code_identifier(text, start, end, code)
    return True


def _name_shaped(text: str, span: str) -> bool:
    """A name is not a function word (`The`), and in a text that capitalizes (a capital after a
    sentence's end, or opening it) a one-word name is capitalized: the model reads medical and
    technical words (`lymphadenectomy`, `neoadjuvant`) as names. A text written all in lower case
    keeps its lower-case names (`hey its john`), and a lower-case name of two words or more is
    kept in any text: writing a full name in lower case must not be a way past the boundary."""
    words = span.split()
    if all(w.strip(".,;:'\"()").lower() in _FUNCTION_WORDS for w in words):
        return False
    if len(words) == 1 and not any(ch.isupper() for ch in span):
        return not _CAPITALIZES.search(text)
    return True


# Opens the text, or follows a sentence's end: the text uses capitals as prose does.
_CAPITALIZES = re.compile(r"(?:^|[.!?]\s+)[A-Z][a-z]")
_FUNCTION_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "i",
        "we",
        "you",
        "he",
        "she",
        "they",
        "my",
        "your",
        "our",
        "his",
        "her",
        "their",
        "and",
        "or",
        "but",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "with",
        "by",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
    ]
)
_MEASUREMENT = re.compile(r"-?\d{1,3}\.\d{5,}")
# A calendar date, year first or last (the month and day in range).
_DATE = re.compile(
    r"(?:19|20)\d\d([-/.])(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12]\d|3[01])"
    r"|(?:0[1-9]|[12]\d|3[01])([-/.])(?:0[1-9]|1[0-2])\2(?:19|20)\d\d"
)


def _address_shaped(span: str) -> bool:
    """A word of two letters or more, a number (a house number, a postcode: the model tags runs
    of prose, `that could`, as addresses), no decimal number (239.8), and not rows of a table
    (two lines or more with 3 commas each: one address line may have that many)."""
    if not _ADDRESS_WORD.search(span) or _DECIMAL.search(span):
        return False
    if not any(ch.isdigit() for ch in span):
        return False
    return not table_rows(span)


def table_rows(span: str) -> bool:
    """Two lines or more with 3 commas each: rows of a pasted CSV table, whose cells the model
    tags as names and addresses (one address line may have that many commas)."""
    return sum(1 for line in span.splitlines() if line.count(",") >= 3) >= 2


_ADDRESS_WORD = re.compile(r"[^\W\d_]{2,}")
_DECIMAL = re.compile(r"\d\.\d")


def code_identifier(text: str, start: int, end: int, code: bool | None = None) -> bool:
    """Whether `text[start:end]` is one word used as code: shaped like an identifier (snake_case,
    digits, a known keyword or builtin), called, dotted or quoted in backticks, or standing on a
    line of code. A name of several words (`'Jane Doe'` in a string) is never one."""
    word = text[start:end]
    if not _WORD.fullmatch(word):
        return False
    if "_" in word or any(ch.isdigit() for ch in word) or word in _CODE_WORDS:
        return True
    if len(word) == 1 or _ACRONYM.fullmatch(word) or _CAMEL.fullmatch(word) or _ERROR.search(word):
        return True  # `e`, `PII`, `SIGTERM`, `IdArray`, `OSError`: no name is written so alone
    before, after = text[max(0, start - 1) : start], text[end : end + 2]
    if before in (".", "`", "_") or after[:1] in ("(", "[", "`", "=", "_") or _DOTTED.match(after):
        return True  # called, indexed, dotted, quoted as code, or a piece of a snake_case name
    if after in ('":', "':"):
        return True  # a JSON or dict key
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    if _CODE_LINE.search(text[line_start : len(text) if line_end == -1 else line_end]):
        return True
    # In a text that is mostly code, a lone word in a comment or docstring (`podman`, `Luhn`) is
    # far likelier a tool or a term than a person; names of two words or more are still found.
    return mostly_code(text) if code is None else code


def mostly_code(text: str) -> bool:
    """At least 4 lines of code, and at least a third of the non-blank lines."""
    lines = [line for line in text[:_CODE_SCAN_CHARS].splitlines() if line.strip()]
    code = sum(1 for line in lines if _CODE_LINE.search(line))
    return code >= 4 and 3 * code >= len(lines)


_CODE_SCAN_CHARS = 65536  # enough lines to tell code from prose; bounded on hostile input


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ACRONYM = re.compile(r"[A-Z]{2,10}")
_ERROR = re.compile(r"\w(?:Error|Exception|Warning)$")
# Two capitals inside one word, but the prefixes of names written so (McDonald, DeShawn, LaToya).
_CAMEL = re.compile(r"(?!(?:Mc|Mac|De|Di|Da|La|Le|Van|Von|O)[A-Z])[A-Z]?[a-z]+[A-Z][A-Za-z]*")
_DOTTED = re.compile(r"\.[A-Za-z_]")
# A line of code: a statement keyword first, an assignment, a call with a colon or an arrow.
_CODE_LINE = re.compile(
    r"^\s*(?:def|class|import|from|return|if|elif|for|while|with|raise|assert|async|await|yield|"
    r"var|let|const|func|fn|function|public|private|static|struct|impl|package|#include)\b"
    r"|^\s*[\w.\[\]]+\s*(?::[^=]+)?=[^=]|->|=>|;\s*$|\)\s*:\s*$|\)\s*\{\s*$"
)
_CODE_WORD_LIST = """
self cls none true false null nil tuple list dict set str int float bool bytes object type len
range print lambda async await args kwargs argparse asyncio json os sys re time typing numpy np pd
torch urllib http pathlib subprocess logging pytest py js ts html css sql yaml stdin stdout stderr
main init
"""
_CODE_WORDS = frozenset(_CODE_WORD_LIST.split())


def _abbreviation(text: str, start: int, end: int) -> bool:
    # "J." or "St." keep their dot: a single letter or a short capitalised word before it; so
    # do a degree's letters ("B.Sc.", "Ph.D.").
    if text[end - 1] != ".":
        return False
    word = text[start : end - 1].rsplit(maxsplit=1)[-1] if end - 1 > start else ""
    return (0 < len(word) <= 3 and word[:1].isupper()) or _DEGREE.fullmatch(word) is not None


_DEGREE = re.compile(r"(?:[^\W\d_]{1,3}\.)+[^\W\d_]{1,4}")


def merge(text: str, model: Iterable[PiiEntity], patterns: Sequence[PiiEntity]) -> list[PiiEntity]:
    """Pattern hits win their spans: a model span keeps only what lies outside every validated
    hit, where that is still a plausible span of its type (a name or an address glued to a phone
    number is not lost with the model's reading of the number)."""
    kept: list[PiiEntity] = []
    for m in model:
        hits = sorted((p.start, p.end) for p in patterns if m.start < p.end and p.start < m.end)
        if not hits:
            kept.append(m)
            continue
        edges = [m.start, *(x for hit in hits for x in hit), m.end]
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            bounds = tidy_span(text, a, b, m.type) if a < b else None
            if bounds is not None and plausible(m.type, text, *bounds):
                kept.append(replace(m, start=bounds[0], end=bounds[1]))
    return sorted([*kept, *patterns], key=lambda e: (e.start, e.end))
