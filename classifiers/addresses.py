"""The bounds of a postal address the model tagged: what its tags leave at the edges.

The model finds most addresses but often not their whole extent: it starts after a street's
leading type word (`Via`, `Rua`, `Calle de`) or house number, stops before the region and
postcode (`, IN 61863`), reads the name on the line above as part of the address, or breaks one
address in two at a comma. An address's bounds matter beyond the F1 of its type: they are what a
redaction removes, and what a boundary reports. These rules only move the edges of an address
the model found (and join two it found side by side); they never make one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Words that open a street's name in the languages whose addresses put the type first
# (`Via Roma 12`, `Rua João Pessoa 1636`, `Calle de Alcalá 5`, `rue Lepic`, `ul. Miła 53`).
_STREET_TYPES = (
    "via|viale|vicolo|piazza|piazzale|corso|largo|strada|contrada|borgo|stretto|"
    "rua|avenida|av|travessa|praça|"
    "calle|c/|camino|cuesta|callejón|callejon|paseo|plaza|pasaje|ronda|carrer|passeig|"
    "rue|avenue|boulevard|bd|chemin|allée|allee|impasse|place|quai|route|"
    "ul|ulica|aleja|al|náměstí|namesti"
)
# Words that join a street type to its name (`Camino de`, `Via delle`, `Rua do`).
_JOINERS = "de|del|della|delle|dei|degli|di|da|do|dos|das|du|des|la|le|les|los|las|el|d'"
# Looking back from an address's start, on its own line: what may open the address before it.
_LEAD = re.compile(
    rf"""(?ix)
    (?:^|(?<=[\s,:;(]))             # at a line's or a word's start
    (?:\d{{1,5}}[a-z]?,?[ \t]+)?    # a house number first (`36, chemin de Adam`)
    (?:{_STREET_TYPES})\.?[ \t]+     # the street's type
    (?:(?:{_JOINERS})[ \t]+)*       # its joiners
    (?:[^\W\d_][\w'-]*,?[ \t]+){{0,3}}  # up to three words of its name, a comma after the last
    $"""
)
# A ship's name before a military postcode line (`USNS Barrett, FPO AA 70954`).
_SHIP = re.compile(r"(?:^|(?<=[\s,:;(]))(?:USNS|USS|USCGC|USNV)[ \t]+[^\W\d_][\w'-]*,?[ \t]+$")
_MILITARY = re.compile(r"[ \t]*(?:APO|FPO|DPO)\b", re.IGNORECASE)
# A house number just before the address (`4923 Parmova 109`, `50, boulevard Evrard`).
# Not the last group of a longer number (`555 0134, 742 Evergreen Terrace`).
_HOUSE_NUMBER = re.compile(r"(?:^|(?<=[\s,:;(]))(?<!\d[ \t.\-/])\d{1,5}[a-zA-Z]?,?[ \t]+$")
# A region code and postcode just after it (`, IN 61863`, `\n, ON\n 82269`, `, WHT\n 59050`):
# the code in capitals, unless the address is written all in lower case (`, at 10000 feet`).
_REGION_POSTCODE = r"""(?x)
    [ \t]*,?[ \t]*(?:\n[ \t]*,?[ \t]*)?
    {code}\.?[ \t]*(?:\n[ \t]*)?
    (?:\d{{4,5}}(?:-\d{{4}})?|[A-Za-z]\d[A-Za-z][ \t]?\d[A-Za-z]\d)
    (?![\w-])"""
_REGION_UPPER = re.compile(_REGION_POSTCODE.format(code="[A-Z]{2,3}"))
_REGION_ANY = re.compile(_REGION_POSTCODE.format(code="[A-Za-z]{2,3}"))
# A postcode and town just after it (`, 59568 Rastatt`), or the street's type word the tags
# stopped before (`2450 Crown` + ` St`).
_POSTCODE_TOWN = re.compile(r"[ \t]*,?[ \t]*\d{4,5}[ \t]+[^\W\d_][\w-]*(?![\w-])")
_SUFFIX = re.compile(
    r"[ \t]+(?:st|street|rd|road|ave|avenue|blvd|boulevard|dr|drive|ln|lane|way|ct|court|pl|place|"
    r"terrace|ter|cres|crescent|hwy|highway|pkwy|parkway|sq|square)\b\.?",
    re.IGNORECASE,
)
_LOOK_BACK = 120  # characters: a house number, a street type and three words fit
# Two pieces of one address: nothing but a comma, a slash or one line break between them.
_JOINT = re.compile(r"[ \t]*(?:[,/;][ \t]*)?(?:\n[ \t]*(?:,[ \t]*)?)?")


def address_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """`[start, end)`, an address the model tagged in `text`, widened to the street type and
    house number before it, the hyphenated word it starts or ends in, the region and postcode
    after it and a bracket it leaves open; without leading lines that hold no digit (a name or
    a company above the street), when a later line does."""
    start, end = compound(text, start, end)
    line_start = text.rfind("\n", 0, start) + 1
    if start - line_start > _LOOK_BACK:  # a long line: its last words before the address
        space = text.find(" ", start - _LOOK_BACK, start)
        line_start = start if space == -1 else space + 1
    before = text[line_start:start]
    lead = _LEAD.search(before)
    if lead is not None and not _named(lead.group(), text[start:end]):
        lead = None
    lead = lead or _HOUSE_NUMBER.search(before)
    if lead is None and _MILITARY.match(text, start):
        lead = _SHIP.search(before)
    if lead is not None:
        start = line_start + lead.start()
    if not text[start:end].rstrip(" \t.")[-1:].isdigit():
        suffix = _SUFFIX.match(text, end)
        end = suffix.end() if suffix is not None else end
    region = _REGION_UPPER if any(ch.isupper() for ch in text[start:end]) else _REGION_ANY
    trail = region.match(text, end) or _POSTCODE_TOWN.match(text, end)
    if trail is not None:
        end = trail.end()
    end = _closed(text, start, end)
    return _without_heading(text, start, end), end


def _named(lead: str, address: str) -> bool:
    """Whether the words of `lead` are written as a street's name is (each capitalized but the
    joiners), unless the address is written all in lower case: `via Courier to` is not a street
    (`Send it via courier to 12 Main St`)."""
    if not any(ch.isupper() for ch in address):
        return True
    words = [w for w in re.findall(r"[^\W\d_][\w'-]*", lead) if not _JOINER.fullmatch(w)]
    return all(w[0].isupper() for w in words)


_JOINER = re.compile(rf"(?i:{_JOINERS})")


def compound(text: str, start: int, end: int) -> tuple[int, int]:
    """`[start, end)` widened to whole hyphenated words (`Anika-Kroker-Ring`, `Rosemann-Karz`):
    the model's tags often stop at a hyphen."""
    while start > 1 and text[start - 1] == "-" and text[start - 2].isalpha():
        start -= 1
        while start > 0 and text[start - 1].isalnum():
            start -= 1
    while end + 1 < len(text) and text[end] == "-" and _same_kind(text[end - 1], text[end + 1]):
        end += 1
        while end < len(text) and text[end].isalnum():
            end += 1
    return start, end


def _same_kind(before: str, after: str) -> bool:
    """Whether a hyphen between these joins one word (`Rosemann-Karz`) or number (`8-4`)."""
    return (before.isalpha() and after.isalpha()) or (before.isdigit() and after.isdigit())


def _closed(text: str, start: int, end: int) -> int:
    """`end`, past the `)` a few characters on that closes a bracket the span opened (`Lanzo
    Torinese (TO)`), or before the bracket when none closes it on the line."""
    span = text[start:end]
    opened = span.rfind("(")
    if opened == -1 or ")" in span[opened:]:
        return end
    close = text.find(")", end, end + 12)
    if close != -1 and "\n" not in text[end:close]:
        return close + 1
    return start + len(span[:opened].rstrip(" \t,(")) if span[:opened].strip() else end


def _without_heading(text: str, start: int, end: int) -> int:
    """`start`, past the leading lines of `[start, end)` that hold no digit while a later one
    does: a street line has its number, the name or company above it has none."""
    lines = text[start:end].split("\n")
    skip = 0
    for i, line in enumerate(lines[:-1]):
        if any(ch.isdigit() for ch in line) or _MILITARY.match(lines[i + 1]):
            break  # a ship's name is the line above its FPO
        skip += len(line) + 1
    if skip and any(ch.isdigit() for ch in text[start + skip : end]):
        start += skip
        while start < end and text[start] in " \t":
            start += 1
    return start


def joined(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Address spans of `text`, ordered by start, with the pieces of one address joined: those
    that overlap, or with only a comma, a slash or one line break between them."""
    out: list[list[int]] = []
    for start, end in spans:
        if out and (start <= out[-1][1] or _JOINT.fullmatch(text, out[-1][1], start)):
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]
