"""Upstream health: candidates the router saw failing are skipped for the healthy ones."""

from __future__ import annotations

from typing import ClassVar

from meritorder.policy.context import Block, Context, Survivors
from meritorder.policy.decision import Note, Rejection


class HealthFilter:
    name: ClassVar[str] = "health"

    def apply(self, ctx: Context, survivors: Survivors) -> Survivors | Block:
        unhealthy = ctx.pool.unhealthy
        healthy = [m for m in survivors.models if m.name not in unhealthy]
        if len(healthy) == len(survivors.models):
            return survivors
        if not healthy:
            # Health is a guess from recent failures: trying a model beats refusing outright.
            return survivors.noted(Note("all_candidates_unhealthy"))
        rejected = [
            Rejection(m.name, self.name, "unhealthy")
            for m in survivors.models
            if m.name in unhealthy
        ]
        return survivors.keep(healthy, rejected)
