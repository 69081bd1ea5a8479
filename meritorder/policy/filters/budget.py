"""The tenant's budget: the estimated cost must fit in what it has left of its ceiling, else
the request steps down to the cheapest allowed model (bounded by the hard limit), or gets a 429.
Under a ceiling, `cap_completion` caps max_tokens at what was charged."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from meritorder.budget import fits
from meritorder.config import ModelConfig
from meritorder.policy.context import Block, Context, Survivors
from meritorder.policy.decision import Note, Rejection, Steps
from meritorder.policy.estimate import completion_tokens, estimate_cost
from meritorder.policy.filters.boundaries import allowed_models
from meritorder.tenant import UNVERIFIED


class BudgetFilter:
    name: ClassVar[str] = "budget"

    def apply(self, ctx: Context, survivors: Survivors) -> Survivors | Block:
        budget = ctx.config.budgets
        if budget is None or ctx.tenant is None:
            return survivors
        limit = budget.limit_for(ctx.tenant)
        if limit is None:
            return survivors
        spent = ctx.pool.tenant_spent
        survivors = replace(survivors, budget_limit=limit)
        if not _fits(ctx, survivors.steps, spent, survivors.models, limit):
            exhausted = _exhausted(ctx, budget.window_s, limit)
            if budget.on_exhausted == "reject":
                return exhausted
            allowed = {m.name for m in allowed_models(ctx, survivors.steps) if ctx.serves(m)}
            pool = budget.step_down_to or tuple(allowed)
            cheaper = [m for m in ctx.config.cheapest(pool) if m.name in allowed]
            if not cheaper:
                return exhausted
            rejected = [
                Rejection(m.name, self.name, "budget")
                for m in survivors.models
                if m.name != cheaper[0].name
            ]
            stepped = [cheaper[0], *(m for m in cheaper[1:] if m.cost <= cheaper[0].cost)]
            survivors = survivors.keep(stepped, rejected).noted(
                Note("budget", f"step_down({limit:g})")
            )
            # Stepped down, spending is bounded by the hard limit only (none: unbounded).
            hard = limit * budget.hard_limit_ratio if budget.hard_limit_ratio else None
            survivors = replace(survivors, budget_limit=hard)
            if not _fits(ctx, survivors.steps, spent, survivors.models, hard):
                return exhausted
        charged = completion_tokens(ctx.config, ctx.obs, survivors.steps)
        if survivors.budget_limit is not None and budget.cap_completion and charged > 0:
            # What was charged bounds what may be spent: the answer gets the tokens it paid for.
            survivors = replace(survivors, steps=replace(survivors.steps, max_tokens=charged))
        return survivors


def _fits(
    ctx: Context, steps: Steps, spent: float, models: tuple[ModelConfig, ...], limit: float | None
) -> bool:
    """Whether the model the pipeline would choose fits in what is left under `limit`."""
    model = ctx.preferred(models)
    return model is None or fits(spent, estimate_cost(ctx.config, ctx.obs, model, steps), limit)


def _exhausted(ctx: Context, window_s: int, limit: float) -> Block:
    who = (
        "Requests without a verified tenant have"
        if ctx.tenant == UNVERIFIED
        else f"Tenant {ctx.tenant!r} has"
    )
    return Block(
        429,
        f"{who} no budget left for this request (the ceiling is {limit:g} cost units per "
        f"{window_s} s window); retry later.",
        code="budget_exhausted",
        error_type="rate_limit_error",
    )
