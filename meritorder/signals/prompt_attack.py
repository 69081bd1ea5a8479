"""`type: prompt_attack`: the classifier's jailbreak / prompt-injection probability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from meritorder.signals.base import PARTIAL_READ, ClassifierSignalConfig

if TYPE_CHECKING:
    from meritorder.policy import Observation


class PromptAttackSignalConfig(ClassifierSignalConfig):
    """Fires when the jailbreak / prompt-injection probability reaches `threshold`
    (default: the threshold shipped with the classifier model).

    `read` says what of a long request the score must come from. The attack head reads every
    paragraph of a request up to its budget (about 4,600 tokens), and a spread of them past it.
    `spread`: such a score stands, the decision marked `partial_read` and counted. `all`: the
    signal is computed only when every paragraph was read; a request too long for that is
    missing it (cause `partial_read`), so a required signal gives it `routing.on_unavailable`,
    and an attack that padding would push out of the read spread cannot pass."""

    type: Literal["prompt_attack"]
    threshold: float | None = Field(default=None, ge=0, le=1)
    read: Literal["spread", "all"] = "spread"

    def score(self, obs: Observation) -> float | None:
        c = obs.classified
        if c is None:
            return None
        threshold = c.attack_threshold if self.threshold is None else self.threshold
        return c.prompt_attack if c.prompt_attack >= threshold else None

    def unavailable(self, obs: Observation) -> str | None:
        c = obs.classified
        whole = c is None or c.attack_read >= 1.0 or self.read == "spread"
        # An attack found in what was read stands (the rule refuses it): reading more could not
        # make the request safer.
        return None if whole or self.score(obs) is not None else PARTIAL_READ

    def partly_read(self, obs: Observation) -> bool:
        c = obs.classified
        return c is not None and c.attack_read < 1.0

    def reads_whole(self) -> bool:
        return self.read == "all"
