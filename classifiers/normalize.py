"""Undo the obfuscation a reader sees through, before the PII pattern detectors read a text.

Each step rewrites a text into a `Mapped` text that remembers where every piece came from, so a
span found in the rewritten text maps back to offsets into the ORIGINAL text (what redaction
masks). A piece rewritten character for character (a full-width digit to an ASCII one) maps
character for character; a piece rewritten as a whole (a base64 run to its decoded text, "four
one one one" to "4111", "jane [at] example [dot] com" to an address) maps to all of itself.

The steps, in order: HTML entities, %XX and backslash (\\uXXXX, \\xXX) escapes; Unicode (NFKC,
every script's digits to ASCII, format and combining characters dropped, look-alike separators
folded); base64 and hex runs that decode to text; e-mail addresses written with [at] / (dot) /
" at " ... " dot "; spelled-out digit sequences. `collapse_separators` is a further view for
grouped numbers.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Mapped:
    """A text rewritten from a source text, in segments: segment i covers `text[starts[i]:
    starts[i+1]]` and came from `source[sources[i]:sources[i+1]]`, character for character
    when `aligned[i]`."""

    text: str
    starts: tuple[int, ...]
    sources: tuple[int, ...]  # one entry more than `starts`: the source's length last
    aligned: tuple[bool, ...]
    changed: tuple[tuple[int, int], ...] = ()  # where `text` differs from its source

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the source that `text[start:end]` (non-empty) came from."""
        i = bisect_right(self.starts, start) - 1
        first = self.sources[i] + (start - self.starts[i]) if self.aligned[i] else self.sources[i]
        j = bisect_right(self.starts, end - 1) - 1
        last = self.sources[j] + (end - self.starts[j]) if self.aligned[j] else self.sources[j + 1]
        return first, last

    def target_span(self, start: int, end: int) -> tuple[int, int]:
        """A span of `text` covering what `source[start:end]` became (whole segments at most)."""
        i = max(0, bisect_right(self.sources, start, hi=len(self.starts)) - 1)
        j = max(0, bisect_right(self.sources, max(start, end - 1), hi=len(self.starts)) - 1)
        first = self.starts[i] + (start - self.sources[i]) if self.aligned[i] else self.starts[i]
        stop = self.starts[j + 1] if j + 1 < len(self.starts) else len(self.text)
        last = self.starts[j] + (end - self.sources[j]) if self.aligned[j] else stop
        return first, max(first, min(last, len(self.text)))


def identity(text: str) -> Mapped:
    return Mapped(text, (0,), (0, len(text)), (True,))


