"""`type: domain`: the classifier's top domain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from meritorder.signals.base import ClassifierSignalConfig
from meritorder.signals.labels import Domain

if TYPE_CHECKING:
    from meritorder.policy import Observation


class DomainSignalConfig(ClassifierSignalConfig):
    """Fires when the classifier's top domain is one of `domains` with at least `min_score`."""

    type: Literal["domain"]
    domains: tuple[Domain, ...] = Field(min_length=1)
    min_score: float = Field(default=0.0, ge=0, le=1)

    def score(self, obs: Observation) -> float | None:
        c = obs.classified
        if c is None:
            return None
        score = c.domain_scores.get(c.domain, 0.0)
        return score if c.domain in self.domains and score >= self.min_score else None
