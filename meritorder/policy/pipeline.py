"""`decide`: the policy as a pipeline, candidates -> filters -> picker."""

from __future__ import annotations

import math
from dataclasses import replace

from meritorder.config import DecisionConfig, RouterConfig
from meritorder.policy.context import Block, Context, Survivors
from meritorder.policy.decision import (
    Decision,
    Explained,
    Note,
    Rejection,
    Steps,
    blocked,
    routed,
)
from meritorder.policy.estimate import estimate_cost
from meritorder.policy.filters import FILTERS
from meritorder.policy.learned import learned_pick
from meritorder.policy.observation import Observation, PoolState
from meritorder.policy.pickers import PICKERS
from meritorder.policy.rules import evaluate_signals, is_virtual, matching
from meritorder.sessions import Preference, preference
from meritorder.tenant import UNVERIFIED, tenant_of

_NO_POOL = PoolState()  # nothing unhealthy, nothing spent


def decide(config: RouterConfig, obs: Observation, pool: PoolState = _NO_POOL) -> Decision:
    """The decision for one request. The caller has checked that `obs.request.model` is virtual
    or a configured model (see `Router.route`)."""
    virtual = is_virtual(config, obs.request.model)
    # Rules are only read for virtual models; an explicit request needs no signal scores.
    fired = evaluate_signals(config, obs) if virtual else {}
    tenant = tenant_of(obs.headers, config.budgets.header) if config.budgets else None
    base = Explained(
        rule="default" if virtual else "explicit",
        fired=fired,
        tenant=tenant,
        classified=obs.classified,
        reason_detail=config.routing.reason_detail,
        hidden_signals=frozenset(s.name for s in config.signals if s.reveals_detection),
    )
    if config.budgets and config.budgets.unverified == "refuse" and tenant == UNVERIFIED:
        return blocked(
            base,
            401,
            "This request has no verified tenant; authenticate as a tenant and retry.",
            code="tenant_required",
            error_type="authentication_error",
            rule="unverified",
        )

    rule: DecisionConfig | None = None
    if virtual:
        matched = matching(config, fired)
        rule = matched[0] if matched else None
        base = replace(
            base, matched=tuple(d.name for d in matched), rule=rule.name if rule else "default"
        )
    if rule is not None and rule.block is not None:
        return blocked(base, rule.block.status, rule.block.message)

    names = rule.route if rule else (config.default_model if virtual else obs.request.model,)
    candidates = tuple(m for m in map(config.model, names) if m is not None)
    survivors = Survivors(candidates, _steps(rule))
    wanted = _session_preference(config, obs, rule) if virtual else None
    kept = config.model(wanted.model) if wanted is not None else None
    if wanted is not None and kept is not None:
        # The session's model joins the candidates; like any, it must pass every filter.
        candidates = (kept, *(m for m in candidates if m is not kept))
        survivors = Survivors(candidates, survivors.steps, notes=(Note("session", wanted.why),))
    picker = PICKERS[rule.pick if rule else "first"]
    prefer = kept.name if kept is not None else None
    ctx = Context(config, obs, pool, rule, virtual, tenant, picker, prefer)
    filtered = _filtered(ctx, survivors)
    if isinstance(filtered, tuple):
        survivors, out = filtered
        explained = replace(base, rejected=survivors.rejected, notes=survivors.notes)
        return blocked(
            explained,
            out.status,
            out.message,
            code=out.code,
            error_type=out.error_type,
            notes=out.notes,
        )
    survivors = filtered
    if rule is not None and rule.under_pressure and _saturated(survivors):
        survivors = _stepped_down(ctx, rule, survivors)
    explained = replace(base, rejected=survivors.rejected, notes=survivors.notes)
    # No survivor: e.g. a boundary holds PII and no private model serves the request's API.
    if not survivors.models:
        return blocked(
            explained,
            503,
            "No model may serve this request.",
            code="no_model",
            error_type="server_error",
        )
    learned = None
    if rule is not None and rule.learn is not None and ctx.prefer not in names_of(survivors):
        chosen, learned, skipped = learned_pick(ctx, survivors)
        note = Note("learn", "explore" if learned.explored else "exploit")
        explained = replace(
            explained, rejected=(*explained.rejected, *skipped), notes=(*explained.notes, note)
        )
    else:
        chosen = ctx.choose(survivors.models)
    steps = survivors.steps
    if chosen.reasoning_family is None and steps.reasoning is not None:
        steps = replace(steps, reasoning=None)
    return routed(
        explained,
        chosen,
        steps=steps,
        cost=estimate_cost(config, obs, chosen, steps),
        budget_limit=survivors.budget_limit,
        pick=learned,
    )


def _filtered(ctx: Context, survivors: Survivors) -> Survivors | tuple[Survivors, Block]:
    """`survivors` through every filter in order, or the first block (with what came before)."""
    for step in FILTERS:
        out = step.apply(ctx, survivors)
        if isinstance(out, Block):
            return survivors, out
        survivors = out
    return survivors


_ALL_SATURATED = Note("all_candidates_saturated")


def _saturated(survivors: Survivors) -> bool:
    return _ALL_SATURATED in survivors.notes


def _stepped_down(ctx: Context, rule: DecisionConfig, survivors: Survivors) -> Survivors:
    """Every candidate saturated: the decision's cheaper tier (`under_pressure`) if one of it
    passes every filter unsaturated, else the least loaded candidate as before."""
    tier = tuple(m for m in map(ctx.config.model, rule.under_pressure) if m is not None)
    lower = _filtered(ctx, Survivors(tier, survivors.steps))
    if isinstance(lower, tuple) or not lower.models or _saturated(lower):
        return survivors  # the tier is refused, empty or saturated too: keep the least loaded
    pressed = [Rejection(m.name, "load", "saturated") for m in survivors.models]
    return replace(
        lower,
        rejected=(*survivors.rejected, *pressed, *lower.rejected),
        notes=(
            *(n for n in survivors.notes if n != _ALL_SATURATED),
            *lower.notes,
            Note("stepped_down", "pressure"),
        ),
    )


def names_of(survivors: Survivors) -> set[str]:
    return {m.name for m in survivors.models}


def _session_preference(
    config: RouterConfig, obs: Observation, rule: DecisionConfig | None
) -> Preference | None:
    if config.sessions is None:
        return None
    return preference(config.sessions, obs.session, rule.priority if rule else -math.inf)


def _steps(rule: DecisionConfig | None) -> Steps:
    if rule is None:
        return Steps()
    return Steps(
        system_prompt=rule.system_prompt,
        reasoning=rule.reasoning,
        max_tokens=rule.max_tokens,
        headers=dict(rule.headers),
    )