class _Builder:
    """Appends pieces of the new text, each with the length of source it replaces."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.starts: list[int] = []
        self.sources: list[int] = []
        self.aligned: list[bool] = []
        self.changed: list[tuple[int, int]] = []
        self.length = 0
        self.source = 0

    def put(
        self, new: str, source_length: int, *, aligned: bool = False, changed: bool = True
    ) -> None:
        if changed:
            self.mark(self.length, self.length + len(new))
        aligned = aligned and len(new) == source_length
        if not (aligned and self.aligned and self.aligned[-1]):  # aligned runs share a segment
            self.starts.append(self.length)
            self.sources.append(self.source)
            self.aligned.append(aligned)
        self.pieces.append(new)
        self.length += len(new)
        self.source += source_length

    def mark(self, start: int, end: int) -> None:
        """Note `[start, end)` of the new text as changed; touching marks merge."""
        if self.changed and start <= self.changed[-1][1]:
            self.changed[-1] = (self.changed[-1][0], max(end, self.changed[-1][1]))
        else:
            self.changed.append((start, end))

    def build(self) -> Mapped:
        if not self.starts:
            return identity("")
        return Mapped(
            "".join(self.pieces),
            tuple(self.starts),
            (*self.sources, self.source),
            tuple(self.aligned),
            tuple(self.changed),
        )


def substitute(
    text: str, pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str | None]
) -> Mapped:
    """`text` with each match of `pattern` replaced by `replace(match)` (None: left as it is)."""
    out = _Builder()
    at = 0
    for match in pattern.finditer(text):
        new = replace(match)
        if new is None or new == match[0]:
            continue
        if match.start() > at:
            out.put(text[at : match.start()], match.start() - at, aligned=True, changed=False)
        out.put(new, match.end() - match.start())
        at = match.end()
    if at == 0:
        return identity(text)
    if at < len(text):
        out.put(text[at:], len(text) - at, aligned=True, changed=False)
    return out.build()


@dataclass(frozen=True, slots=True)
class Normalized:
    """The text the detectors read, and the chain of steps back to the original."""

    text: str
    steps: tuple[Mapped, ...]  # in the order applied; the last one's text is `text`

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        for step in reversed(self.steps):
            start, end = step.source_span(start, end)
        return start, end

    def then(self, step: Mapped) -> Normalized:
        return Normalized(step.text, (*self.steps, step))

    def changed(self) -> list[tuple[int, int]]:
        """Where `text` differs from the original (spans of `text`, maybe empty: a deletion)."""
        regions: list[tuple[int, int]] = []
        for step in self.steps:
            regions = [step.target_span(*r) for r in regions] + list(step.changed)
        return regions


def normalize(text: str, *, depth: int = 2) -> Normalized:
    """Every step of this module over `text`; decoded runs are normalized `depth` levels deep."""
    result = Normalized(text, ())
    steps: tuple[Callable[[str], Mapped], ...] = (
        _unescape,
        _unicode,
        _decoder(_BASE64, depth),
        _decoder(_HEX, depth),
        _emails,
        _spelled_digits,
    )
    for step in steps:
        mapped = step(result.text)
        if mapped.text != result.text:
            result = result.then(mapped)
    return result


def _normalized_text(text: str, depth: int) -> str:
    return normalize(text, depth=depth).text


# -- HTML entities, %XX and backslash escapes ------------------------------------------------

# HTML entities, %XX, and the backslash escapes of JSON, Python and C strings (a tool call's
# `arguments` is JSON text the model decodes: "\u0034" reaches it as "4").
_ESCAPE = re.compile(
    r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z]{2,8});|%[2-7][0-9A-Fa-f]"
    r"|\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}"
)


def _unescape_one(match: re.Match[str]) -> str | None:
    token = match[0]
    if token[0] == "&":
        return html.unescape(token)
    ch = chr(int(token[2:] if token[0] == "\\" else token[1:], 16))
    return ch if ch.isprintable() else None


def _unescape(text: str) -> Mapped:
    if "&" not in text and "%" not in text and "\\" not in text:
        return identity(text)
    return substitute(text, _ESCAPE, _unescape_one)


# -- Unicode -----------------------------------------------------------------------------------

# Everything but printable ASCII, tab and newline: the only characters that can need folding.
_FOLDABLE = re.compile(r"[^\t\n\r\x20-\x7e]+")
# Look-alikes NFKC keeps: dots, slashes and the Cyrillic/Greek letters that pass for Latin ones.
_LOOKALIKE = str.maketrans(
    "\u00b7\u2022\u2219\u2027\u3002\u2044\u2215\uff3c\u0430\u0435\u043e\u0440\u0441\u0445\u0443\u0456\u0458"
    "\u0455\u0501\u0578\u03bf\u03b1\u03bd\u03c1\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425",
    "....///\\aeopcxyijsdnoavpABEKMHOPCTX",
)


@lru_cache(maxsize=8192)
def fold(ch: str) -> str:
    """One character as the detectors should read it: '' for a format, control or combining
    character, an ASCII digit for a digit of any script, ' ' for any space, '-' for any dash."""
    category = unicodedata.category(ch)
    if category in ("Cf", "Cc", "Mn", "Me", "Cs", "Co", "Cn"):
        return "" if ch not in "\t\n\r" else ch
    if category == "Nd":
        return str(unicodedata.decimal(ch))
    if category.startswith("Z"):
        return " "
    if category == "Pd":
        return "-"
    folded = unicodedata.normalize("NFKC", ch).translate(_LOOKALIKE)
    if folded != ch and not folded.isascii():
        folded = "".join(fold(c) if c != ch else c for c in folded)
    return folded


class _FoldTable(dict[int, str]):
    """`fold` as a `str.translate` table, filled as characters are met."""

    def __missing__(self, code: int) -> str:
        folded = self[code] = fold(chr(code))
        return folded


class _OddTable(dict[int, str]):
    """Deletes the characters `fold` maps to exactly one character: what is left folds to more
    or fewer characters than it has."""

    def __missing__(self, code: int) -> str:
        odd = self[code] = "" if len(fold(chr(code))) == 1 else chr(code)
        return odd


_FOLD = _FoldTable()
_ODD = _OddTable()


def _unicode(text: str) -> Mapped:
    if not _FOLDABLE.search(text):
        return identity(text)
    out = _Builder()
    at = 0
    for run in _FOLDABLE.finditer(text):
        if run.start() > at:
            out.put(text[at : run.start()], run.start() - at, aligned=True, changed=False)
        chars = run[0]
        folded = chars.translate(_FOLD)
        if not chars.translate(_ODD):  # one character each: a run of aligned pieces
            start = out.length
            out.put(folded, len(chars), aligned=True, changed=False)
            for i in [i for i, (a, b) in enumerate(zip(chars, folded, strict=True)) if a != b]:
                out.mark(start + i, start + i + 1)
        else:
            for ch in chars:
                new = fold(ch)
                out.put(new, 1, aligned=True, changed=new != ch)
        at = run.end()
    if at < len(text):
        out.put(text[at:], len(text) - at, aligned=True, changed=False)
    return out.build()


# -- base64 and hex runs -----------------------------------------------------------------------

MIN_ENCODED = 16  # characters of base64 or hex: shorter runs are words, ids and numbers
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9A-Za-z])(?:[0-9A-Fa-f]{2}){8,}(?![0-9A-Za-z])")
_PRINTABLE_SHARE = 0.9


def as_text(data: bytes) -> str | None:
    """`data` as text when it is UTF-8 and mostly printable (as encoded text is, and random or
    binary data such as hashes and images are not)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(ch.isprintable() or ch in "\t\n\r" for ch in text)
    return text if text and printable >= _PRINTABLE_SHARE * len(text) else None


