"""Undo the obfuscation a reader sees through, before the PII pattern detectors read a text.

Each step rewrites a text into a `Mapped` text that remembers where every piece came from, so a
span found in the rewritten text maps back to offsets into the ORIGINAL text (what redaction
masks). A piece rewritten character for character (a full-width digit to an ASCII one) maps
character for character; a piece rewritten as a whole (a base64 run to its decoded text, "four
one one one" to "4111", "jane [at] example [dot] com" to an address) maps to all of itself.

The steps, in order: HTML entities, %XX and backslash (\\uXXXX, \\xXX, octal) escapes; Unicode
(NFKC, every script's digits to ASCII, format and combining characters dropped, look-alike
separators folded); Han numerals read one digit at a time (一三八...); a space where a script
written without spaces (Han, kana, Hangul, Thai) meets an ASCII letter or digit; defanged dots
between digits (10[.]20); markup around each group of a number (**4111** **1111**,
<b>078</b>-); base64, base32 and hex runs that decode to text; byte codes one at a
time (34 31 31 31, 0x34 0x31, 52 49 49 49, binary octets);
e-mail addresses written one letter at a time, or with [at] / (dot) / " at " ... " dot ";
spelled-out digit sequences in seven languages; letters that pass for digits in a card's, an
SSN's or a phone number's groups (4lll llll ...). `collapse_separators` is a further view for
grouped numbers.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable
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
        _spaced_ip,
        _unicode,
        _han_digits,
        _unspaced,
        _defanged,
        _markup,
        _symbols,
        _decoder(_BASE64, depth),
        _decoder(_HEX, depth),
        _decoder(_CODES, depth, _read_codes, _MAY_CODE),
        _decoder(_BINARY_CODES, depth, _read_binary, _MAY_BINARY),
        _letter_spaced,
        _emails,
        _loose_emails,
        _webmail,
        _spelled_digits,
        _digit_lookalikes,
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
    r"|\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|(?:\\[0-3][0-7]{2})+"
)


def _unescape_one(match: re.Match[str]) -> str | None:
    token = match[0]
    if token[0] == "&":
        return html.unescape(token)
    if token[0] == "\\" and token[1] not in "ux":
        # C's and Python's octal escapes, a run at a time: text only if every one is printable
        # (\064\061 is "41"; [\000\011\040] is a byte class, left as written).
        chars = "".join(chr(int(code, 8)) for code in token[1:].split("\\"))
        return chars if chars.isprintable() else None
    ch = chr(int(token[2:] if token[0] == "\\" else token[1:], 16))
    return ch if ch.isprintable() else None


# Eight escapes or more in a row: text written as escapes (%49%67%6E..., \u0049\u0067...,
# &#73;&#103;...), which a model reads only once decoded (`decoded_runs`).
_ESCAPE_RUN = re.compile(rf"(?:{_ESCAPE.pattern}){{8,}}")


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
    ".....//\\aeopcxyijsdnoavpABEKMHOPCTX",
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


# -- Han numerals read digit by digit ----------------------------------------------------------

# A number said one digit at a time in Chinese or Japanese: 一三八一二三四五六七八 (幺 is the
# 1 of a number read aloud). Seven digits at least, not all one digit, and no place values
# (十百千万): counted numbers (二〇二四年, 三千五百) are not read.
_HAN_DIGIT = str.maketrans("〇零一二三四五六七八九幺", "001234567891")
_HAN_RUN = re.compile(r"[〇零一二三四五六七八九幺](?:[ \t-]?[〇零一二三四五六七八九幺]){6,}")


def _han_digits(text: str) -> Mapped:
    def read(match: re.Match[str]) -> str | None:
        digits = match[0].translate(_HAN_DIGIT)
        return digits if len({c for c in digits if c.isdigit()}) > 1 else None

    return substitute(text, _HAN_RUN, read)


# -- scripts written without spaces ------------------------------------------------------------

# Han, kana, Hangul, Thai and their punctuation: text in them runs words together, so a number or
# an address sits glued to the words around it (我的电话是13812345678, 090-1234-5678です,
# 메일은jane@example.com). Python's \w counts these letters as word characters, and every
# detector's "not inside a longer word" edge would read the value as part of a word. Unlike a
# Latin word glued to digits (call4155550134, an identifier's shape too), this is how the
# language is written.
_UNSPACED_CHARS = (
    "\u0e00-\u0e7f\u1100-\u11ff\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff"
)
_ASCII_EDGE = "A-Za-z0-9+()"
_UNSPACED = re.compile(
    rf"(?<=[{_ASCII_EDGE}])[{_UNSPACED_CHARS}]|[{_UNSPACED_CHARS}](?=[{_ASCII_EDGE}])"
)


def _unspaced(text: str) -> Mapped:
    """`text` with a space between a character of a script written without spaces and an ASCII
    letter, digit or `+` beside it, so the detectors see the value apart from the words."""

    def apart(match: re.Match[str]) -> str:
        i = match.start()
        before = " " if i > 0 and _ASCII_SIDE.match(text[i - 1]) else ""
        after = " " if i + 1 < len(text) and _ASCII_SIDE.match(text[i + 1]) else ""
        return before + match[0] + after

    return substitute(text, _UNSPACED, apart)


_ASCII_SIDE = re.compile(f"[{_ASCII_EDGE}]")


# -- base64 and hex runs -----------------------------------------------------------------------

MIN_ENCODED = 16  # characters of base64 or hex: shorter runs are words, ids and numbers
# Up to six =: base32 pads to eight characters, base64 to four.
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{16,}={0,6}(?![A-Za-z0-9+/=_-])")
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
    if _BASE32_ONLY.fullmatch(run):  # upper-case letters and 2-7: base32 before base64
        bare32 = run.rstrip("=")
        try:
            data = base64.b32decode(bare32 + "=" * (-len(bare32) % 8))
        except (binascii.Error, ValueError):
            data = b""
        decoded = as_text(data) if data else None
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
_BASE32_ONLY = re.compile(r"[A-Z2-7]+=*")


def _decoder(
    pattern: re.Pattern[str],
    depth: int,
    read: Callable[[str], str | None] | None = None,
    hint: re.Pattern[str] | None = None,
) -> Callable[[str], Mapped]:
    """A step that replaces each run of `pattern` by the text `read` decodes it to (default:
    `decode_run`), itself normalized `depth - 1` levels deep; a text without a match of `hint`
    (a quicker pattern that every run matches) is left as it is unsearched."""
    reader = read or decode_run

    def step(text: str) -> Mapped:
        if depth <= 0 or len(text) < MIN_ENCODED or (hint is not None and not hint.search(text)):
            return identity(text)

        def decoded(match: re.Match[str]) -> str | None:
            plain = reader(match[0])
            # Spaces keep the decoded text from gluing to its neighbours.
            return None if plain is None else f" {_normalized_text(plain, depth - 1)} "

        return substitute(text, pattern, decoded)

    return step


def decoded_runs(text: str) -> list[tuple[int, int, str]]:
    """`(start, end, decoded)` of each run of `text` that decodes to text: base64, base32 or hex,
    byte codes written one by one, and eight or more escapes in a row (HTML entities, %XX,
    \\uXXXX, \\xXX, octal), in order and apart: what a model must read to see what such a run
    says (the pattern detectors read it inside `normalize`)."""
    if len(text) < MIN_ENCODED:
        return []
    found: list[tuple[int, int, str]] = []
    if "&" in text or "%" in text or "\\" in text:  # a text written as escapes, one by one
        for match in _ESCAPE_RUN.finditer(text):
            unescaped = _unescape(match[0]).text
            if unescaped != match[0]:
                found.append((match.start(), match.end(), _normalized_text(unescaped, 1)))
    for pattern, read, hint in _DECODERS:
        if hint is not None and not hint.search(text):
            continue
        for match in pattern.finditer(text):
            plain = read(match[0])
            if plain is not None:
                found.append((match.start(), match.end(), _normalized_text(plain, 1)))
    found += _unscrambled(text)
    runs: list[tuple[int, int, str]] = []
    for run in sorted(found):
        if not runs or run[0] >= runs[-1][1]:  # a hex run is a base64 run too: read once
            runs.append(run)
    return runs


# -- byte codes written one by one: 34 31 31 31, 0x34 0x31, 52 49 49 49, 00110100 00110001 ------

MIN_CODES = 8  # codes in a run: fewer are a short list of numbers
_CODE_SEPARATOR = r"(?:[ \t]*,[ \t]*|[ \t]+|:)"
# Hex pairs (0x optional) or decimal codes; which reading a run is, its codes say (`_read_codes`).
# Every code starts with a digit: so does the hex of every printable ASCII character (20-7e).
_CODE_TOKEN = r"(?:0[xX])?\d[0-9A-Fa-f]{0,2}"
_CODES = re.compile(
    rf"(?<![\w.]){_CODE_TOKEN}(?:{_CODE_SEPARATOR}{_CODE_TOKEN}){{{MIN_CODES - 1},}}(?!\w|\.\d)"
)
_BINARY_CODES = re.compile(
    rf"(?<![\w.])[01]{{8}}(?:{_CODE_SEPARATOR}[01]{{8}}){{{MIN_CODES - 1},}}(?!\w|\.\d)"
)
_CODE = re.compile(r"(?:0[xX])?([0-9A-Fa-f]+)")
# What any run of codes holds, without the lookbehind that makes the engine try every position.
_MAY_CODE = re.compile(
    rf"\d[0-9A-Fa-f]{{0,2}}(?:{_CODE_SEPARATOR}{_CODE_TOKEN}){{{MIN_CODES - 1}}}"
)
_MAY_BINARY = re.compile(rf"[01]{{8}}{_CODE_SEPARATOR}[01]{{8}}")
_TEXT_CODES = frozenset([9, 10, 13, *range(32, 127)])  # what a decimal code of text can be


def _read_codes(run: str) -> str | None:
    """The text a run of byte codes spells: hex pairs as bytes, decimal codes as characters
    (both readings, joined, when the run is either), or None."""
    codes = _CODE.findall(run)
    readings = []
    if all(len(code) == 2 for code in codes):
        readings.append(as_text(bytes(int(code, 16) for code in codes)))
    if "0x" not in run.lower() and all(code.isdigit() for code in codes):
        values = [int(code) for code in codes]
        if all(value in _TEXT_CODES for value in values):
            readings.append("".join(map(chr, values)))
    found = [text for text in readings if text]
    return " , ".join(found) if found else None  # a comma: never glues two readings' digits


def _read_binary(run: str) -> str | None:
    return as_text(bytes(int(code, 2) for code in re.findall(r"[01]{8}", run)))


# -- defanged dots: 10[.]20[.]30[.]40, 4111(.)1111 ----------------------------------------------

_DEFANGED = re.compile(
    r"(?<=\d)[ \t]*(?:[\[({]\.[\])}]|[\[({]dot[\])}])[ \t]*(?=\d)", re.IGNORECASE
)
_MAY_DEFANG = re.compile(r"[\[({](?:\.|dot)[\])}]", re.IGNORECASE)  # no lookbehind: a quick scan


def _defanged(text: str) -> Mapped:
    if not _MAY_DEFANG.search(text):
        return identity(text)
    return substitute(text, _DEFANGED, lambda match: ".")


# Markup or quotes around each group of a number (**4111** **1111**, `4111` `1111`, <b>4111</b>
# <b>1111</b>, '4111' '1111', "4111" + "1111"): a run of emphasis, code marks, quotes or inline
# tags between two digits, with the separators inside it, reads as those separators. Not a
# table's cells (<td>, <li>): columns of numbers are not one number.
_MARKUP_TOKEN = (
    r"(?>\*++|_{2,}+|`++|~{2,}+|'++|\"++"
    r"|</?(?:b|i|u|s|em|strong|code|kbd|mark|span|sub|sup|del|ins)(?:[ \t][^<>\n]{0,60})?>)"
)
# Possessive and atomic throughout: a long run of marks that ends without a digit fails in
# linear time instead of trying every way to split it into tokens.
_MARKUP_BETWEEN = re.compile(
    rf"(?<=\d)(?:[ \t.+\-]*+{_MARKUP_TOKEN})++[ \t.+\-]*+(?=\d)", re.IGNORECASE
)
_MAY_MARKUP = re.compile(r"\d[ \t+]*(?:\*|__|`|~~|'|\"|</?[a-z])", re.IGNORECASE)  # a quick scan
_MARKUP_ONLY = re.compile(_MARKUP_TOKEN, re.IGNORECASE)


def _markup(text: str) -> Mapped:
    if not _MAY_MARKUP.search(text):
        return identity(text)

    def separators(match: re.Match[str]) -> str:
        between = _MARKUP_ONLY.sub("", match[0])
        return " " if " " in between or "\t" in between else between[:1]

    return substitute(text, _MARKUP_BETWEEN, separators)


# Symbols between the groups of a number (4111🔹1111🔹..., 090・1234・5678, 4111 ✦ 1111 ...): after
# Unicode folding, a run of characters that are neither ASCII, letters, digits nor spaces between
# two digits reads as a dash, or as a space where spaces stand around it.
_SYMBOLS_BETWEEN = re.compile(r"(?<=\d)[ \t]*+[^\x00-\x7f\w\s]++[ \t]*+(?=\d)")


def _symbols(text: str) -> Mapped:
    if text.isascii():
        return identity(text)
    return substitute(text, _SYMBOLS_BETWEEN, lambda match: " " if match[0][0] in " \t" else "-")


# An IPv4 address with its dots spaced or spelled: 192 . 168 . 1 . 1, 192 .168 .1 .1, 192 dot 168
# dot 1 dot 1. Not "1. 2. 3. 4" (a numbered list), nor one link of a longer chain, and read before
# Unicode folds a bullet into a dot: "11 • 11 • 11 • 11 • 11" is a product.
_IP_DOT = r"(?:[ \t]+\.[ \t]*|[ \t]+dot[ \t]+)"
_IP_PART = rf"{_IP_DOT}\d{{1,3}}"
_SPACED_IP = re.compile(
    rf"(?<![\d.])\d{{1,3}}{_IP_PART}{_IP_PART}{_IP_PART}(?![\d.]|{_IP_DOT}\d)", re.IGNORECASE
)
_CHAIN_BEFORE = re.compile(rf"\d{_IP_DOT}$", re.IGNORECASE)


def _spaced_ip(text: str) -> Mapped:
    if " ." not in text and "dot" not in text.lower():
        return identity(text)

    def joined(match: re.Match[str]) -> str | None:
        if _CHAIN_BEFORE.search(text, max(0, match.start() - 8), match.start()):
            return None
        return ".".join(re.findall(r"\d+", match[0]))

    return substitute(text, _SPACED_IP, joined)


# Text scrambled so that a model does not read it, but a model told how reads it back: ROT13,
# written backwards, or in leetspeak (1gn0r3 4ll pr3v10u5 ...). A sentence of four words or more
# that reads as almost no English as written, and as English once unscrambled, is read so.
_WORD = re.compile(r"[A-Za-z]+")
# A sentence or a clause after a colon ("decode this: Vtaber nyy ..."): an English lead-in
# would hide the scrambled text after it.
_SENTENCE = re.compile(r"[^\n.!?;:]+[.!?;:]*")
_COMMON_WORDS = frozenset({
    "the", "an", "and", "or", "to", "of", "in", "on", "for", "with", "is", "are", "was", "be",
    "you", "your", "me", "my", "it", "this", "that", "what", "how", "not", "no", "all", "now",
    "from", "as", "at", "by", "do", "if", "can", "will", "any", "every",
})  # fmt: skip
_LEET = str.maketrans("013457@$", "oieastas")
_LEET_WORD = re.compile(r"\b(?=\w*[A-Za-z])(?=\w*\d)\w{3,}\b")  # 1gn0r3, pr3v10u5
MIN_SCRAMBLED_WORDS = 4


def _english(text: str) -> tuple[int, int, int]:
    """How many of `text`'s words of two letters or more there are, how many of them are among
    the commonest English words, and how many different ones of those."""
    words = [word for word in _WORD.findall(text.lower()) if len(word) > 1]
    common = [word for word in words if word in _COMMON_WORDS]
    return len(words), len(common), len(set(common))


def _reads_as_english(text: str) -> bool:
    words, common, distinct = _english(text)
    return words >= MIN_SCRAMBLED_WORDS and distinct >= 2 and common >= 0.3 * words


def _unscrambled(text: str) -> list[tuple[int, int, str]]:
    """`(start, end, text)` of each sentence of `text` that reads as English only unscrambled."""
    found = []
    for match in _SENTENCE.finditer(text):
        sentence = match[0]
        words, common, _ = _english(sentence)
        if words < MIN_SCRAMBLED_WORDS or common >= 0.1 * words:
            continue
        readings = [codecs.encode(sentence, "rot13"), sentence[::-1]]
        if len(_LEET_WORD.findall(sentence)) >= 2:
            readings.append(sentence.translate(_LEET))
        for reading in readings:
            if _reads_as_english(reading):
                found.append((match.start(), match.end(), reading))
                break
    return found


_DECODERS: tuple[
    tuple[re.Pattern[str], Callable[[str], str | None], re.Pattern[str] | None], ...
] = (
    (_BASE64, decode_run, None),
    (_HEX, decode_run, None),
    (_CODES, _read_codes, _MAY_CODE),
    (_BINARY_CODES, _read_binary, _MAY_BINARY),
)


# -- e-mail addresses written out --------------------------------------------------------------

_OPEN, _CLOSE = r"[\[({<]", r"[\])}>]"
# "at" and its names in Spanish and Portuguese, French and Italian (jane arroba example punto com).
_AT_NAMES = ("at", "arroba", "arobase", "chiocciola")
_DOT_NAMES = r"dot|punto|ponto|punkt"  # not "point": "meet at noon point in time" is a sentence
_AT_WORD = rf"[ \t]+(?:{'|'.join(_AT_NAMES)})[ \t]+"
# A spaced @ may have one line break by it: an address split across two messages at the @.
_SPACED_AT = r"(?:[ \t]+\n?|\n)[ \t]*@[ \t]*\n?[ \t]*|[ \t]*@(?:[ \t]+\n?|\n)[ \t]*"
_BRACKETED_AT = rf"[ \t]*{_OPEN}[ \t]*(?:{'|'.join(_AT_NAMES)}|@)[ \t]*{_CLOSE}[ \t]*"
# Dashes for brackets, set off by spaces (jane -at- example -dot- com); not inside a hostname
# (meet-at-home.com).
_DASHED_AT = rf"[ \t]+-(?:{'|'.join(_AT_NAMES)}|@)-[ \t]+"
_AT = rf"(?:{_BRACKETED_AT}|{_DASHED_AT}|{_AT_WORD}|{_SPACED_AT}|@@?)"  # @@: one @ too many
_DOT_WORD = rf"[ \t]+(?:{_DOT_NAMES})[ \t]+"
_SPACED_DOT = r"[ \t]+\.[ \t]+"  # jane . doe @ example . com: spaced on both sides, not a full stop
_DOT = (
    rf"(?:[ \t]*{_OPEN}[ \t]*(?:{_DOT_NAMES}|\.)[ \t]*{_CLOSE}[ \t]*"
    rf"|[ \t]+-(?:{_DOT_NAMES}|\.)-[ \t]+|{_DOT_WORD}|{_SPACED_DOT}|\.)"
)
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
    bracketed = at[0].strip().lower() not in (*_AT_NAMES, "@", "@@")
    if not bracketed:  # " at " or " @ ": words and code (a @ b.T) look like that too
        dots = [d[0] for d in _DOT_ONLY.finditer(domain)]
        tld = domain.rsplit(dots[-1], 1)[-1].lower() if dots else ""
        # English "at" with plain dots is a sentence; "arroba" and the others are only an @
        spelled = at[0].strip().lower() == "at"
        # "at" with plain dots, spaced or not, is a sentence ("meet at home . com"), not an
        # address, unless the name before it reads as a person's (jane.doe at example.com) or
        # the text says it is an address (my e-mail is jdoe at example.com)
        plain = spelled and all(d.strip() == "." for d in dots)
        if tld not in _COMMON_TLDS or (plain and not _addressee(match, local)):
            return None
    address = _DOT_ONLY.sub(".", local) + "@" + _DOT_ONLY.sub(".", domain)
    return address if address != written else None


# jane.doe at example.com: a name of two or more parts before a spelled-out " at " is an
# address's; a file name (README.md at github.com), a package (node.js at nodejs.org), a host
# (docs.python.org at ...) or an abbreviation (e.g. at example.com) is not.
_NAME_PARTS = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[._-][A-Za-z][A-Za-z0-9]*)+")
_NOT_A_NAME = frozenset({
    "md", "rst", "txt", "py", "js", "mjs", "ts", "jsx", "tsx", "vue", "json", "yaml", "yml",
    "toml", "ini", "cfg", "conf", "html", "htm", "css", "scss", "xml", "csv", "sql", "sh", "rb",
    "go", "rs", "java", "kt", "swift", "php", "pl", "c", "h", "cc", "cpp", "hpp", "cs", "ipynb",
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "png", "jpg", "jpeg", "gif", "svg",
    "zip", "tar", "gz", "tgz", "exe", "dll", "so", "log", "lock", "bak", "tmp", "db", "onnx",
})  # fmt: skip
# Words that say an address follows: "e-mail jdoe at example.com", "my e-mail is jdoe at ...",
# "contact: jdoe at acme.io". Not verbs with an object ("contact us at example.com", "email me at
# example.com"): a pronoun is no address's name.
_SAYS_ADDRESS = re.compile(
    r"(?:(?:e-?mail|courriel|correo)(?:[ \t]+(?:address|addr|id))?[ \t]*(?:[:=]|[ \t]is)?"
    r"|contact[ \t]*[:=])[ \t]*$",
    re.IGNORECASE,
)
_PRONOUNS = frozenset({
    "me", "us", "you", "him", "her", "it", "them", "we", "they", "i", "someone", "anyone",
    "everyone", "somebody", "anybody",
})  # fmt: skip


def _addressee(match: re.Match[str], local: str) -> bool:
    """Whether the name before a spelled-out " at " with plain dots is an address's."""
    if local.lower() not in _PRONOUNS and _SAYS_ADDRESS.search(
        match.string, max(0, match.start() - 40), match.start()
    ):
        return True
    if not _NAME_PARTS.fullmatch(local):
        return False
    parts = re.split(r"[._-]", local.lower())
    return (
        max(len(part) for part in parts) >= 2
        and parts[-1] not in _NOT_A_NAME
        and parts[-1] not in _COMMON_TLDS
    )


