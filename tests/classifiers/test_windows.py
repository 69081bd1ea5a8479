"""Tokenization and windows: bounded sequence rows, PII windows that cover every token once,
the windows kept under a cap, and the views (paragraphs, windows) the attack head reads."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from classifiers.text import message_text
from classifiers.windows import (
    TextTokenizer,
    attack_views,
    head_and_tail,
    keep_windows,
    lines,
    paragraphs,
    pii_windows,
    runs,
    sequence_row,
    sequence_window,
    short_views,
    spread,
)


@pytest.fixture
def tokenizer(model_dir: Path) -> TextTokenizer:
    return TextTokenizer.from_file(model_dir / "tokenizer.json")


@pytest.mark.parametrize("n_tokens", [0, 1, 10, 254, 255, 300, 477, 1000, 5001])
def test_pii_windows_cover_every_token_exactly_once_within_the_size(n_tokens: int) -> None:
    windows = pii_windows(n_tokens, size=254, overlap=32)
    owned = [i for w in windows for i in range(w.own_start, w.own_end)]
    assert owned == list(range(n_tokens))
    assert all(w.end - w.start <= 254 for w in windows)
    assert all(w.start <= w.own_start <= w.own_end <= w.end for w in windows)


@pytest.mark.parametrize("n_tokens", [255, 300, 477, 1000, 5001])
def test_pii_windows_are_as_few_and_as_short_as_the_overlap_allows(n_tokens: int) -> None:
    windows = pii_windows(n_tokens, size=254, overlap=32)
    assert len(windows) == -(-(n_tokens - 32) // (254 - 32))
    assert len({w.end - w.start for w in windows}) == 1  # one length: one padded batch
    assert windows[-1].end == n_tokens
    assert all(left.end - right.start >= 32 for left, right in itertools.pairwise(windows))
    # no more tokens than the content and the overlaps need, rounding aside
    total = sum(w.end - w.start for w in windows)
    assert total <= n_tokens + 32 * (len(windows) - 1) + len(windows)


def test_pii_windows_overlap_so_every_token_has_context_on_both_sides() -> None:
    windows = pii_windows(1000, size=100, overlap=20)
    for left, right in itertools.pairwise(windows):
        assert right.start < left.end
        assert left.own_end - right.start >= 10 - 1 and left.end - left.own_end >= 10 - 1


def test_head_and_tail_keeps_both_ends_of_a_long_turn() -> None:
    ids = np.arange(100, dtype=np.int64)
    kept = head_and_tail(ids, 10)
    assert kept.tolist() == [0, 1, 2, 3, 4, 95, 96, 97, 98, 99]
    assert head_and_tail(ids[:8], 10).tolist() == list(range(8))


def test_tokenizer_ignores_the_truncation_and_padding_baked_into_tokenizer_json(
    tokenizer: TextTokenizer,
) -> None:
    (encoded,) = tokenizer.encode(["the cat sat on the mat " * 10])
    assert len(encoded) == 60  # the saved tokenizer pads and truncates to 16


def test_sequence_window_fits_max_length_and_keeps_the_last_user_turn(
    tokenizer: TextTokenizer,
) -> None:
    texts = ["please write " * 50, "the cat " * 100, "hello world " * 200]
    encoded = tokenizer.encode(texts)
    row = sequence_window(
        tokenizer,
        [e.ids for e in encoded],
        ["system", "assistant", "user"],
        max_length=64,
        context_tokens=16,
    )
    assert len(row) == 64
    assert row[0] == tokenizer.cls_id and row[-1] == tokenizer.sep_id
    user = encoded[2].ids
    # [CLS] head+tail of the user turn (64 - 2 - 17 = 45) [SEP] 8 system + 8 previous [SEP]
    assert row[1:46].tolist() == head_and_tail(user, 45).tolist()
    assert row[47:55].tolist() == encoded[0].ids[:8].tolist()
    assert row[55:63].tolist() == encoded[1].ids[-8:].tolist()


def test_sequence_window_of_a_lone_short_turn_is_just_that_turn(tokenizer: TextTokenizer) -> None:
    encoded = tokenizer.encode(["hello world"])
    row = sequence_window(
        tokenizer, [e.ids for e in encoded], ["user"], max_length=64, context_tokens=16
    )
    assert row.tolist() == [tokenizer.cls_id, *encoded[0].ids.tolist(), tokenizer.sep_id]


def test_sequence_row_says_whether_it_cut_the_user_turn(tokenizer: TextTokenizer) -> None:
    system, user = tokenizer.encode(["please write " * 50, "hello world " * 20])
    roles = ["system", "user"]
    # 40 tokens of turn: they fit 64 beside 16 of system context, not 32 beside it.
    messages = [system.ids, user.ids]
    for max_length, cut in ((64, False), (32, True)):
        options = {"max_length": max_length, "context_tokens": 16}
        row, cropped = sequence_row(tokenizer, messages, roles, **options)
        assert cropped is cut
        assert row.tolist() == sequence_window(tokenizer, messages, roles, **options).tolist()


def test_message_text_joins_text_parts_and_skips_images() -> None:
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "first"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            {"type": "text", "text": "second"},
        ],
    }
    assert message_text(message) == "first\nsecond"
    assert message_text({"role": "assistant", "content": None}) == ""


@pytest.mark.parametrize(("count", "keep"), [(10, 4), (100, 7), (5, 5), (3, 9), (9, 2), (9, 1)])
def test_spread_keeps_the_head_the_tail_and_an_even_middle(count: int, keep: int) -> None:
    kept = spread(count, keep)
    assert len(kept) == min(count, keep) and kept == sorted(set(kept))
    assert kept[0] == 0 and (keep == 1 or kept[-1] == count - 1)
    gaps = [b - a for a, b in itertools.pairwise(kept)]
    assert not gaps or max(gaps) - min(gaps) <= 1


def test_kept_windows_own_disjoint_tokens_and_each_its_whole_span_beside_a_gap() -> None:
    windows = pii_windows(5000, size=254, overlap=32)
    indices = spread(len(windows), 7)
    kept = keep_windows(windows, indices)
    owned = [i for w in kept for i in range(w.own_start, w.own_end)]
    assert owned == sorted(set(owned))  # never predicted twice
    for window, original in zip(kept, (windows[i] for i in indices), strict=True):
        assert (window.start, window.end) == (original.start, original.end)
    # beside a dropped neighbour a kept window owns up to its own edges
    assert all((w.own_start, w.own_end) == (w.start, w.end) for w in kept[1:-1])
    assert runs(kept) == [[i] for i in range(len(kept))]


def test_adjacent_kept_windows_run_together_as_in_the_full_tiling() -> None:
    windows = pii_windows(1000, size=100, overlap=20)
    kept = keep_windows(windows, [0, 1, 2, 7, 8])
    assert runs(kept) == [[0, 1, 2], [3, 4]]
    assert [(w.own_start, w.own_end) for w in kept[:2]] == [
        (windows[0].own_start, windows[0].own_end),
        (windows[1].own_start, windows[1].own_end),
    ]
    assert kept[2].own_end == kept[2].end and kept[3].own_start == kept[3].start


def test_attack_views_are_paragraphs_and_windows_between_the_pieces_of_long_ones(
    tokenizer: TextTokenizer,
) -> None:
    text = "the cat sat\n\nhello world\n" + "cat " * 30
    (encoded,) = tokenizer.encode([text])
    pieces, windows = attack_views(text, encoded.encoding.offsets, 0, len(encoded), 12, 5)
    decoded = [tokenizer._tokenizer.decode(encoded.ids[a:b].tolist()) for ((a, b),) in pieces[:2]]
    assert decoded == ["the cat sat", "hello world"]
    long_start = pieces[2][0][0]
    assert [(a - long_start, b - a) for ((a, b),) in pieces[2:]] == [(0, 12), (12, 12), (24, 6)]
    assert pieces[-1][0][1] == len(encoded)
    # every stride, but not where a piece already starts, and one that ends with the paragraph
    assert [view[0][0] - long_start for view in windows] == [5, 10, 15, 18]
    assert all(b - a == 12 for ((a, b),) in windows) and windows[-1][0][1] == len(encoded)


def test_lines_break_at_every_line_break_and_paragraphs_at_blank_lines(
    tokenizer: TextTokenizer,
) -> None:
    text = "one two\nthree\n\nfour five six"
    (encoded,) = tokenizer.encode([text])
    offsets, n = encoded.encoding.offsets, len(encoded)

    def words(runs: list[tuple[int, int]]) -> list[str]:
        return [text[offsets[a][0] : offsets[b - 1][1]] for a, b in runs]

    assert words(lines(text, offsets, 0, n)) == ["one two", "three", "four five six"]
    assert words(paragraphs(text, offsets, 0, n)) == ["one two\nthree", "four five six"]


def test_attack_views_of_a_slice_stay_inside_it(tokenizer: TextTokenizer) -> None:
    text = "cat " * 100
    (encoded,) = tokenizer.encode([text])
    whole, windows = attack_views(text, encoded.encoding.offsets, 40, 70, 12, 6)
    spans = [span for view in whole + windows for span in view]
    assert min(a for a, _ in spans) == 40 and max(b for _, b in spans) == 70


def test_short_views_cover_only_lines_longer_than_asked_every_stride_to_the_line_end(
    tokenizer: TextTokenizer,
) -> None:
    text = "the cat sat\n" + "cat " * 30
    (encoded,) = tokenizer.encode([text])
    views = short_views(text, encoded.encoding.offsets, 0, len(encoded), 12, 8, 4)
    long_start = 3  # "the cat sat" is 3 tokens and no longer than 12: no short views
    assert [view[0][0] - long_start for view in views] == [0, 4, 8, 12, 16, 20, 22]
    assert all(b - a == 8 for ((a, b),) in views) and views[-1][0][1] == len(encoded)
    assert short_views(text, encoded.encoding.offsets, 0, len(encoded), 30, 8, 4) == []
    # a line shorter than a window but longer than asked: one view of all of it
    assert short_views(text, encoded.encoding.offsets, 0, 3, 2, 8, 4) == [((0, 3),)]
