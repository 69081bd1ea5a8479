"""`pick: first` (the default): the first survivor in the rule's `route` order."""

from __future__ import annotations

from collections.abc import Sequence

from meritorder.config import ModelConfig
from meritorder.policy.context import Context


def pick_first(ctx: Context, models: Sequence[ModelConfig]) -> ModelConfig:
    return models[0]
