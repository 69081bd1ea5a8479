"""Deterministic PII detectors: a regex finds candidates, a validator (checksum, ranges) keeps them.

Each hit is a `PiiEntity` with `source="pattern"`, character offsets into the scanned text and a
confidence that reflects how much the validator proves (a checksum proves more than a format).
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from classifiers.signals import PiiEntity

# When two hits overlap, the one whose type comes first wins (checksums before formats).
PRIORITY = (
    "IBAN_CODE",
    "CREDIT_CARD",
    "US_SSN",
    "EMAIL_ADDRESS",
    "IP_ADDRESS",
    "PHONE_NUMBER",
)
_RANK = {kind: i for i, kind in enumerate(PRIORITY)}
_MAY_HOLD_PII = re.compile(r"[\d@]")


Detector = Callable[[str], Iterator[PiiEntity]]


def find_pii(text: str, detectors: Sequence[Detector] | None = None) -> tuple[PiiEntity, ...]:
    """Every validated PII span in `text` (by `detectors`, default all), without overlaps,
    ordered by start."""
    if not _MAY_HOLD_PII.search(text):  # every detector needs a digit, or the @ of an email
        return ()
    hits = [
        hit for detect in (DETECTORS if detectors is None else detectors) for hit in detect(text)
    ]
    return resolve_overlaps(hits)


def resolve_overlaps(hits: list[PiiEntity]) -> tuple[PiiEntity, ...]:
    """Keep the higher-priority (then longer) hit wherever two overlap."""
    kept: list[PiiEntity] = []  # by start; they never overlap, so their ends ascend too
    starts: list[int] = []
    for hit in sorted(hits, key=lambda h: (_RANK.get(h.type, 99), h.start - h.end, h.start)):
        at = bisect_left(starts, hit.start)
        if (at > 0 and kept[at - 1].end > hit.start) or (
            at < len(kept) and kept[at].start < hit.end
        ):
            continue
        kept.insert(at, hit)
        starts.insert(at, hit.start)
    return tuple(kept)


def _hit(kind: str, start: int, end: int, score: float) -> PiiEntity:
    return PiiEntity(kind, start, end, score, None, "pattern")


# -- credit cards ------------------------------------------------------------------------------

# Digits with single spaces or dashes between them, not glued to a longer word or number (the
# first digit matched before the look-behind: see _SSN_SEPARATED).
_DIGIT_RUN = re.compile(r"\d(?<![\w-]\d)\d*(?:[ -]\d+)*(?!\w)")
_GROUP = re.compile(r"\d+")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a card number given as digits only."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """The card network an issuer prefix and length belong to, or None."""
    n = len(digits)
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if (p4 == 6011 or p2 == 65 or 644 <= p3 <= 649) and 16 <= n <= 19:
        return "discover"
    if 3528 <= p4 <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (300 <= p3 <= 305 or p2 in (36, 38, 39) or p4 == 3095) and 14 <= n <= 19:
        return "diners"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    if (p2 == 50 or 56 <= p2 <= 69) and 12 <= n <= 19:
        return "maestro"
    return None


def _payment_card(digits: str) -> bool:
    """A known network's number, or (as Presidio does) a 13-19 digit number whose major industry
    identifier is travel or banking (3-6): issuers outside the known ranges exist, and the Luhn
    check already rules out nine in ten random digit strings."""
    if card_brand(digits) is not None:
        return True
    return len(digits) >= 13 and digits[0] in "3456"


def card_grouping(lengths: Sequence[int]) -> bool:
    """Whether digit groups of these lengths are written as card numbers are: in one run, in
    fours (the last maybe shorter), 4-6-5 or 4-6-4 (Amex, Diners), or digit by digit. A slice
    of a list of numbers (`12 345 6 78 ...`) is Luhn-valid one time in ten, but not grouped
    like a card."""
    if len(lengths) == 1 or all(n == 1 for n in lengths):
        return True
    if all(n == 4 for n in lengths[:-1]) and 1 <= lengths[-1] <= 4:
        return True
    return tuple(lengths) in ((4, 6, 5), (4, 6, 4))


def _credit_cards(text: str) -> Iterator[PiiEntity]:
    for run in _DIGIT_RUN.finditer(text):
        groups = [(g.start() + run.start(), g.end() + run.start()) for g in _GROUP.finditer(run[0])]
        i = 0
        while i < len(groups):
            # The longest run of whole groups from here that is a valid card number.
            found = None
            count = 0
            for j in range(i, len(groups)):
                count += groups[j][1] - groups[j][0]
                if count > 19:
                    break
                if count >= 12:
                    digits = "".join(text[s:e] for s, e in groups[i : j + 1])
                    lengths = [e - s for s, e in groups[i : j + 1]]
                    # Oddly grouped digits are a card when they are the whole run, not when
                    # they are a slice of a longer list of numbers.
                    whole = i == 0 and j == len(groups) - 1
                    grouped = whole or card_grouping(lengths)
                    if luhn_valid(digits) and _payment_card(digits) and grouped:
                        found = j
            if found is None:
                i += 1
                continue
            yield _hit("CREDIT_CARD", groups[i][0], groups[found][1], 0.95)
            i = found + 1


# -- IBAN --------------------------------------------------------------------------------------

# The length of the IBAN of each country that issues them (ISO 13616 registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

# Country codes are upper case in print, but people type them in lower case too ("es91 2100 ...");
# an upper-case code may stand apart from its check digits ("DE 89 3704 ..."). So may one in
# lower case ("de 89 3704 ..."), but English words such as "is" and "at" are country codes, and
# after "at 12" the letters of the words that follow would pass the checksum once in 97: such an
# IBAN's account part is read only if it is digits, after at most four letters of a bank code
# ("gb 29 nwbk 6016 ..."). A French account number with a letter in it is not read so.
# Found by its check digits, the country code looked for behind them (letters are everywhere in
# prose, two digits after two letters seldom: see _SSN_SEPARATED): the code glued to them, or
# set apart by a space.
_IBAN_CHECK = re.compile(
    r"\d(?:(?<=(?<![A-Za-z0-9])[A-Za-z]{2}\d)|(?<=(?<![A-Za-z0-9])[A-Za-z]{2} \d))\d"
    r"(?= ?[A-Za-z0-9])"
)
_BANK_CODE_THEN_DIGITS = re.compile(r"[A-Za-z]{0,4}\d+")
_MORE_DIGITS = re.compile(r" ?\d")


def _printed_account(account: str, written: str, after: str) -> bool:
    """Whether the account part of a lower-case IBAN set apart is written as IBANs are printed:
    a bank code and digits, in one run or in groups of four, and not the head of a longer list of
    numbers ("at 12 34 56 78 ..." would pass the checksum once in 97)."""
    groups = written.split()
    in_fours = len(groups) == 1 or all(len(g) == 4 for g in groups[:-1])
    return (
        in_fours
        and bool(_BANK_CODE_THEN_DIGITS.fullmatch(account))
        and not _MORE_DIGITS.match(after)
    )


def iban_valid(iban: str) -> bool:
    """The ISO 7064 mod-97 check of an IBAN given without spaces (country, check digits, BBAN)."""
    iban = iban.upper()
    if len(iban) != IBAN_LENGTHS.get(iban[:2], -1) or not iban.isalnum() or not iban.isascii():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged.upper())) % 97 == 1


def _ibans(text: str) -> Iterator[PiiEntity]:
    for check in _IBAN_CHECK.finditer(text):
        apart = text[check.start() - 1] == " "
        begin = check.start() - (3 if apart else 2)
        country = text[begin : begin + 2]
        length = IBAN_LENGTHS.get(country.upper())
        if length is None:
            continue
        # In lower case and set apart, the code may be a word ("at 12"): see _printed_account.
        loose = apart and not country.isupper()
        # Take exactly the country's length of characters, allowing single spaces between them.
        chars = [*country, *check[0]]
        pos = check.end()
        while len(chars) < length and pos < len(text):
            ch = text[pos]
            if ch.isascii() and ch.isalnum():
                chars.append(ch)
            elif not (ch == " " and pos + 1 < len(text) and text[pos + 1].isalnum()):
                break
            pos += 1
        follows = text[pos] if pos < len(text) else " "
        iban = "".join(chars)
        if loose and not _printed_account(iban[4:], text[check.end() : pos], text[pos:]):
            continue
        if len(chars) == length and not follows.isalnum() and iban_valid(iban):
            yield _hit("IBAN_CODE", begin, pos, 0.95)


# -- US social security numbers ----------------------------------------------------------------

# Each pattern of digits below matches its first character before the look-behinds that say what
# may not stand before it (`\d(?<![\w-]\d)` for `(?<![\w-])\d`): a pattern that opens with a
# look-behind is tried at every position of the text, one that opens with a character class only
# where that character is (4x faster over prose).
_SSN_SEPARATED = re.compile(r"(\d(?<![\w-]\d)\d{2})([- ])(\d{2})\2(\d{4})(?![\w-])")
_SSN_BARE = re.compile(r"(\d(?<![\w-]\d)\d{2})(\d{2})(\d{4})(?![\w-])")
# Dots, or two different separators (078.05.1120, 078.05-1120): as for bare digits, only where
# the text says SSN (a dotted 3-2-4 run is as likely a reference number).
_SSN_MIXED = re.compile(
    r"(\d(?<![\w.-]\d)\d{2})"
    r"(?:([-. ])(\d{2})(?!\2)([-. ])(\d{4})|(\.)(\d{2})(\.)(\d{4}))(?![\w-]|\.\d)"
)
_SSN_CONTEXT = re.compile(
    r"\b(?:ssn|ssns|social\s+security|ss\s*#|ss\s+no|taxpayer|tax\s+id|tin)\b", re.IGNORECASE
)


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """The SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ssns(text: str) -> Iterator[PiiEntity]:
    for m in _SSN_SEPARATED.finditer(text):
        if ssn_valid(m[1], m[3], m[4]):
            yield _hit("US_SSN", m.start(), m.end(), 0.9 if m[2] == "-" else 0.8)
    for m in _SSN_MIXED.finditer(text):
        area, group, serial = (m[1], m[3], m[5]) if m[2] else (m[1], m[7], m[9])
        near = text[max(0, m.start() - 48) : m.end() + 24]
        if ssn_valid(area, group, serial) and _SSN_CONTEXT.search(near):
            yield _hit("US_SSN", m.start(), m.end(), 0.7)
    for m in _SSN_BARE.finditer(text):
        # Nine bare digits are an SSN only when the text around them says so.
        near = text[max(0, m.start() - 48) : m.end() + 24]
        if ssn_valid(m[1], m[2], m[3]) and _SSN_CONTEXT.search(near):
            yield _hit("US_SSN", m.start(), m.end(), 0.7)