# j a n e . d o e @ e x a m p l e . c o m: one character at a time, spaced.
_LETTER_SPACED = re.compile(r"(?<![^\s])(?:[\w.+%@-][ \t]){6,}\w(?![^\s])")
_PLAIN_EMAIL = re.compile(rf"{_LABEL}(?:\.{_LABEL})*@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,24}}")


def _collapsed_email(match: re.Match[str]) -> str | None:
    address = re.sub(r"[ \t]", "", match[0])
    return address if _PLAIN_EMAIL.fullmatch(address) else None


def _letter_spaced(text: str) -> Mapped:
    if "@" not in text:
        return identity(text)
    return substitute(text, _LETTER_SPACED, _collapsed_email)


# A quick scan for what an address written out needs (besides an @): a bracketed or dashed name
# of @, a spelled-out dot or @, or " at " before a dotted host (jane.doe at example.com). One
# character class first, then look-behinds: an alternation at every position costs 4x as much.
_MAY_SPELL_EMAIL = re.compile(
    rf"[ \t\[({{<](?:(?<=[ \t])(?:{_DOT_NAMES}|{'|'.join(_AT_NAMES[1:])})[ \t]"
    rf"|(?<=[ \t])-(?:{'|'.join(_AT_NAMES)})-[ \t]"
    r"|(?<=[ \t])at[ \t]+[A-Za-z0-9][\w-]*\.[A-Za-z]"
    rf"|(?<={_OPEN})[ \t]*(?:{'|'.join(_AT_NAMES)})[ \t]*{_CLOSE})",
    re.IGNORECASE,
)


