"""`type: tokens`: the prompt's length in tokens within a range."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from meritorder.signals.base import SignalConfigBase

if TYPE_CHECKING:
    from meritorder.policy import Observation


class TokensSignalConfig(SignalConfigBase):
    """Fires when the prompt's length in tokens is within [min, max]."""

    type: Literal["tokens"]
    min: int = Field(default=0, ge=0)
    max: int | None = Field(default=None, ge=0)

    def score(self, obs: Observation) -> float | None:
        tokens = obs.tokens
        hit = tokens >= self.min and (self.max is None or tokens <= self.max)
        return float(tokens) if hit else None