# -- email -------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![\w-]|\.[A-Za-z0-9])"
)


def _emails(text: str) -> Iterator[PiiEntity]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        yield _hit("EMAIL_ADDRESS", m.start(), m.end(), 0.95)


# -- IP addresses ------------------------------------------------------------------------------

_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:(?:\.\d{1,3}){3})?(?:%\w+)?(?![\w:])"
)
_TWO_COLONS = re.compile(r":[0-9A-Fa-f]{0,4}:")  # what every IPv6 address holds
_VERSION_BEFORE = re.compile(r"(?:\bv|version|release|build|firmware)\s*$", re.IGNORECASE)


def _ips(text: str) -> Iterator[PiiEntity]:
    for m in _IPV4.finditer(text):
        if not _VERSION_BEFORE.search(text[max(0, m.start() - 12) : m.start()]):
            yield from _address(m, ipaddress.IPv4Address)
    if not _TWO_COLONS.search(text):  # a quick scan: a literal first, as _IPV6's is not
        return
    for m in _IPV6.finditer(text):
        # Code such as `a::b` parses as IPv6 too; a real address has a digit somewhere.
        if any(ch.isdigit() for ch in m[0].split("%")[0]):
            yield from _address(m, ipaddress.IPv6Address)


def _address(
    m: re.Match[str], parse: Callable[[str], ipaddress.IPv4Address | ipaddress.IPv6Address]
) -> Iterator[PiiEntity]:
    """The hit of a matched address, unless it does not parse or names no one's host."""
    try:
        address = parse(m[0])
    except ValueError:
        return
    if not _names_no_one(address):
        yield _hit("IP_ADDRESS", m.start(), m.end(), 0.9)


