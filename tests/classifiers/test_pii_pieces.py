"""A long text's patterns are read in pieces (`pii_scan.find_in_pieces`), each search of the
regex engine spanning one piece: what they find is what a read of the whole text finds."""

from __future__ import annotations

import base64
import random

import pytest

from classifiers.pii_scan import OVERLAP, PIECE, find_in_pieces, find_obfuscated, scan

VALUES = [
    "4111 1111 1111 1111",
    "078-05-1120",
    "jane.doe@example.com",
    "jane.doe at example.com",
    "+44 20 7946 0958",
    "DE89 3704 0044 0532 0130 00",
    "4.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1",
    "four one one one one one one one one one one one one one one one",
]


def _text_with_values_around_every_cut(rng: random.Random) -> tuple[str, list[str]]:
    """Prose with a value written across or beside each place a piece may end."""
    words = ("the", "cat", "sat", "on", "the", "mat", "and", "said", "hello", "to", "the", "dog")
    out: list[str] = []
    size = 0
    placed: list[str] = []
    while size < 6 * PIECE:
        target = (len(placed) + 1) * PIECE - rng.randrange(-40, 40)
        while size < target:
            word = rng.choice(words)
            out.append(word)
            size += len(word) + 1
        value = rng.choice(VALUES)
        out.append(f"card {value}" if value[0].isdigit() and "." not in value else value)
        placed.append(value)
        size += len(out[-1]) + 1
    return " ".join(out), placed


@pytest.mark.parametrize("seed", range(6))
def test_values_across_piece_edges_are_found_as_in_the_whole_text(seed: int) -> None:
    text, placed = _text_with_values_around_every_cut(random.Random(seed))
    whole = find_obfuscated(text)
    assert find_in_pieces(text) == whole
    assert len(whole) >= len(placed) - 1  # the values are really there to be found


def test_an_encoded_run_longer_than_a_piece_is_never_cut() -> None:
    secret = ("x" * 3 * PIECE + " reach me at jane.doe@example.com " + "y" * PIECE).encode()
    run = base64.b64encode(secret).decode()
    text = "intro " * 2_000 + run + " outro" * 2_000
    (hit,) = find_in_pieces(text)
    assert (hit.type, text[hit.start : hit.end]) == ("EMAIL_ADDRESS", run)


def test_a_long_run_of_digit_groups_reads_the_same_in_pieces() -> None:
    rng = random.Random(1)
    text = " ".join(f"{rng.randrange(10_000):04d}" for _ in range(4 * PIECE // 5))
    assert find_in_pieces(text) == find_obfuscated(text)


def test_a_number_split_where_two_long_texts_meet_is_found_in_each() -> None:
    first = "filler words here " * (PIECE // 9) + "card 4111 1111"
    second = "1111 1111 thanks " + "more words " * OVERLAP
    a, b = scan([first, second])
    assert [first[h.start : h.end] for h in a] == ["4111 1111"]
    assert [second[h.start : h.end] for h in b] == ["1111 1111"]
