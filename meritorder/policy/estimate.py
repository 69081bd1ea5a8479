"""What a decision is charged before the answer is known (the budget's reservation)."""

from __future__ import annotations

from meritorder.config import ModelConfig, RouterConfig
from meritorder.cost import cost
from meritorder.policy.decision import Steps
from meritorder.policy.observation import Observation


def estimate_cost(
    config: RouterConfig, obs: Observation, model: ModelConfig, steps: Steps
) -> float:
    """The request's estimated cost on `model`: its prompt, and every choice's completion."""
    completion = completion_tokens(config, obs, steps) * obs.request.choices
    return cost(model.cost, obs.tokens, completion)


def completion_tokens(config: RouterConfig, obs: Observation, steps: Steps) -> int:
    """The completion tokens a request is charged for, per choice: what it asked, else the
    budget's estimate, under the decision's own cap."""
    asked = obs.request.max_output_tokens
    default = config.budgets.completion_tokens_estimate if config.budgets else 256
    completion = default if asked is None else asked
    if steps.max_tokens is not None:
        completion = min(completion, steps.max_tokens)
    return completion
