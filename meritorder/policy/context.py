"""The plugin interface of the policy pipeline: what a filter or a picker is given and returns.

A filter takes the surviving candidates and returns the ones it lets through (with a
`Rejection` for each it took out, and any change to the steps), or a `Block`. A picker chooses
one of the final survivors. See meritorder/policy/filters/ and pickers/.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, Protocol

from meritorder.config import DecisionConfig, ModelConfig, RouterConfig
from meritorder.policy.decision import Note, Rejection, Steps
from meritorder.policy.observation import Observation, PoolState


@dataclass(frozen=True)
class Survivors:
    """The candidates still in the running, in the rule's order, and what filters did so far."""

    models: tuple[ModelConfig, ...]
    steps: Steps = field(default_factory=Steps)
    rejected: tuple[Rejection, ...] = ()
    notes: tuple[Note, ...] = ()
    # The budget ceiling the decision's cost must be reserved under (None: none).
    budget_limit: float | None = None

    def keep(self, models: Iterable[ModelConfig], rejected: Iterable[Rejection] = ()) -> Survivors:
        """Only `models` survive; `rejected` says why the others did not."""
        return replace(self, models=tuple(models), rejected=(*self.rejected, *rejected))

    def noted(self, *notes: Note) -> Survivors:
        return replace(self, notes=(*self.notes, *notes))


@dataclass(frozen=True)
class Block:
    """A filter's refusal: the request is answered with this error and forwarded nowhere."""

    status: int
    message: str
    code: str = "blocked_by_policy"
    error_type: str = "invalid_request_error"
    notes: tuple[Note, ...] = ()


class Picker(Protocol):
    def __call__(self, ctx: Context, models: Sequence[ModelConfig]) -> ModelConfig:
        """One of `models` (never empty), which are in the rule's order."""
        ...


class Filter(Protocol):
    name: ClassVar[str]  # what its rejections name as their `filter`

    def apply(self, ctx: Context, survivors: Survivors) -> Survivors | Block:
        """The candidates this filter lets through, or a block."""
        ...


@dataclass(frozen=True)
class Context:
    """What every filter and picker may read of one decision (never write: it is frozen)."""

    config: RouterConfig
    obs: Observation
    pool: PoolState
    rule: DecisionConfig | None  # the matched decision; None for the default route or a model
    virtual: bool  # the client asked a virtual model (`auto`): the policy chooses
    tenant: str | None
    picker: Picker
    # The session's model (meritorder.sessions): chosen over the picker whenever it survives.
    prefer: str | None = None

    def serves(self, model: ModelConfig) -> bool:
        """Whether `model` serves the API the request came on."""
        return self.obs.request.api in model.apis

    def preferred(self, models: Sequence[ModelConfig]) -> ModelConfig | None:
        """The model the pipeline would choose of `models` as the pool stands: the choice among
        the healthy ones (all of them when none is)."""
        healthy = [m for m in models if m.name not in self.pool.unhealthy] or list(models)
        return self.choose(healthy) if healthy else None

    def choose(self, models: Sequence[ModelConfig]) -> ModelConfig:
        """The session's model if it is one of `models` (never empty), else the picker's."""
        kept = next((m for m in models if m.name == self.prefer), None)
        return kept if kept is not None else self.picker(self, models)

    def private_only(
        self,
        survivors: Survivors,
        filter_name: str,
        reason: str,
        *,
        boundary: str | None = None,
        detected: tuple[str, ...] = (),
    ) -> Survivors:
        """Keep the private candidates, else the cheapest private model serving the API; each
        external candidate is rejected with `reason`."""
        private = [m for m in survivors.models if m.boundary == "private"]
        rejected = [
            Rejection(m.name, filter_name, reason, boundary, detected)
            for m in survivors.models
            if m.boundary == "external"
        ]
        if not private:
            fallback = [m for m in self.config.cheapest() if m.boundary == "private"]
            private = [m for m in fallback if self.serves(m)][:1]
        return survivors.keep(private, rejected)
