"""A decision that learns (`learn:`): the bandit picks among the candidates that survived every
filter (meritorder/learning/bandit.py), on the estimates the router read into the pool state.

Still pure: the estimates are a snapshot and the draws come from the pool state's seed, so a
decision replays exactly. Learned choices never widen what the filters allowed: only the
healthy survivors whose estimated cost fits the budget's ceiling are offered to the bandit.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from meritorder.budget import fits
from meritorder.config import DecisionConfig, ModelConfig, RouterConfig
from meritorder.learning import bandit
from meritorder.learning.store import ContextEstimates
from meritorder.policy.context import Context, Survivors
from meritorder.policy.decision import Rejection
from meritorder.policy.estimate import estimate_cost
from meritorder.policy.observation import Observation


def learn_context(rule: DecisionConfig, obs: Observation) -> str:
    """The estimates a learning decision reads and updates: its own, or its domain's."""
    assert rule.learn is not None
    if rule.learn.context == "domain" and obs.classified is not None:
        return f"domain:{obs.classified.domain}"
    return f"decision:{rule.name}"


def learning_contexts(config: RouterConfig, obs: Observation) -> list[str]:
    """Every context a decision on `obs` may read: what the router loads before deciding."""
    return sorted({learn_context(d, obs) for d in config.decisions if d.learn is not None})


def learned_pick(
    ctx: Context, survivors: Survivors
) -> tuple[ModelConfig, bandit.Pick, tuple[Rejection, ...]]:
    """The bandit's choice among the usable survivors, its table, and why others were not
    offered (a budget they would not fit)."""
    rule = ctx.rule
    assert rule is not None and rule.learn is not None
    healthy = [m for m in survivors.models if m.name not in ctx.pool.unhealthy]
    usable: Sequence[ModelConfig] = healthy or survivors.models
    rejected: tuple[Rejection, ...] = ()
    if survivors.budget_limit is not None:
        spent, limit = ctx.pool.tenant_spent, survivors.budget_limit
        fitting = [
            m
            for m in usable
            if fits(spent, estimate_cost(ctx.config, ctx.obs, m, survivors.steps), limit)
        ]
        rejected = tuple(Rejection(m.name, "budget", "budget") for m in usable if m not in fitting)
        # The budget filter checked the first choice: it fits, so one always remains.
        usable = fitting or [ctx.preferred(survivors.models) or usable[0]]
    context = learn_context(rule, ctx.obs)
    pick = bandit.pick(
        [bandit.Candidate(m.name, m.cost) for m in usable],
        ctx.pool.estimates.get(context, ContextEstimates()),
        rule.learn,
        random.Random(ctx.pool.seed),
        context,
    )
    return next(m for m in usable if m.name == pick.model), pick, rejected
