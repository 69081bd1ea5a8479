"""PII in a whole request: the pattern detectors over the texts as written and as a reader would
see through them (`classifiers.normalize`), and over the texts joined, so a value split between
two messages, two content parts or two fields is found too.

Every span is reported with offsets into the ORIGINAL text it lies in; a span found inside an
encoded or spelled-out run covers the whole run, so masking it masks every encoded character.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import replace

from classifiers import pii_patterns
from classifiers.normalize import (
    Mapped,
    Normalized,
    collapse_separators,
    identity,
    normalize,
    separators,
    substitute,
)
from classifiers.signals import PiiEntity

JOINER = "\n"  # between texts: the line break a reader sees between two messages
_AMBIGUOUS_ALONE = frozenset({".", ":"})  # one of these alone is a decimal point or a clock


def find_obfuscated(text: str, joins: Sequence[int] = ()) -> tuple[PiiEntity, ...]:
    """Validated PII in `text`, as written or obfuscated, without overlaps, offsets into `text`.
    `joins`: where `text` joins several texts (offsets of the joiners), which a number split
    across them may cross any number of times."""
    found = list(pii_patterns.find_pii(text))
    seen = normalize(text)
    # The text as written was read whole; its rewritten views are read only around what changed.
    for hit in _near(seen.text, seen.changed(), pii_patterns.DETECTORS):
        found.append(_moved(hit, seen.original_span(hit.start, hit.end)))

    def joined(start: int, end: int) -> bool:
        return _joins(seen.original_span(start, end), joins)

    # Groups read spaced; and, where texts meet, glued too (a number split mid-group).
    views = [collapse_separators(seen.text)]
    if joins:
        glued = collapse_separators(seen.text, joined)
        if glued.text != views[0].text:
            views.append(glued)
    for grouped in views:
        for hit in _near(grouped.text, list(grouped.changed), pii_patterns.NUMBER_DETECTORS):
            start, end = grouped.source_span(hit.start, hit.end)
            runs = [run for s, e, run in separators(seen.text, start, end) if not joined(s, e)]
            if _country_code_set_off(hit, seen.text, start, runs):
                runs = runs[1:]  # +1 415+555+0100: the code spaced as usual, the rest disguised
            if deliberate(runs) or _grouped_card(hit, seen.text[start:end]):
                found.append(_moved(hit, seen.original_span(start, end)))
    if joins:  # an address cut where two texts meet: jane.doe@exam | ple.com
        found += _in_view(_glued_addresses(seen.text, joined), seen, pii_patterns.ADDRESS_DETECTORS)
    listed = substitute(seen.text, _DIGIT_LIST, lambda m: "".join(_DIGITS.findall(m[0])))
    found += _in_view(listed, seen, pii_patterns.NUMBER_DETECTORS)
    found += _in_view(_reversed_numbers(seen.text), seen, pii_patterns.NUMBER_DETECTORS)
    found += _cards(_WORDED_CARD, seen)
    found += _cards(_COMMA_CARD, seen)
    return pii_patterns.resolve_overlaps(found)


def _in_view(
    view: Mapped, seen: Normalized, detectors: Sequence[pii_patterns.Detector]
) -> list[PiiEntity]:
    """Hits of `detectors` around what `view` (a rewrite of `seen.text`) changed, with offsets
    into the original text."""
    hits = []
    for hit in _near(view.text, list(view.changed), detectors):
        start, end = view.source_span(hit.start, hit.end)
        hits.append(_moved(hit, seen.original_span(start, end)))
    return hits


def _cards(pattern: re.Pattern[str], seen: Normalized) -> list[PiiEntity]:
    """Matches of `pattern` (a card's groups between unusual separators) whose digits pass the
    checksum in a known network's range."""
    hits = []
    for match in pattern.finditer(seen.text):
        digits = "".join(_DIGITS.findall(match[0]))
        if pii_patterns.luhn_valid(digits) and pii_patterns.card_brand(digits) is not None:
            start, end = seen.original_span(match.start(), match.end())
            hits.append(PiiEntity("CREDIT_CARD", start, end, 0.9, source="pattern"))
    return hits


# A card with commas between its groups (4111,1111,1111,1111; 3782, 822463, 10005): commas are no
# separator elsewhere (thousands, lists), but a list of exactly a card's groups that passes the
# checksum in a known network's range is read as a card. The price: 4.5% of random lists of four
# four-digit numbers ("sales 4120, 3980, 5210, 4770") pass too; none of the 54,420 texts of
# ../shared/data holds such a list at all.
_COMMA = r",[ \t]*"
# The first digit, then what may not stand before it: no digit, comma or dot, nor the tail of a
# longer list (matching a digit first keeps the scan of prose fast: 0.06 -> 0.01 s per MiB).
_FIRST_DIGIT = r"\d(?<![\d,.]\d)(?<!,[ \t]\d)(?<!,[ \t]{2}\d)"
_COMMA_CARD = re.compile(
    rf"{_FIRST_DIGIT}(?:\d{{3}}{_COMMA}\d{{4}}{_COMMA}\d{{4}}{_COMMA}\d{{1,4}}"
    rf"|\d{{3}}{_COMMA}\d{{6}}{_COMMA}\d{{4,5}})(?!\d|{_COMMA}\d)"
)


# A number written one digit per comma (4, 1, 1, 1, ...; ssn 0,7,8,0,5,1,1,2,0): nobody lists
# 7 to 19 single digits in prose, and a list of them in code (bits, a digit array) still has to
# pass a detector as the number it spells: a card's checksum and range, a word for SSN or phone
# before it (4.1% of random lists of 16 single digits pass as a card; none of 9 or 10 digits
# passes). Read as the digits glued; a longer list, or the tail of one, is no number.
_LIST_COMMA = r"[ \t]*,[ \t]*"
_DIGIT_LIST = re.compile(rf"{_FIRST_DIGIT}(?:{_LIST_COMMA}\d(?!\d)){{6,18}}(?!{_LIST_COMMA}\d)")


# A card's groups with one word between each, the same each time (4111 then 1111 then 1111 then
# 1111; 4111 (and) 1111 (and) ...): a deliberate separator, as a run of dots is, in a card's
# grouping, and it must pass the checksum in a known network's range.
_GROUP_WORD = r"(?:[ \t]*,?[ \t]+\(?[^\W\d_]{1,8}\)?[ \t]+)"
_WORDED_CARD = re.compile(
    rf"{_FIRST_DIGIT}(?:\d{{3}}({_GROUP_WORD})\d{{4}}\1\d{{4}}\1\d{{4}}"
    rf"|\d{{3}}({_GROUP_WORD})\d{{6}}\2\d{{5}})(?![\w-]|{_GROUP_WORD}\d)"
)


# A number the text says is written backwards (card 1111 1111 1111 1114 reversed; my SSN
# backwards: 0211-50-870): a reader, or a model told to, reverses it. Near a word for reversing
# (in the languages of the digit words), each number is read reversed too, and must still pass
# a detector as the number it then is.
_REVERSE_WORD = re.compile(
    r"\b(?:revers\w*|backwards?|in reverse|r[üu]ckw[äa]rts|umgekehrt\w*|invers\w*|al rev[ée]s"
    r"|[àa] l'envers|al contrario|andersom|omgekeerd\w*)\b",
    re.IGNORECASE,
)
_REVERSE_REACH = 80  # characters either side of the word
_NUMBER_RUN = re.compile(r"\d(?:[ \t.\-/]?\d)+")


_REVERSE_STEMS = (
    "revers", "backward", "ckw", "umgekehrt", "invers", "al rev", "envers", "contrario",
    "andersom", "omgekeerd",
)  # fmt: skip


def _reversed_numbers(text: str) -> Mapped:
    lower = text.lower()
    if not any(stem in lower for stem in _REVERSE_STEMS):  # a quick scan before the regex
        return identity(text)
    reach = [
        (m.start() - _REVERSE_REACH, m.end() + _REVERSE_REACH) for m in _REVERSE_WORD.finditer(text)
    ]
    if not reach:
        return identity(text)

    def backwards(match: re.Match[str]) -> str | None:
        near = any(lo <= match.start() and match.end() <= hi for lo, hi in reach)
        return match[0][::-1] if near and pii_patterns.digit_count(match[0]) >= 7 else None

    return substitute(text, _NUMBER_RUN, backwards)


_JOINER = re.compile(re.escape(JOINER))
_ADDRESS_CHAR = re.compile(r"[\w.@+-]")


def _glued_addresses(text: str, joined: Callable[[int, int], bool]) -> Mapped:
    """`text` without the joiners where two texts meet inside what could be an address (an
    address character either side, one of them not a digit: split numbers have their own view)."""

    def glue(match: re.Match[str]) -> str | None:
        i = match.start()
        if not (0 < i < len(text) - 1 and joined(i, i + 1)):
            return None
        before, after = text[i - 1], text[i + 1]
        if not (_ADDRESS_CHAR.match(before) and _ADDRESS_CHAR.match(after)):
            return None
        return None if before.isdigit() and after.isdigit() else ""

    return substitute(text, _JOINER, glue)


CONTEXT = 128  # characters read either side of a rewritten piece: more than any value spans


def _near(
    text: str, changed: Sequence[tuple[int, int]], detectors: Sequence[pii_patterns.Detector]
) -> list[PiiEntity]:
    """Hits in `text` that touch a changed region, reading `CONTEXT` characters around each."""
    if not changed:
        return []
    regions: list[tuple[int, int]] = []  # merged: ascending starts and ends
    for start, end in sorted(changed):
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
        else:
            regions.append((start, end))
    starts = [start for start, _ in regions]
    hits: list[PiiEntity] = []
    i = 0
    while i < len(regions):
        # One window for every region within reach of the one before.
        first, last = regions[i]
        j = i + 1
        while j < len(regions) and regions[j][0] <= last + 2 * CONTEXT:
            last = regions[j][1]
            j += 1
        lo, hi = _widen(text, max(0, first - CONTEXT), min(len(text), last + CONTEXT))
        for hit in pii_patterns.find_pii(text[lo:hi], detectors):
            start, end = hit.start + lo, hit.end + lo
            # A window's edge can cut a number short: only hits at a change are the window's.
            k = bisect_right(starts, end) - 1
            if k >= 0 and regions[k][1] >= start:
                hits.append(replace(hit, start=start, end=end))
        i = j
    return hits


def _country_code_set_off(hit: PiiEntity, text: str, start: int, runs: Sequence[str]) -> bool:
    """Whether a phone number opens with +CC and a plain separator after it, as numbers are
    written (+1 415, +44 20): that separator is the convention, not a second way of writing
    the number, and a number disguised after it is still disguised one way."""
    return (
        hit.type == "PHONE_NUMBER"
        and text.startswith("+", start)
        and len(runs) > 1
        and _plain(runs[0])
    )


def _plain(run: str) -> bool:
    """A space, a dash, spaces and tabs alone, or a dash between them: what stands between digit
    groups as people write them (a doubled space or a tab is still a gap to a reader, and
    415  555-0134, 415<tab>555-0134 and 415 555 - 0134 one number)."""
    return run.strip(" \t") in ("", "-")


def _grouped_card(hit: PiiEntity, written: str) -> bool:
    """A Luhn-valid card of a known range written in a card's groups (4-4-4-4, 4-6-5, ...): a
    card whatever separators stand between the groups, mixed ones and line breaks included
    (4111-1111 1111.1111), since nothing else is grouped exactly so and passes the checksum."""
    if hit.type != "CREDIT_CARD":
        return False
    lengths = [len(group) for group in _DIGITS.findall(written)]
    return len(lengths) >= 3 and min(lengths) > 1 and pii_patterns.card_grouping(lengths)


_DIGITS = re.compile(r"\d+")


def deliberate(runs: Sequence[str]) -> bool:
    """Whether the separator runs inside a grouped number (but the joins between texts) read as
    one way of writing it (all dots, all slashes, ...; spaces only beside a line break), with at
    most one line break, rather than as numbers that merely stand near each other: a decimal, a
    list of decimals, a date and a time, a table."""
    unusual = [run for run in runs if not _plain(run)]
    breaks = sum(_line_break(run) for run in unusual)
    kinds = {run.strip(" \t") or run for run in unusual if not _line_break(run)}
    if breaks > 1 or len(kinds) > 1:
        return False
    if not kinds:
        return True
    if any(_plain(run) for run in runs):
        return False  # "12.5 13.7 14.2": decimals in a list, not one dotted number
    (kind,) = kinds
    return kind not in _AMBIGUOUS_ALONE or sum(not _line_break(run) for run in unusual) > 1


def _line_break(run: str) -> bool:
    """Whether a separator run breaks the line: \n, or \r\n and \r as Windows and old Macs
    write it."""
    return "\n" in run or "\r" in run


def scan(
    texts: Sequence[str],
    messages: int | None = None,
    part_joins: Sequence[Sequence[int]] = (),
) -> list[list[PiiEntity]]:
    """The PII spans of each text, found in all of them read as one (joined by newlines); a span
    across a join is reported in each text it touches, with offsets into that text. A number may
    be split across any number of the first `messages` texts (default: all) and of their content
    parts (`part_joins`: per text, where its parts were joined), but across only two of the
    other texts (fields, where lists of short numbers are common)."""
    per_text: list[list[PiiEntity]] = [[] for _ in texts]
    if not any(texts):
        return per_text
    starts = []
    at = 0
    for text in texts:
        starts.append(at)
        at += len(text) + len(JOINER)
    free = len(texts) if messages is None else messages
    joins = [start - 1 for start in starts[1:free]]
    joins += [starts[i] + j for i, inner in enumerate(part_joins[:free]) for j in inner]
    for hit in find_in_pieces(JOINER.join(texts), sorted(joins)):
        for i, (start, text) in enumerate(zip(starts, texts, strict=True)):
            lo, hi = max(hit.start, start), min(hit.end, start + len(text))
            if lo < hi:
                per_text[i].append(replace(hit, start=lo - start, end=hi - start))
    return per_text


# A long text is read in pieces of about `PIECE` characters, each with `OVERLAP` characters of
# the text on either side: every search of the regex engine then spans one piece, not the whole
# text, so another thread (the event loop, the classifier's worker) waits for one piece at most
# (the engine holds the GIL through a search). A piece keeps the hits that start in it; any hit
# that starts there ends within the overlap (no PII value, digit run or context read around one
# is that long), and a piece's edges lie at whitespace (an encoded run, which has none, is never
# cut: its piece grows to hold it).
PIECE = 8_192
OVERLAP = 1_024


def find_in_pieces(text: str, joins: Sequence[int] = ()) -> tuple[PiiEntity, ...]:
    """`find_obfuscated(text, joins)`, read in pieces when `text` is long."""
    if len(text) <= 2 * PIECE:
        return find_obfuscated(text, joins)
    cuts = [0]
    while len(text) - cuts[-1] > PIECE + PIECE // 2:
        cuts.append(_at_space(text, cuts[-1] + PIECE, forward=True))
    cuts.append(len(text))
    found: list[PiiEntity] = []
    for start, end in itertools.pairwise(cuts):
        lo = _at_space(text, max(0, start - OVERLAP), forward=False)
        hi = _at_space(text, min(len(text), end + OVERLAP), forward=True)
        inner = [j - lo for j in joins if lo <= j < hi]
        for hit in find_obfuscated(text[lo:hi], inner):
            if start <= hit.start + lo < end:
                found.append(replace(hit, start=hit.start + lo, end=hit.end + lo))
    return pii_patterns.resolve_overlaps(found)


def _at_space(text: str, at: int, *, forward: bool) -> int:
    """The nearest offset at or beyond `at` (forward or back) that follows a whitespace
    character, or the text's end or start."""
    if at <= 0 or at >= len(text):
        return max(0, min(at, len(text)))
    if forward:
        found = _WHITESPACE.search(text, at)
        return found.end() if found else len(text)
    i = at
    while i > 0 and not text[i - 1].isspace():
        i -= 1
    return i


_WHITESPACE = re.compile(r"\s")


_RUN_CHARS = frozenset("0123456789 -.")
_MAX_WIDEN = 4 * CONTEXT


def _widen(text: str, lo: int, hi: int) -> tuple[int, int]:
    """`[lo, hi)` moved out of any run of digit groups it cuts (so a slice of a list of numbers
    never reads as a whole number), by at most `_MAX_WIDEN` characters either way."""
    floor, ceiling = max(0, lo - _MAX_WIDEN), min(len(text), hi + _MAX_WIDEN)
    while lo > floor and text[lo - 1] in _RUN_CHARS:
        lo -= 1
    while hi < ceiling and text[hi] in _RUN_CHARS:
        hi += 1
    return lo, hi


def _joins(span: tuple[int, int], joins: Sequence[int]) -> bool:
    """Whether `span` holds one of the offsets `joins` (ascending)."""
    i = bisect_left(joins, span[0])
    return i < len(joins) and joins[i] < span[1]


def _moved(hit: PiiEntity, span: tuple[int, int]) -> PiiEntity:
    return replace(hit, start=span[0], end=span[1])
