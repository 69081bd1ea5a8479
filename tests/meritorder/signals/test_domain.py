"""`type: domain`: the classifier's top domain."""

from __future__ import annotations

import pytest

from meritorder.policy import Observation
from meritorder.signals import DomainSignalConfig
from tests.helpers import chat_view, signals_of

SIGNAL = DomainSignalConfig(name="stem", type="domain", domains=("math", "physics"), min_score=0.4)


@pytest.mark.parametrize(
    ("domain", "score", "expected"),
    [("math", 0.9, 0.9), ("physics", 0.4, 0.4), ("math", 0.39, None), ("law", 0.9, None)],
)
def test_fires_on_a_listed_top_domain_with_enough_score(
    domain: str, score: float, expected: float | None
) -> None:
    obs = Observation(chat_view(), classified=signals_of(domain=domain, domain_score=score))
    assert SIGNAL.score(obs) == expected


def test_never_fires_without_the_classifier() -> None:
    assert DomainSignalConfig.needs_classifier
    assert SIGNAL.score(Observation(chat_view())) is None