def _emails(text: str) -> Mapped:
    if "@" not in text and not _MAY_SPELL_EMAIL.search(text):
        return identity(text)
    return substitute(text, _SPELLED_EMAIL, _email)


# An @ as written, with its domain's dots loosened (jane.doe@example,com, jane.doe@example .com,
# jane.doe@example. com, jane.doe@example_com) or its name in quotes ("jane.doe"@example.com,
# "jane doe"@example.com, as RFC 5322 allows): only before a common top-level domain, where
# nothing but an address is written so.
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LOOSE_DOT = r"(?:[ \t]*\.[ \t]*|,|_)"  # a comma only unspaced: "a@b, com" is a list
_QUOTED_NAME = r'"[^"\n@]{1,64}"'
_LOOSE_EMAIL = re.compile(
    rf"(?:(?<![\w.+%@\"-]){_LABEL}(?:\.{_LABEL})*|{_QUOTED_NAME})[ \t]*@[ \t]*"
    rf"{_HOST_LABEL}(?:{_LOOSE_DOT}{_HOST_LABEL})*?{_LOOSE_DOT}([A-Za-z]{{2,24}})(?![\w@.-])",
    re.IGNORECASE,
)


# Where a loosened address may be (both open with a literal, so the scan is fast): a quote by
# an @, or a space, comma or underscore among the domain's labels.
_MAY_LOOSE = re.compile(r'"[ \t]*@|@[ \t]*[A-Za-z0-9][\w.-]{0,63}?(?:[ \t]+\.|\.[ \t]|,[A-Za-z]|_)')
_LAST_LOOSE_DOT = re.compile(rf"{_LOOSE_DOT}[A-Za-z]{{2,24}}$")
_COMPLETE = re.compile(r"\.([A-Za-z]{2,24})$")


