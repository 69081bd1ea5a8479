"""`type: harmful`: the harm probability against a threshold, and unavailable without a head."""

from __future__ import annotations

import pytest

from meritorder.config import ConfigError, parse_config
from meritorder.policy import Observation
from meritorder.signals import HarmfulSignalConfig
from tests.helpers import chat_view, signals_of


@pytest.mark.parametrize(
    ("threshold", "harmful", "expected"),
    [
        (None, 0.5, 0.5),  # the model's own threshold (0.5 in signals_of)
        (None, 0.49, None),
        (0.2, 0.3, 0.3),
        (0.2, 0.1, None),
    ],
)
def test_fires_at_the_threshold(
    threshold: float | None, harmful: float, expected: float | None
) -> None:
    signal = HarmfulSignalConfig(name="harm", type="harmful", threshold=threshold)
    obs = Observation(chat_view(), classified=signals_of(harmful=harmful))
    assert signal.score(obs) == expected and signal.unavailable(obs) is None


def test_an_attack_is_not_harm() -> None:
    signal = HarmfulSignalConfig(name="harm", type="harmful")
    obs = Observation(chat_view(), classified=signals_of(attack=0.99, harmful=0.01))
    assert signal.score(obs) is None


def test_a_model_without_the_harm_head_makes_it_unavailable_never_clean() -> None:
    signal = HarmfulSignalConfig(name="harm", type="harmful", threshold=0.0)
    obs = Observation(chat_view(), classified=signals_of(harmful=None))
    assert signal.score(obs) is None and signal.unavailable(obs) == "not_in_model"


def test_without_the_classifier_it_never_fires_and_is_not_unavailable_itself() -> None:
    signal = HarmfulSignalConfig(name="harm", type="harmful", threshold=0.0)
    obs = Observation(chat_view())
    # Not `unavailable`: a request read without the classifier is degraded as a whole.
    assert signal.needs_classifier and signal.score(obs) is None and signal.unavailable(obs) is None


def test_a_threshold_outside_0_1_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "models: [{name: a, cluster: a, upstream_model: a, cost: 1}]\ndefault_model: a\n"
            "signals: [{name: harm, type: harmful, threshold: 1.5}]\n"
        )
    assert any(p.startswith("signals[0].threshold") for p in caught.value.problems), (
        caught.value.problems
    )


@pytest.mark.parametrize(("share", "expected"), [(1.0, False), (0.4, True)])
def test_a_long_request_read_as_a_spread_is_partly_read_for_harm_too(
    share: float, expected: bool
) -> None:
    signal = HarmfulSignalConfig(name="harm", type="harmful")
    obs = Observation(chat_view(), classified=signals_of(harmful=0.1, attack_read=share))
    assert signal.partly_read(obs) is expected
    without_head = Observation(chat_view(), classified=signals_of(attack_read=share))
    assert not signal.partly_read(without_head)  # nothing read: `unavailable` says so instead
