"""`pick: headroom`: the survivor furthest from saturated in the pool state (its largest measure
over its threshold, meritorder/pool/state.py); fewer of this router's requests in flight, then
the rule's order, break ties. Models without fresh metrics rank after every measured one."""

from __future__ import annotations

from collections.abc import Sequence

from meritorder.config import ModelConfig
from meritorder.policy.context import Context
from meritorder.pool.state import pressure


def pick_headroom(ctx: Context, models: Sequence[ModelConfig]) -> ModelConfig:
    loads = ctx.pool.load
    slo = ctx.rule.slo if ctx.rule is not None else None

    def level(model: ModelConfig) -> tuple[float, int]:
        load = loads.get(model.name)
        return pressure(load, model.saturation, slo), load.in_flight if load else 0

    return min(models, key=level)  # min keeps the first of equals
