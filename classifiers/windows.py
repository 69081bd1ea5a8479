"""Tokenization and the windows the model reads.

Sequence heads (domain, attack, difficulty) read one bounded window: the head and tail of the
last user turn, then a little context (the system prompt's head, the previous turn's tail).
PII (and the attack head, window by window) reads messages in overlapping windows; each token
belongs to the one window where it sits furthest from an edge, so the windows' predictions never
overlap. A request gets a bounded number of windows: past the cap, `spread` keeps the head, the
tail and evenly spaced windows of the middle, and `keep_windows` gives the kept ones their tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Encoding, Tokenizer

IdArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class EncodedText:
    """One message's tokens without special tokens; offsets are characters into the message."""

    ids: IdArray
    encoding: Encoding

    def __len__(self) -> int:
        return len(self.ids)


class TextTokenizer:
    """The shipped WordPiece tokenizer, with its baked-in truncation and padding switched off."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.cls_id = _special(tokenizer, "[CLS]")
        self.sep_id = _special(tokenizer, "[SEP]")
        self.pad_id = _special(tokenizer, "[PAD]")

    @classmethod
    def from_file(cls, path: Path) -> TextTokenizer:
        if not path.is_file():
            raise FileNotFoundError(f"The tokenizer {path} does not exist; ship tokenizer.json.")
        return cls(Tokenizer.from_file(str(path)))

    def encode(self, texts: Sequence[str]) -> list[EncodedText]:
        """Tokenize many texts in one call (the tokenizer parallelizes the batch)."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [EncodedText(np.asarray(e.ids, dtype=np.int64), e) for e in encodings]

    def wrap(self, *parts: IdArray) -> IdArray:
        """`[CLS] part [SEP] part [SEP]...`: the special tokens the model was trained with."""
        pieces: list[IdArray] = [np.array([self.cls_id], dtype=np.int64)]
        sep = np.array([self.sep_id], dtype=np.int64)
        for part in parts:
            pieces += [part, sep]
        return np.concatenate(pieces)


def _special(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"The tokenizer has no {token} token; ship a BERT WordPiece tokenizer.")
    return int(token_id)


def padded(rows: Sequence[Sequence[int] | IdArray], pad_id: int = 0) -> tuple[IdArray, IdArray]:
    """The input ids and attention mask of `rows`, padded with `pad_id` to the longest."""
    sizes = np.array([len(row) for row in rows], dtype=np.int64)
    ids = np.full((len(rows), int(sizes.max())), pad_id, dtype=np.int64)
    for r, row in enumerate(rows):
        ids[r, : sizes[r]] = row
    return ids, (np.arange(ids.shape[1]) < sizes[:, None]).astype(np.int64)


def head_and_tail(ids: IdArray, room: int) -> IdArray:
    """`ids` if it fits in `room`, else its first and last halves of `room`."""
    if len(ids) <= room:
        return ids
    head = (room + 1) // 2
    return np.concatenate((ids[:head], ids[len(ids) - (room - head) :]))


def sequence_window(
    tokenizer: TextTokenizer,
    messages: Sequence[IdArray],
    roles: Sequence[str],
    *,
    max_length: int,
    context_tokens: int,
) -> IdArray:
    """The one row the sequence heads read: `[CLS] last user turn [SEP] context [SEP]`.

    `messages` are each message's token ids; of a long message, its head and tail are enough."""
    row, _ = sequence_row(
        tokenizer, messages, roles, max_length=max_length, context_tokens=context_tokens
    )
    return row


