"""`pick: scored`: the survivor with the highest score in the pool state (unscored: 0); the
rule's order breaks ties. Whoever measures the pool (load, learned quality) fills the scores."""

from __future__ import annotations

from collections.abc import Sequence

from meritorder.config import ModelConfig
from meritorder.policy.context import Context


def pick_scored(ctx: Context, models: Sequence[ModelConfig]) -> ModelConfig:
    scores = ctx.pool.scores
    return max(models, key=lambda m: scores.get(m.name, 0.0))  # max keeps the first of equals
