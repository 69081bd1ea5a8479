"""`type: turns`: how many user turns the conversation has."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from meritorder.signals.base import SignalConfigBase

if TYPE_CHECKING:
    from meritorder.policy import Observation


class TurnsSignalConfig(SignalConfigBase):
    """Fires when the conversation has at least `min` user turns."""

    type: Literal["turns"]
    min: int = Field(ge=1)

    def score(self, obs: Observation) -> float | None:
        turns = sum(1 for m in obs.request.messages if m.get("role") == "user")
        return float(turns) if turns >= self.min else None
