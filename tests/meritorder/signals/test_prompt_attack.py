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


def read(mode: str, attack: float, share: float) -> tuple[float | None, str | None, bool]:
    """(score, why it is unavailable, partly read) of a `read: mode` signal on a request the
    attack head read `share` of."""
    signal = PromptAttackSignalConfig.model_validate(
        {"name": "attack", "type": "prompt_attack", "read": mode}
    )
    obs = Observation(chat_view(), classified=signals_of(attack=attack, attack_read=share))
    return signal.score(obs), signal.unavailable(obs), signal.partly_read(obs)


def test_a_request_read_whole_is_available_and_not_partly_read_in_either_mode() -> None:
    assert read("spread", 0.1, 1.0) == (None, None, False)
    assert read("all", 0.1, 1.0) == (None, None, False)


def test_a_spread_read_stands_as_computed_and_says_it_was_partly_read() -> None:
    assert read("spread", 0.1, 0.3) == (None, None, True)
    assert read("spread", 0.9, 0.3) == (0.9, None, True)


def test_reading_all_makes_a_partly_read_clean_score_unavailable() -> None:
    assert read("all", 0.1, 0.3) == (None, "partial_read", True)
    assert read("all", 0.1, 0.999) == (None, "partial_read", True)


def test_an_attack_found_in_what_was_read_fires_even_when_all_must_be_read() -> None:
    assert read("all", 0.9, 0.3) == (0.9, None, True)


def test_read_takes_only_spread_or_all() -> None:
    with pytest.raises(ValueError, match="read"):
        PromptAttackSignalConfig.model_validate(
            {"name": "attack", "type": "prompt_attack", "read": "whole"}
        )


def test_the_default_reads_a_spread() -> None:
    signal = PromptAttackSignalConfig(name="attack", type="prompt_attack")
    assert signal.read == "spread"
