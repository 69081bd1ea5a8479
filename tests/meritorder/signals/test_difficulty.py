"""`type: difficulty`: the strong-beats-weak probability against a threshold."""

from __future__ import annotations

import pytest

from meritorder.policy import Observation
from meritorder.signals import DifficultySignalConfig
from tests.helpers import chat_view, signals_of


@pytest.mark.parametrize(("difficulty", "expected"), [(0.6, 0.6), (0.95, 0.95), (0.59, None)])
def test_fires_at_the_threshold(difficulty: float, expected: float | None) -> None:
    signal = DifficultySignalConfig(name="hard", type="difficulty", threshold=0.6)
    obs = Observation(chat_view(), classified=signals_of(difficulty=difficulty))
    assert signal.score(obs) == expected


def test_never_fires_without_the_classifier() -> None:
    signal = DifficultySignalConfig(name="hard", type="difficulty", threshold=0.0)
    assert signal.needs_classifier and signal.score(Observation(chat_view())) is None
