"""The one cost formula: what a request costs on a model, estimated before or measured after."""

from __future__ import annotations


def cost(cost_per_million: float, prompt_tokens: int, completion_tokens: int) -> float:
    """Cost units of `prompt_tokens + completion_tokens` on a model costing `cost_per_million`
    units per 1M tokens (the policy's estimate and the access log's measurement alike)."""
    return (prompt_tokens + completion_tokens) * cost_per_million / 1e6
