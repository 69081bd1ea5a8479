"""`type: prompt_attack`: the attack probability against a threshold."""

from __future__ import annotations

import pytest

from meritorder.policy import Observation
from meritorder.signals import PromptAttackSignalConfig
from tests.helpers import chat_view, signals_of


@pytest.mark.parametrize(
    ("threshold", "attack", "expected"),
    [
        (None, 0.5, 0.5),  # the classifier's own threshold (0.5 in signals_of)
        (None, 0.49, None),
        (0.2, 0.3, 0.3),
        (0.2, 0.1, None),
    ],
)
def test_fires_at_the_threshold(
    threshold: float | None, attack: float, expected: float | None
) -> None:
    signal = PromptAttackSignalConfig(name="attack", type="prompt_attack", threshold=threshold)
    assert signal.score(Observation(chat_view(), classified=signals_of(attack=attack))) == expected


def test_never_fires_without_the_classifier() -> None:
    signal = PromptAttackSignalConfig(name="attack", type="prompt_attack", threshold=0.0)
    assert signal.needs_classifier and signal.score(Observation(chat_view())) is None