def _loose_address(match: re.Match[str]) -> str | None:
    tld = match[1]
    if tld.lower() not in _COMMON_TLDS:
        return None
    local, _, domain = match[0].partition("@")
    cut = _LAST_LOOSE_DOT.search(domain)
    assert cut is not None
    head = _COMPLETE.search(domain[: cut.start()].strip(" \t"))
    if head is not None and head[1].lower() in _COMMON_TLDS:
        return None  # business@pglaf.org. Email: a whole address, then a sentence
    if (" " in cut[0] or "\t" in cut[0]) and tld[0].isupper() and not tld.isupper():
        return None  # ... @example. Com: a sentence starts there
    local = local.strip(" \t")
    if local.startswith('"'):
        local = re.sub(r"[ \t]+", ".", local.strip('"').strip())
    domain = re.sub(_LOOSE_DOT, ".", domain.strip(" \t"))
    address = f"{local}@{domain}"
    return address if address != match[0] and _PLAIN_EMAIL.fullmatch(address) else None


def _loose_emails(text: str) -> Mapped:
    if "@" not in text or not _MAY_LOOSE.search(text):
        return identity(text)
    return substitute(text, _LOOSE_EMAIL, _loose_address)


# jdoe@gmail, jane.doe at hotmail: a webmail provider's name stands for its whole domain. With a
# spelled-out " at ", only after a name an address would have (`_addressee`: not "look at
# outlook").
_WEBMAIL_NAMES = (
    "gmail|googlemail|yahoo|hotmail|outlook|icloud|aol|protonmail|proton|gmx|yandex|zoho|fastmail"
)
_WEBMAIL = re.compile(
    rf"(?<![\w.+%@-]){_LABEL}(?:\.{_LABEL})*(?:@|[ \t]+at[ \t]+)(?:{_WEBMAIL_NAMES})"
    r"(?![\w@-]|\.[A-Za-z0-9])",
    re.IGNORECASE,
)
_WEBMAIL_AT = re.compile(r"@|[ \t]+at[ \t]+", re.IGNORECASE)
_WEBMAIL_PROVIDERS = tuple(_WEBMAIL_NAMES.split("|"))


