"""`type: domain_confidence`: the top domain's calibrated probability below a bound."""

from __future__ import annotations

import pytest

from meritorder.config import ConfigError, parse_config
from meritorder.policy import Classified, Observation
from meritorder.signals import DomainConfidenceSignalConfig
from tests.helpers import chat_view, signals_of

SIGNAL = DomainConfidenceSignalConfig(name="unsure", type="domain_confidence", below=0.4)


@pytest.mark.parametrize(("confidence", "expected"), [(0.39, 0.39), (0.4, None), (0.9, None)])
def test_fires_below_the_bound_with_the_confidence_as_its_score(
    confidence: float, expected: float | None
) -> None:
    obs = Observation(chat_view(), classified=signals_of(domain="law", domain_score=confidence))
    assert SIGNAL.score(obs) == expected


def test_reads_the_calibrated_confidence_the_classifier_gives() -> None:
    classified = Classified("law", {"law": 0.9}, 0.0, 0.5, 0.0, (), 3, domain_confidence=0.3)
    assert SIGNAL.score(Observation(chat_view(), classified=classified)) == 0.3


def test_never_fires_without_the_classifier() -> None:
    assert SIGNAL.needs_classifier and SIGNAL.score(Observation(chat_view())) is None


@pytest.mark.parametrize(
    "signal", ["{name: u, type: domain_confidence}", "{name: u, type: domain_confidence, below: 0}"]
)
def test_a_missing_or_empty_bound_names_the_field(signal: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "models: [{name: a, cluster: a, upstream_model: a, cost: 1}]\ndefault_model: a\n"
            f"signals: [{signal}]\n"
        )
    assert any(p.startswith("signals[0].below") for p in caught.value.problems), (
        caught.value.problems
    )
