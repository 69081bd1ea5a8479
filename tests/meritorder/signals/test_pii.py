"""`type: pii`: personal data of the listed types with enough score."""

from __future__ import annotations

import pytest

from classifiers.signals import PiiEntity
from meritorder.policy import Observation
from meritorder.signals import PiiSignalConfig
from tests.helpers import Pii, chat_view, signals_of


@pytest.mark.parametrize(
    ("types", "found", "expected"),
    [
        (("EMAIL_ADDRESS",), (Pii("EMAIL_ADDRESS", 0, 5, 0.8),), 0.8),
        (("EMAIL_ADDRESS",), (Pii("PERSON", 0, 5, 0.8),), None),
        ((), (Pii("PERSON", 0, 5, 0.7), Pii("US_SSN", 6, 9, 0.9)), 0.9),  # any type; the best
        ((), (Pii("PERSON", 0, 5, 0.4),), None),  # under min_score 0.5
        ((), (), None),
    ],
)
def test_fires_with_the_best_score_of_what_it_looks_for(
    types: tuple[str, ...], found: tuple[PiiEntity, ...], expected: float | None
) -> None:
    signal = PiiSignalConfig.model_validate({"name": "p", "type": "pii", "pii_types": types})
    assert signal.score(Observation(chat_view(), classified=signals_of(pii=found))) == expected


def test_its_firing_is_hidden_from_clients() -> None:
    assert PiiSignalConfig.reveals_detection and PiiSignalConfig.needs_classifier