def _webmail_address(match: re.Match[str]) -> str | None:
    written = match[0]
    at = next(_WEBMAIL_AT.finditer(written))
    local, provider = written[: at.start()], written[at.end() :]
    if at[0] != "@" and not _addressee(match, local):
        return None
    return f"{local}@{provider}.com"


def _webmail(text: str) -> Mapped:
    lower = text.lower()  # a quick scan: substrings, not the regex's alternation
    if not any(name in lower for name in _WEBMAIL_PROVIDERS):
        return identity(text)
    return substitute(text, _WEBMAIL, _webmail_address)


# -- spelled-out digits ------------------------------------------------------------------------

# Digit words in English, German, French, Spanish, Italian, Portuguese and Dutch (no word is
# a different digit in two of them), with and without their accents (combining accents are
# dropped before this step: fu\u0308nf reads as funf).
DIGIT_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
    "null": "0", "eins": "1", "zwei": "2", "zwo": "2", "drei": "3", "vier": "4", "fünf": "5",
    "funf": "5", "fuenf": "5", "sechs": "6", "sieben": "7", "acht": "8", "neun": "9",
    "zéro": "0", "un": "1", "deux": "2", "trois": "3", "quatre": "4", "cinq": "5", "sept": "7",
    "huit": "8", "neuf": "9",
    "cero": "0", "uno": "1", "dos": "2", "tres": "3", "cuatro": "4", "cinco": "5", "seis": "6",
    "siete": "7", "ocho": "8", "nueve": "9",
    "due": "2", "tre": "3", "quattro": "4", "cinque": "5", "sei": "6", "sette": "7", "otto": "8",
    "nove": "9",
    "um": "1", "dois": "2", "três": "3", "quatro": "4", "sete": "7", "oito": "8",
    "nul": "0", "een": "1", "één": "1", "twee": "2", "drie": "3", "vijf": "5", "zes": "6",
    "zeven": "7", "negen": "9",
}  # fmt: skip
MIN_SPELLED_DIGITS = 7
MIN_SPELLED_WORDS = 3

