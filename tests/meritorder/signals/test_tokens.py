"""`type: tokens`: the prompt's length in tokens within [min, max]."""

from __future__ import annotations

import pytest

from meritorder.policy import Observation
from meritorder.signals import TokensSignalConfig
from tests.helpers import chat_view, signals_of


@pytest.mark.parametrize(
    ("low", "high", "tokens", "expected"),
    [(100, None, 100, 100.0), (100, None, 99, None), (0, 50, 50, 50.0), (0, 50, 51, None)],
)
def test_fires_within_the_range_with_the_count_as_score(
    low: int, high: int | None, tokens: int, expected: float | None
) -> None:
    signal = TokensSignalConfig(name="long", type="tokens", min=low, max=high)
    assert signal.score(Observation(chat_view(), classified=signals_of(tokens=tokens))) == expected


def test_without_the_classifier_about_four_characters_make_a_token() -> None:
    signal = TokensSignalConfig(name="long", type="tokens", min=25)
    assert signal.score(Observation(chat_view("x" * 100))) == 26.0