def _names_no_one(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses that identify no host of anyone's: this machine (127.0.0.1, ::1), any address
    (0.0.0.0, ::), link-local and multicast ones. Code and logs are full of them."""
    return (
        address.is_loopback
        or address.is_unspecified
        or address.is_link_local
        or address.is_multicast
    )


# -- phone numbers -----------------------------------------------------------------------------

# Each form ends with `_ALONE`: a phone number is not a piece of a longer run of digit groups.
_ALONE = r"(?!\w|[ .-]\d)"
# An extension, part of the number it follows: x1405, ext. 5616, #3532, ;ext=9316 (not "x 2" nor
# " #3": a product and an issue number).
_EXTENSION = r"(?i:[ \t]*(?:;?ext=|ext\.?)[ \t]*\d{1,5}|[ \t]*x\d{1,5}|#\d{1,5})"  # EXT. 12 too
_EXTENSION_AT_END = re.compile(_EXTENSION + "$")
_MAY_EXTEND = f"(?:{_EXTENSION})?"
# +CC then up to six groups, a group optionally in parentheses: +44 20 7946 0958, +1 (555) 123-4567.
# A word may be glued before the + (`Gonzalez+1 415 555 0134`), an identifier may not (`x_1+44`).
_PHONE_INTL = re.compile(
    r"\+(?<![\d_+]\+)\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}" + _MAY_EXTEND + _ALONE
)
# The same dialled from abroad as most of the world writes it, 00 for the +: 0044 20 7946 0958.
# Groups must be apart (0044207946... is as likely an account number), the code is not 0.
_PHONE_INTL_00 = re.compile(
    r"0(?<![\w+.-]0)(?<!\d[ .-]0)0[1-9]\d{0,2}(?:[ .-](?:\(\d{1,4}\)|\d{1,8})){1,6}"
    + _MAY_EXTEND
    + _ALONE
)


def _opening(first: str) -> str:
    """`first` (one character) where a national form may open: no word character, +, dot or
    dash before it, nor a digit and one separator (matched first, see above)."""
    return rf"{first}(?<![\w+.-]{first})(?<!\d[ .-]{first})"


_AT_BRACKET, _AT_DIGIT, _AT_ZERO, _AT_ONE = (_opening(c) for c in (r"\(", r"\d", "0", "1"))


# Any national form with an extension: the extension says phone where the digits alone could be
# anything (2221229517, 34 41 10 71).
_PHONE_EXT = re.compile(
    rf"(?:{_AT_BRACKET}\d|{_AT_DIGIT})\d{{1,4}}\)?(?:[ .-]?\d{{2,6}}){{0,4}}"
    + _EXTENSION
    + r"(?!\w)"
)
# North American: (555) 123-4567, 555-123-4567, 555.123.4567, optionally after 1.
_PHONE_NANP = re.compile(
    rf"(?:{_AT_ONE}[ .-]?(?:\(\d{{3}}\)[ .-]?|\d{{3}}[ .-])|{_AT_BRACKET}\d{{3}}\)[ .-]?"
    rf"|{_AT_DIGIT}\d{{2}}[ .-])\d{{3}}[ .-]\d{{4}}" + _MAY_EXTEND + _ALONE
)
# National with a trunk 0: 020 7946 0958, 07700 900123, (030) 123456.
_PHONE_TRUNK = re.compile(
    rf"(?:{_AT_BRACKET}0|{_AT_ZERO})\d{{1,4}}\)?[ -]\d{{3,4}}[ -]?\d{{3,4}}" + _MAY_EXTEND + _ALONE
)


# A bare run of digits (4155550134, 13812345678, +8613812345678) proves little alone: an order, an
# account, a timestamp. Right after words that say phone, it is one: "phone: 4155550134",
# "电话是13812345678", "мой телефон 89161234567". The model reads the English forms; this reads
# them in the languages it was not trained on, and wherever the normalizer rewrote digits
# (spaced, spelled, encoded) where the model never looks. Between the word and the number only
# punctuation and linking words ("number is", "号码是", "番号は"): "cell count 1234567" and
# "mobile app downloads: 1234567" are counts.
_LINK = (
    r"number|no|nr|num|is|was|are|me|us|at|on|here|n[uú]mero|es|de|ist|nummer|est|au|di|é"
    r"|номер|мой|мобильный|это|号码|號碼|号|是|为|為|は|番号|번호|는|은|이|로"
)
# Full-width colons and commas fold to ASCII before the rewritten views are read.
_LINK_MARKS = r"[\s:#=>()\[\]\-\u2013\u2014.,\u2192\u3001]*"
_PHONE_WORD = re.compile(
    r"(?i:(?<!\w)(?:phone|telephone|tel|mobile|cell|cellphone|whatsapp|fax|sms|text\s+me"
    r"|call(?:\s+(?:me|us|him|her|them))?\s+(?:at|on)|call\s+(?:me|us)"
    r"|tel[eé]fono|telefone|t[eé]l[eé]phone|portable|telefon(?:nummer)?|handy(?:nummer)?"
    r"|rufnummer|telefoon(?:nummer)?|телефон[\u0430-\u044f]{0,3}|тел|моб)(?!\w)"
    r"|电话|電話|手机|手機|联系方式|聯繫方式|携帯|ケータイ|전화|휴대폰|핸드폰|연락처)"
    rf"{_LINK_MARKS}(?:(?i:{_LINK})(?![a-zA-Z\u00e0-\u00ff\u0430-\u044f\u0451]){_LINK_MARKS}){{0,3}}$"
)
# 7 to 15 digits, bare, or in groups of up to 5 with one kind of separator (a number written
# 4 1 5 5 5 5 0 1 3 4; not decimals in a list: 12.5 13.7 14.2).
# Groups on lines of their own (415\n555\n0134) count too, of two digits or more: after a word for
# phone a column of numbers is the number written down it.
_BARE_PHONE = re.compile(
    r"(?=[+\d])(?<![\w+.-])\+?(?:\d{7,15}(?![\w-]|[.-]\d)"
    r"|\d{1,5}([ .-])\d{1,5}(?:\1\d{1,5}){0,13}(?![\w-]|[ .-]?\d)"
    r"|\d{2,5}(?:[ \t]*\n[ \t]*\d{2,5}){1,6}(?![\w-]|\s*\d))"
)
_PHONE_WORD_REACH = 48  # characters before a number read for the word (its longest and the gap)
# A word for phone glued to the number (call4155550134, tel+4930123456, phoneno13812345678).
# (The number is found first, then the word checked: a scan for the words alone costs more.)
_GLUED_NUMBER = re.compile(r"(?:\+(?<=[a-zA-Z]\+)\d|\d(?<=[a-zA-Z]\d))\d{6,14}(?![\w-]|[.-]\d)")
_GLUED_PHONE_WORD = re.compile(
    r"(?i:(?<![^\W\d_])(?:phone|tel|mobile|cell|call|fax|whatsapp|sms|text)(?:no|nr|num|number)?)$"
)


def _said_phones(text: str) -> Iterator[PiiEntity]:
    for m in _BARE_PHONE.finditer(text):
        before = text[max(0, m.start() - _PHONE_WORD_REACH) : m.start()]
        if 7 <= digit_count(m[0]) <= 15 and _PHONE_WORD.search(before):
            yield _hit("PHONE_NUMBER", m.start(), m.end(), 0.75)
    for m in _GLUED_NUMBER.finditer(text):
        if _GLUED_PHONE_WORD.search(text, max(0, m.start() - 16), m.start()):
            yield _hit("PHONE_NUMBER", m.start(), m.end(), 0.75)


def digit_count(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def _phones(text: str) -> Iterator[PiiEntity]:
    for pattern, low, high, score in (
        (_PHONE_INTL, 8, 15, 0.85),
        (_PHONE_INTL_00, 10, 17, 0.85),
        (_PHONE_EXT, 7, 13, 0.8),
        (_PHONE_NANP, 10, 11, 0.8),
        (_PHONE_TRUNK, 9, 12, 0.7),
    ):
        for m in pattern.finditer(text):
            if not low <= digit_count(_EXTENSION_AT_END.sub("", m[0])) <= high:
                continue
            if "." in m[0] and _VERSION_BEFORE.search(text[max(0, m.start() - 12) : m.start()]):
                continue
            yield _hit("PHONE_NUMBER", m.start(), m.end(), score)
    yield from _said_phones(text)


DETECTORS: tuple[Detector, ...] = (
    _ibans,
    _credit_cards,
    _ssns,
    _emails,
    _ips,
    _phones,
)
# The detectors of grouped numbers: what separators between digit groups can hide.
NUMBER_DETECTORS: tuple[Detector, ...] = (_ibans, _credit_cards, _ssns, _phones)
# The detector of what a line break where two texts meet can cut: jane.doe@exam | ple.com.
ADDRESS_DETECTORS: tuple[Detector, ...] = (_emails,)
