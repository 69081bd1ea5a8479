"""`type: harmful`: the classifier's probability that a request asks for content a content
policy may refuse (weapons, self-harm, malware...). Not an attack on the model: jailbreaks and
injections are `prompt_attack`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from meritorder.signals.base import NOT_IN_MODEL, ClassifierSignalConfig

if TYPE_CHECKING:
    from meritorder.policy import Observation


class HarmfulSignalConfig(ClassifierSignalConfig):
    """Fires when the harm probability reaches `threshold` (default: the threshold shipped with
    the classifier model). A model without a harm head cannot compute it: the request is then
    decided as `required` says (routing.on_unavailable, or marked degraded), never as clean."""

    type: Literal["harmful"]
    threshold: float | None = Field(default=None, ge=0, le=1)

    def score(self, obs: Observation) -> float | None:
        c = obs.classified
        threshold = self._threshold(obs)
        if c is None or c.harmful is None or threshold is None:
            return None
        return c.harmful if c.harmful >= threshold else None

    def unavailable(self, obs: Observation) -> str | None:
        c = obs.classified
        missing = c is not None and (c.harmful is None or self._threshold(obs) is None)
        return NOT_IN_MODEL if missing else None

    def partly_read(self, obs: Observation) -> bool:
        # It reads at most the rows the attack head reads: a spread of a long request.
        c = obs.classified
        return c is not None and c.harmful is not None and c.attack_read < 1.0

    def _threshold(self, obs: Observation) -> float | None:
        c = obs.classified
        shipped = c.harmful_threshold if c is not None else None
        return shipped if self.threshold is None else self.threshold
