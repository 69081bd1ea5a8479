"""`type: prompt_attack`: the classifier's jailbreak / prompt-injection probability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from meritorder.signals.base import ClassifierSignalConfig

if TYPE_CHECKING:
    from meritorder.policy import Observation


class PromptAttackSignalConfig(ClassifierSignalConfig):
    """Fires when the jailbreak / prompt-injection probability reaches `threshold`
    (default: the threshold shipped with the classifier model)."""

    type: Literal["prompt_attack"]
    threshold: float | None = Field(default=None, ge=0, le=1)

    def score(self, obs: Observation) -> float | None:
        c = obs.classified
        if c is None:
            return None
        threshold = c.attack_threshold if self.threshold is None else self.threshold
        return c.prompt_attack if c.prompt_attack >= threshold else None
