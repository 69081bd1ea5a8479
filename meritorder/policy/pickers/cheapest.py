"""`pick: cheapest`: the survivor with the lowest cost; the rule's order breaks ties."""

from __future__ import annotations

from collections.abc import Sequence

from meritorder.config import ModelConfig
from meritorder.policy.context import Context


def pick_cheapest(ctx: Context, models: Sequence[ModelConfig]) -> ModelConfig:
    return min(models, key=lambda m: m.cost)  # min keeps the first of equals
