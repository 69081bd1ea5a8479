"""Pool load: a saturated candidate (queue, KV cache, predicted TTFT over its model's
`saturation` thresholds or the decision's `slo`; stale metrics as `on_stale` says) is skipped
for the next one. It runs after boundaries and budget and only removes candidates, and keeps
the least loaded when all are saturated: load never refuses a request."""

from __future__ import annotations

from typing import ClassVar

from meritorder.budget import fits
from meritorder.config import ModelConfig
from meritorder.policy.context import Block, Context, Survivors
from meritorder.policy.decision import Note, Rejection
from meritorder.policy.estimate import estimate_cost
from meritorder.pool.state import pressure, saturation_of


class LoadFilter:
    name: ClassVar[str] = "load"

    def apply(self, ctx: Context, survivors: Survivors) -> Survivors | Block:
        slo = ctx.rule.slo if ctx.rule is not None else None
        if not any(_watched(m, slo is not None) for m in survivors.models):
            return survivors
        loads = ctx.pool.load
        why = {
            m.name: reason
            for m in survivors.models
            if (reason := saturation_of(loads.get(m.name), m.saturation, slo)) is not None
        }
        # The pool's load is the operator's to see: under `reason_detail: minimal` the client's
        # reason says only that it was read.
        state = Note(
            "pool",
            " ".join(
                f"{m.name}({loads[m.name].render()})" for m in survivors.models if m.name in loads
            ),
            detected=True,
        )
        if not why:
            return survivors.noted(state) if state.value else survivors
        # A model that takes over must fit the budget as the one it replaces did.
        fitting = [m for m in survivors.models if _fits(ctx, survivors, m)]
        free = [m for m in fitting if m.name not in why]
        if free:
            rejected = [_rejection(m, why) for m in survivors.models if m not in free]
            return survivors.keep(free, rejected).noted(state)
        if not fitting:  # the budget filter let nothing through that fits: leave it to it
            return survivors.noted(state, Note("all_candidates_saturated"))
        least = min(fitting, key=lambda m: pressure(loads.get(m.name), m.saturation, slo))
        rejected = [_rejection(m, why) for m in survivors.models if m is not least]
        return survivors.keep([least], rejected).noted(state, Note("all_candidates_saturated"))


def _rejection(model: ModelConfig, why: dict[str, str]) -> Rejection:
    reason = why.get(model.name)
    return Rejection(model.name, LoadFilter.name, f"saturated_{reason}" if reason else "budget")


def _watched(model: ModelConfig, slo: bool) -> bool:
    """Whether anything could make `model` count as saturated: its metrics, a TTFT limit."""
    return bool(model.metrics_url) or model.saturation.ttft_ms is not None or slo


def _fits(ctx: Context, survivors: Survivors, model: ModelConfig) -> bool:
    if survivors.budget_limit is None:
        return True
    cost = estimate_cost(ctx.config, ctx.obs, model, survivors.steps)
    return fits(ctx.pool.tenant_spent, cost, survivors.budget_limit)