_Trie = dict[str, "_Trie"]  # a character to the words' rest; "" marks a word's end


def word_trie(words: Iterable[str]) -> str:
    """An alternation of `words` as a regular expression that shares their prefixes
    (``c(?:ero|inq)``): Python's engine tries a flat alternation word by word at every position."""
    root: _Trie = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: _Trie) -> str:
        ends = "" in node
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
        if ends:
            return f"(?:{body})?" if len(branches) == 1 and len(body) > 1 else f"{body}?"
        return body

    return emit(root)


_WORDS = word_trie(DIGIT_WORDS)
_TOKEN = rf"(?:(?:double|triple)\s+)?(?:{_WORDS}|\d+)"
_SPELLED = re.compile(rf"\b{_TOKEN}(?:[\s,.;:/-]+{_TOKEN})+\b", re.IGNORECASE)
_PIECES = re.compile(r"(double|triple)\s+(\w+)|(\w+)|([^\w]+)", re.IGNORECASE)


_DIGIT_WORD = re.compile(rf"\b(?:{_WORDS})\b", re.IGNORECASE)


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
    # Three words at least: one digit word beside numbers is a word ("due 2013-10-15", "Sept 15").
    if words < MIN_SPELLED_WORDS or sum(c.isdigit() for c in spelled) < MIN_SPELLED_DIGITS:
        return None
    if len({c for c in spelled if c.isdigit()}) == 1:  # NULL NULL NULL ... in a table: no number
        return None
    if len(spelled) == 10 and spelled.isdigit():  # ten digits said in one breath: a phone number
        return f"{spelled[:3]}-{spelled[3:6]}-{spelled[6:]}"
    return spelled


