"""`type: tools`: the request offers tools to the model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from meritorder.signals.base import SignalConfigBase

if TYPE_CHECKING:
    from meritorder.policy import Observation


class ToolsSignalConfig(SignalConfigBase):
    """Fires when the request offers tools (or functions) to the model."""

    type: Literal["tools"]

    def score(self, obs: Observation) -> float | None:
        return 1.0 if obs.request.has_tools else None