def decode_run(run: str) -> str | None:
    """The text a base64 or hex run encodes, or None if it is not one."""
    if len(run) >= MIN_ENCODED and len(run) % 2 == 0 and all(c in _HEX_DIGITS for c in run):
        data = binascii.unhexlify(run)
        decoded = as_text(data)
        if decoded is not None:
            return decoded
    bare = run.rstrip("=").replace("-", "+").replace("_", "/")
    if len(bare) % 4 == 1 or bare.isdigit():  # digits alone are a number, not base64
        return None
    try:
        data = base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return as_text(data)


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _decoder(pattern: re.Pattern[str], depth: int) -> Callable[[str], Mapped]:
    def step(text: str) -> Mapped:
        if depth <= 0 or len(text) < MIN_ENCODED:
            return identity(text)

        def decoded(match: re.Match[str]) -> str | None:
            plain = decode_run(match[0])
            # Spaces keep the decoded text from gluing to its neighbours.
            return None if plain is None else f" {_normalized_text(plain, depth - 1)} "

        return substitute(text, pattern, decoded)

    return step


# -- e-mail addresses written out --------------------------------------------------------------

_OPEN, _CLOSE = r"[\[({<]", r"[\])}>]"
_AT_WORD = r"[ \t]+at[ \t]+"
# A spaced @ may have one line break by it: an address split across two messages at the @.
_SPACED_AT = r"(?:[ \t]+\n?|\n)[ \t]*@[ \t]*\n?[ \t]*|[ \t]*@(?:[ \t]+\n?|\n)[ \t]*"
_BRACKETED_AT = rf"[ \t]*{_OPEN}[ \t]*(?:at|@)[ \t]*{_CLOSE}[ \t]*"
_AT = rf"(?:{_BRACKETED_AT}|{_AT_WORD}|{_SPACED_AT}|@@?)"  # jane@@example.com: one @ too many
_DOT_WORD = r"[ \t]+dot[ \t]+"
_SPACED_DOT = r"[ \t]+\.[ \t]+"  # jane . doe @ example . com: spaced on both sides, not a full stop
_DOT = rf"(?:[ \t]*{_OPEN}[ \t]*(?:dot|\.)[ \t]*{_CLOSE}[ \t]*|{_DOT_WORD}|{_SPACED_DOT}|\.)"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_%+-]{0,62}[A-Za-z0-9])?"
_SPELLED_EMAIL = re.compile(
    rf"(?<![\w.+%@-]){_LABEL}(?:{_DOT}{_LABEL})*{_AT}"
    rf"{_LABEL}(?:{_DOT}{_LABEL})*{_DOT}[A-Za-z]{{2,24}}(?![\w@-])",
    re.IGNORECASE,
)
_AT_ONLY = re.compile(_AT, re.IGNORECASE)
_DOT_ONLY = re.compile(_DOT, re.IGNORECASE)
# "look at example.com" is not an address; "jane at example dot com" is: a spelled-out " at "
# counts only with a spelled-out or bracketed dot after it, and it or a spaced " @ " only before
# a common top-level domain.
_COMMON_TLDS = frozenset({
    "com", "net", "org", "edu", "gov", "mil", "int", "io", "co", "info", "biz", "me", "us", "uk",
    "de", "fr", "es", "it", "nl", "be", "ch", "at", "se", "no", "fi", "dk", "pl", "ru", "cn", "jp",
    "in", "br", "au", "ca", "eu", "ai", "dev", "app", "xyz", "tech", "online", "email", "mail",
})  # fmt: skip


