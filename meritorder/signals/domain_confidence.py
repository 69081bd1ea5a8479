"""`type: domain_confidence`: how sure the classifier is of the request's top domain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from meritorder.signals.base import ClassifierSignalConfig

if TYPE_CHECKING:
    from meritorder.policy import Observation


class DomainConfidenceSignalConfig(ClassifierSignalConfig):
    """Fires when the top domain's calibrated probability is below `below`: the request is unlike
    what the model was trained on, so a policy can send it to a safe default. Its score is
    that confidence."""

    type: Literal["domain_confidence"]
    below: float = Field(gt=0, le=1)

    def score(self, obs: Observation) -> float | None:
        c = obs.classified
        if c is None or c.confidence >= self.below:
            return None
        return c.confidence