def sequence_row(
    tokenizer: TextTokenizer,
    messages: Sequence[IdArray],
    roles: Sequence[str],
    *,
    max_length: int,
    context_tokens: int,
) -> tuple[IdArray, bool]:
    """`sequence_window`, and whether the last user turn was cut to its head and tail: a crop
    reads the ends of a long turn joined, which is not the text the head was calibrated on."""
    if not messages:
        return tokenizer.wrap(np.zeros(0, dtype=np.int64)), False
    user = last_user_index(roles)
    system = next((i for i, r in enumerate(roles) if r in ("system", "developer")), None)
    context: list[IdArray] = []
    if context_tokens > 0:
        previous = user - 1 if user > 0 and user - 1 != system else None
        wanted = [
            (messages[i], at_end)
            for i, at_end in ((system, False), (previous, True))
            if i is not None and i != user and len(messages[i])
        ]
        left = min(context_tokens, (max_length - 3) // 2)  # the user turn keeps half the row
        for n, (message, at_end) in enumerate(wanted):
            # An even share, and whatever an earlier, shorter piece left over.
            share = min(len(message), left // (len(wanted) - n))
            context.append(message[len(message) - share :] if at_end else message[:share])
            left -= share
    context_ids = np.concatenate(context) if context else np.zeros(0, dtype=np.int64)
    room = max_length - 2 - (len(context_ids) + 1 if len(context_ids) else 0)
    text = head_and_tail(messages[user], room)
    cropped = len(text) < len(messages[user])
    if len(context_ids):
        return tokenizer.wrap(text, context_ids), cropped
    return tokenizer.wrap(text), cropped


def last_user_index(roles: Sequence[str]) -> int:
    """The last user turn, or the last message when no turn is the user's."""
    for i in range(len(roles) - 1, -1, -1):
        if roles[i] == "user":
            return i
    return len(roles) - 1


@dataclass(frozen=True, slots=True)
class Window:
    """Tokens `[start, end)` of one message; its predictions count for `[own_start, own_end)`."""

    start: int
    end: int
    own_start: int
    own_end: int


def pii_windows(n_tokens: int, size: int, overlap: int) -> list[Window]:
    """Overlapping windows of at most `size` tokens that cover `n_tokens`, owning disjoint parts.

    As few windows as fit, all of one length and spread evenly: 300 tokens become two windows of
    166, not two of 254 that overlap by 208, since the encoder's cost grows with every token."""
    if n_tokens <= size:
        return [Window(0, n_tokens, 0, n_tokens)] if n_tokens else []
    if not 0 <= overlap < size:
        raise ValueError(f"The PII window overlap {overlap} must be in [0, {size}).")
    count = -(-(n_tokens - overlap) // (size - overlap))  # ceil: windows of at most `size`
    length = min(size, -(-(n_tokens + (count - 1) * overlap) // count))
    starts = [k * (n_tokens - length) // (count - 1) for k in range(count)]
    windows: list[Window] = []
    for k, start in enumerate(starts):
        end = start + length
        own_start = 0 if k == 0 else windows[-1].own_end
        own_end = n_tokens if k == len(starts) - 1 else (end + starts[k + 1]) // 2
        windows.append(Window(start, end, own_start, own_end))
    return windows


def spread(count: int, keep: int) -> list[int]:
    """`keep` of the indices `0..count-1`, evenly spaced, the first and the last included."""
    if keep >= count:
        return list(range(count))
    if keep <= 0:
        return []
    if keep == 1:
        return [0]
    return [k * (count - 1) // (keep - 1) for k in range(keep)]


def keep_windows(windows: Sequence[Window], indices: Sequence[int]) -> list[Window]:
    """The windows at `indices` (ascending); a kept window whose neighbour was dropped owns its
    tokens up to its own edge, so the kept windows' predictions still never overlap."""
    kept: list[Window] = []
    for position, i in enumerate(indices):
        window = windows[i]
        after_kept = position > 0 and indices[position - 1] == i - 1
        before_kept = position + 1 < len(indices) and indices[position + 1] == i + 1
        kept.append(
            Window(
                window.start,
                window.end,
                window.own_start if after_kept else window.start,
                window.own_end if before_kept else window.end,
            )
        )
    return kept


def runs(windows: Sequence[Window]) -> list[list[int]]:
    """The kept windows in groups whose owned tokens are contiguous (decoded as one stretch)."""
    groups: list[list[int]] = []
    for i, window in enumerate(windows):
        if groups and windows[groups[-1][-1]].own_end == window.own_start:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


# A view: the token ranges one row reads, joined in order (one range, for now).
View = tuple[tuple[int, int], ...]


def attack_views(
    text: str, offsets: Sequence[tuple[int, int]], start: int, end: int, size: int, stride: int
) -> tuple[list[View], list[View]]:
    """What the attack head reads of tokens `[start, end)`: (paragraphs, shifted windows).

    Paragraphs are runs of tokens between line breaks, a long one cut into pieces of `size`
    tokens: an attack set apart by line breaks is read as plainly as sent alone, where a window
    that mixes it with filler scores far lower (docs/BENCHMARKS.md). A long paragraph is also
    read in windows of `size` every `stride` tokens (and one that ends with it) between the pieces,
    so an attack inside a long paragraph of filler, with no line break to split at, has a window
    of itself alone when it is `size + stride` tokens long, and one mostly of itself when
    shorter. Reading a long paragraph by its head and tail instead (as the sequence row reads a
    long turn) and starting windows at sentences were measured too: neither caught more."""
    pieces: list[View] = []
    shifted: list[View] = []
    for a, b in _lines(text, offsets, start, end):
        pieces += [((s, min(s + size, b)),) for s in range(a, b, size)]
        if b - a > size:
            starts = [*range(a + stride, b - size, stride), b - size]
            shifted += [((s, s + size),) for s in dict.fromkeys(starts) if (s - a) % size]
    return pieces, shifted


def short_views(
    text: str,
    offsets: Sequence[tuple[int, int]],
    start: int,
    end: int,
    longer_than: int,
    size: int,
    stride: int,
) -> list[View]:
    """Short windows of `size` tokens every `stride` (and one that ends each line) over every
    line of tokens `[start, end)` longer than `longer_than`: an attack inside one long line of
    filler shares each full-length view with filler and is read diluted, where a window not much
    longer than itself reads it nearly alone (docs/BENCHMARKS.md, *Short windows*)."""
    found: list[View] = []
    for a, b in _lines(text, offsets, start, end):
        if b - a > longer_than:
            starts = dict.fromkeys([*range(a, max(a, b - size), stride), max(a, b - size)])
            found += [((s, min(s + size, b)),) for s in starts]
    return found


def _lines(
    text: str, offsets: Sequence[tuple[int, int]], start: int, end: int
) -> list[tuple[int, int]]:
    """Tokens `[start, end)` in runs between line breaks."""
    return _runs(text, offsets, start, end, breaks=1)


def lines(
    text: str, offsets: Sequence[tuple[int, int]], start: int, end: int
) -> list[tuple[int, int]]:
    """Tokens `[start, end)` in runs between line breaks (what the attack head's pieces cut)."""
    return _lines(text, offsets, start, end)


def paragraphs(
    text: str, offsets: Sequence[tuple[int, int]], start: int, end: int
) -> list[tuple[int, int]]:
    """Tokens `[start, end)` in runs between blank lines (two line breaks or more)."""
    return _runs(text, offsets, start, end, breaks=2)


def one_line(text: str, offsets: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    """Whether no line break falls between tokens `[start, end)`."""
    return len(_lines(text, offsets, start, end)) <= 1


def _runs(
    text: str, offsets: Sequence[tuple[int, int]], start: int, end: int, *, breaks: int
) -> list[tuple[int, int]]:
    bounds: list[tuple[int, int]] = []
    first = start
    for i in range(start + 1, end + 1):
        if i == end or text.count("\n", offsets[i - 1][1], offsets[i][0]) >= breaks:
            bounds.append((first, i))
            first = i
    return bounds