def _email(match: re.Match[str]) -> str | None:
    written = match[0]
    at = next(_AT_ONLY.finditer(written), None)
    if at is None:
        return None
    local, domain = written[: at.start()], written[at.end() :]
    bracketed = at[0].strip() not in ("at", "AT", "At", "aT", "@", "@@")
    if not bracketed:  # " at " or " @ ": words and code (a @ b.T) look like that too
        dots = [d[0] for d in _DOT_ONLY.finditer(domain)]
        tld = domain.rsplit(dots[-1], 1)[-1].lower() if dots else ""
        spelled = at[0].strip().lower() == "at"
        # "at" with plain dots, spaced or not, is a sentence ("meet at home . com"), not an address
        if tld not in _COMMON_TLDS or (spelled and all(d.strip() == "." for d in dots)):
            return None
    address = _DOT_ONLY.sub(".", local) + "@" + _DOT_ONLY.sub(".", domain)
    return address if address != written else None


_MAY_SPELL_EMAIL = re.compile(rf"@|{_OPEN}[ \t]*at[ \t]*{_CLOSE}|[ \t]dot[ \t]", re.IGNORECASE)


def _emails(text: str) -> Mapped:
    if not _MAY_SPELL_EMAIL.search(text):
        return identity(text)
    return substitute(text, _SPELLED_EMAIL, _email)


# -- spelled-out digits ------------------------------------------------------------------------

DIGIT_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
MIN_SPELLED_DIGITS = 7
_TOKEN = r"(?:(?:double|triple)\s+)?(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|\d+)"
_SPELLED = re.compile(rf"\b{_TOKEN}(?:[\s,.;:/-]+{_TOKEN})+\b", re.IGNORECASE)
_PIECES = re.compile(r"(double|triple)\s+(\w+)|(\w+)|([^\w]+)", re.IGNORECASE)


_DIGIT_WORD = re.compile(r"zero|oh|one|two|three|four|five|six|seven|eight|nine", re.IGNORECASE)


def _digits(match: re.Match[str]) -> str | None:
    if not _DIGIT_WORD.search(match[0]):  # digits and separators only: nothing spelled out
        return None
    out: list[str] = []
    words = 0
    previous_digits = False
    pending = ""
    for repeat, repeated, token, separator in _PIECES.findall(match[0]):
        if separator:
            pending = separator
            continue
        word = (repeated or token).lower()
        if word.isdigit():
            digits = word
        else:
            digits = DIGIT_WORDS[word]
            words += 1
        if repeat:
            digits *= 2 if repeat.lower() == "double" else 3
        if out:
            if any(c in pending for c in ",.;:/-"):
                out.append("-")
            elif previous_digits or word.isdigit():  # digit groups keep their spaces
                out.append(" ")
        out.append(digits)
        previous_digits = word.isdigit()
        pending = ""
    spelled = "".join(out)
    if words == 0 or sum(c.isdigit() for c in spelled) < MIN_SPELLED_DIGITS:
        return None
    if len(spelled) == 10 and spelled.isdigit():  # ten digits said in one breath: a phone number
        return f"{spelled[:3]}-{spelled[3:6]}-{spelled[6:]}"
    return spelled


def _spelled_digits(text: str) -> Mapped:
    return substitute(text, _SPELLED, _digits)


# -- grouped numbers ---------------------------------------------------------------------------

# A run of separators between two digits: dots, slashes, underscores, #, ;, =... (not commas:
# thousands and lists), or a line break (\n, \r\n or \r; texts are joined by newlines, so a
# number split across messages or content parts is one too); and whitespace other than one
# space (2+ spaces, a tab), also beside an area code's parentheses: +254  (20)  2012356 and
# 415<tab>555<tab>0134 read as +254 (20) 2012356 and 415 555 0134.
SEPARATOR_RUN = re.compile(
    r"(?<=\d)(?:[ \t]*[._/\\|*~:+#;=^&-]{1,2}[ \t]*|[ \t]*(?:\r\n?|\n)[ \t]*)(?=\d)"
    r"|(?<=[\d)])(?:[ \t]{2,}|\t)(?=[\d(])"
)


def collapse_separators(text: str, glue: Callable[[int, int], bool] | None = None) -> Mapped:
    """`text` with each separator run between two digits replaced by one space, so that
    4111.1111.1111.1111 reads as the grouped number 4111 1111 1111 1111; or removed where
    `glue(start, end)` says so (where two texts were joined: 41111 | 11111111111)."""
    if glue is None:
        return substitute(text, SEPARATOR_RUN, lambda m: " ")
    return substitute(text, SEPARATOR_RUN, lambda m: "" if glue(m.start(), m.end()) else " ")


_ANY_SEPARATOR = re.compile(
    r"(?<=\d)(?:[ \t]*[._/\\|*~:+#;=^&-]{1,2}[ \t]*|[ \t]+|[ \t]*(?:\r\n?|\n)[ \t]*)(?=\d)"
)


def separators(text: str, start: int, end: int) -> list[tuple[int, int, str]]:
    """Every separator run between digits in `text[start:end]`, single spaces and dashes
    included: (start, end, the run)."""
    return [(m.start(), m.end(), m[0]) for m in _ANY_SEPARATOR.finditer(text, start, end)]