def _spelled_digits(text: str) -> Mapped:
    if not _may_spell(text):
        return identity(text)
    return substitute(text, _SPELLED, _digits)


# A word, a run of digits, or a character that no spelled-out number holds (a separator does not
# break one, nor does `_`, which the pattern's word edges reject anyway).
_SPELL_TOKENS = re.compile(r"[^\W\d_]+|\d+|[^\w\s,.;:/-]")


def _may_spell(text: str) -> bool:
    """Whether `text` holds `MIN_SPELLED_WORDS` digit words with only digits, separators and
    `double`/`triple` between them: what every spelled-out number `_digits` reads needs. A quick
    scan of the words against a set; the pattern tries its alternation at every word's start
    (1 MiB of prose: ~0.13 s)."""
    run = 0
    for token in _SPELL_TOKENS.findall(text.lower()):
        if token in DIGIT_WORDS:
            run += 1
            if run >= MIN_SPELLED_WORDS:
                return True
        elif not (token[0].isdigit() or token in ("double", "triple")):
            run = 0
    return False


# -- letters for digits: 4lll llll llll llll, 415-555-O134 -----------------------------------

_AS_DIGIT = str.maketrans("OoIl", "0011")
_D = "[0-9OoIl]"
# A card's 4-4-4-4 or 4-6-5 groups, an SSN's 3-2-4 and a phone number's 3-3-4, with letters
# that pass for 0 and 1 among the digits.
_LOOKALIKE_NUMBER = re.compile(
    rf"(?<![\w.-])(?:{_D}{{4}}(?:[ -]?{_D}{{4}}){{3}}|{_D}{{4}}[ -]?{_D}{{6}}[ -]?{_D}{{5}}"
    rf"|{_D}{{3}}-{_D}{{2}}-{_D}{{4}}|\(?{_D}{{3}}\)?[-. ]?{_D}{{3}}[-. ]{_D}{{4}})(?![\w-])"
)


def _as_digits(match: re.Match[str]) -> str | None:
    """The number with its letters read as digits, when it has both; only a card (the
    detector checks its Luhn digit) may be mostly letters, anything else mostly digits."""
    written = match[0]
    digits = sum(c.isdigit() for c in written)
    letters = sum(c in "OoIl" for c in written)
    if not digits or not letters:
        return None
    if letters >= digits and not (len(written) > 14 and written[0].isdigit()):
        return None
    return written.translate(_AS_DIGIT)


# A digit beside a look-alike letter, or a group of them beside a digit: in every such number.
_MAY_LOOK_ALIKE = re.compile(r"\d(?:(?<=[OoIl]\d)|(?<=[OoIl][ -]\d)|(?=[ -]?[OoIl]))")


def _digit_lookalikes(text: str) -> Mapped:
    if not _MAY_LOOK_ALIKE.search(text):
        return identity(text)
    return substitute(text, _LOOKALIKE_NUMBER, _as_digits)


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
