"""`type: pii`: personal data the classifier found (what a decision's `pii` step acts on)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from meritorder.signals.base import ClassifierSignalConfig
from meritorder.signals.labels import PiiType

if TYPE_CHECKING:
    from meritorder.policy import Observation, PiiFinding


class PiiSignalConfig(ClassifierSignalConfig):
    """Fires when PII of one of `pii_types` (any type when empty) is found with `min_score`."""

    type: Literal["pii"]
    reveals_detection: ClassVar[bool] = True
    pii_types: tuple[PiiType, ...] = ()
    min_score: float = Field(default=0.5, ge=0, le=1)

    def score(self, obs: Observation) -> float | None:
        found = self.matching(obs.classified.pii if obs.classified is not None else ())
        return max(f.score for f in found) if found else None

    def matching(self, found: Sequence[PiiFinding]) -> list[PiiFinding]:
        return matching_pii(found, self.pii_types, self.min_score)


def matching_pii(
    found: Sequence[PiiFinding], types: Sequence[str], min_score: float
) -> list[PiiFinding]:
    """The findings of `types` (any type when empty) scored at least `min_score`."""
    return [f for f in found if f.score >= min_score and (not types or f.type in types)]
