"""`type: difficulty`: the classifier's estimate that the strong model beats the weak one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from meritorder.signals.base import ClassifierSignalConfig

if TYPE_CHECKING:
    from meritorder.policy import Observation


class DifficultySignalConfig(ClassifierSignalConfig):
    """Fires when the probability that the strong model beats the weak one reaches `threshold`."""

    type: Literal["difficulty"]
    threshold: float = Field(ge=0, le=1)

    def score(self, obs: Observation) -> float | None:
        c = obs.classified
        if c is None:
            return None
        return c.difficulty if c.difficulty >= self.threshold else None
