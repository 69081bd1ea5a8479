"""Contextual Thompson sampling over (context, model): pure, deterministic given the rng.

Under `model: absolute` (the default) each candidate's quality is a Beta posterior: the prior
(its accuracy from an eval file, worth at most `prior.weight` observations, fading with the
half-life like all evidence and shrunk by the change detector's resets, see store.py) plus the
evidence of the context's rewards in [0, 1] (alpha += r, beta += 1 - r). Under `model:
relative` the posterior's mean is instead the context's level plus the arm's offset (store.py),
as sure as the same counts. One sample is drawn per candidate, and the objective reads the
samples: `quality - cost_weight * cost / dearest cost`, or the cheapest candidate whose sampled
quality is within `epsilon` of the best sample. The same rule read on posterior means is the
greedy choice; a pick that differs from it is exploration, kept inside `explore: {min, max}` as
a share of the context's picks.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meritorder.learning import store
from meritorder.learning.config import LearnConfig
from meritorder.learning.store import ContextEstimates, posterior, relative_posterior


@dataclass(frozen=True)
class Candidate:
    name: str
    cost: float


@dataclass(frozen=True)
class Row:
    """One candidate's line of the table behind a pick."""

    model: str
    mean: float  # posterior mean quality
    count: float  # decayed observations (the prior's pseudo-count not included)
    sample: float  # this pick's draw from the posterior
    prior: float | None  # the prior mean, if one was given
    cost: float


@dataclass(frozen=True)
class Pick:
    """The chosen model, why it won, and the estimates behind it (for explain and the trace)."""

    context: str
    model: str
    why: str
    explored: bool  # differs from the greedy choice
    greedy: str
    table: tuple[Row, ...]
    resets: int = 0  # times the change detector reset this context
    since_reset: float = 0.0  # the context's observations since its last reset (or its start)
    level: float | None = None  # the relative model's level (None: the absolute model)

    def to_json(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "model": self.model,
            "why": self.why,
            "explored": self.explored,
            "greedy": self.greedy,
            "resets": self.resets,
            "since_reset": self.since_reset,
            "level": None if self.level is None else round(self.level, 4),
            "table": [
                {
                    "model": r.model,
                    "mean": round(r.mean, 4),
                    "count": round(r.count, 2),
                    "sample": round(r.sample, 4),
                    "prior": None if r.prior is None else round(r.prior, 4),
                    "cost": r.cost,
                }
                for r in self.table
            ],
        }


def prior_weight(learn: LearnConfig, estimates: ContextEstimates) -> float:
    """The prior's pseudo-count in a context now: faded by its half-life in observations, and
    shrunk by the context's resets (`store.prior_weight`)."""
    return store.prior_weight(
        learn.prior.weight, estimates.clock, learn.half_life, estimates.prior_scale
    )


def detector(learn: LearnConfig | None) -> store.Detect | None:
    """What the stores need to watch `learn`'s contexts for a change (None: no detection)."""
    if learn is None or learn.detect is None:
        return None
    d = learn.detect
    return store.Detect(
        d.threshold, d.drift, d.keep, learn.prior.weight, learn.prior.means, idle=d.idle
    )


def relative(learn: LearnConfig | None) -> store.Relative | None:
    """What the stores need to keep `learn`'s level and offsets (None: the absolute model)."""
    if learn is None or learn.model != "relative":
        return None
    return store.Relative(learn.level_step, learn.prior.weight, learn.prior.means)


def rules(learn: LearnConfig | None) -> store.Rules:
    """How the stores learn in `learn`'s contexts: its half-life, detector and model."""
    if learn is None:
        return store.RULES
    return store.Rules(learn.half_life, detector(learn), relative(learn))


def level(learn: LearnConfig, estimates: ContextEstimates) -> float | None:
    """The relative model's level in a context now (before any observation: the prior's mean
    level); None under the absolute model."""
    if learn.model != "relative":
        return None
    return store.prior_level(learn.prior.means) if estimates.level is None else estimates.level


def pick(
    candidates: Sequence[Candidate],
    estimates: ContextEstimates,
    learn: LearnConfig,
    rng: random.Random,
    context: str = "",
) -> Pick:
    """The candidate to route to under `learn`'s objective, among `candidates` (at least one,
    each of which already passed every filter)."""
    if not candidates:
        raise ValueError("pick needs at least one candidate")
    means: dict[str, float] = {}
    samples: dict[str, float] = {}
    rows = []
    weight = prior_weight(learn, estimates)
    now_level = level(learn, estimates)
    level0 = store.prior_level(learn.prior.means)
    for c in candidates:
        arm = estimates.arms.get(c.name)
        if arm is not None:
            arm = arm.decayed(estimates.clock, estimates.now, learn.half_life)
        prior = learn.prior.means.get(c.name)
        if now_level is None:
            alpha, beta = posterior(arm, prior, weight)
        else:
            alpha, beta = relative_posterior(arm, prior, weight, now_level, level0)
        means[c.name] = alpha / (alpha + beta)
        samples[c.name] = rng.betavariate(alpha, beta)
        count = arm.count if arm is not None else 0.0
        rows.append(Row(c.name, means[c.name], count, samples[c.name], prior, c.cost))
    costs = {c.name: c.cost for c in candidates}
    order = [c.name for c in candidates]
    sampled, why = _best(samples, costs, order, learn)
    greedy, _ = _best(means, costs, order, learn)
    chosen, explored = sampled, sampled != greedy
    share = estimates.explored / estimates.picks if estimates.picks else 0.0
    if explored and share >= learn.explore.max:
        chosen, explored = greedy, False
        why = f"greedy: exploration at its ceiling ({share:.0%} >= {learn.explore.max:.0%})"
    elif not explored and len(order) > 1 and share < learn.explore.min:
        # Below the floor: try another candidate, the one with the fewest observations.
        others = [r for r in rows if r.model != greedy]
        least = min(r.count for r in others)
        chosen = rng.choice([r.model for r in others if r.count == least])
        explored = True
        why = f"explored: below the floor ({share:.0%} < {learn.explore.min:.0%})"
    since = estimates.clock - estimates.reset_clock
    return Pick(
        context, chosen, why, explored, greedy, tuple(rows), estimates.resets, since, now_level
    )


def _best(
    quality: Mapping[str, float],
    costs: Mapping[str, float],
    order: Sequence[str],
    learn: LearnConfig,
) -> tuple[str, str]:
    """The objective's choice on one set of quality values (samples or means), and why."""
    if learn.objective == "quality_minus_cost":
        dearest = max(costs.values()) or 1.0
        value = {m: quality[m] - learn.cost_weight * costs[m] / dearest for m in order}
        best = max(order, key=lambda m: value[m])  # first in `route` order on a tie
        return best, (
            f"quality_minus_cost: {quality[best]:.3f} - {learn.cost_weight:g} x "
            f"{costs[best] / dearest:.2f} = {value[best]:.3f} is the highest"
        )
    top = max(order, key=lambda m: quality[m])
    within = [m for m in order if quality[m] >= quality[top] - learn.epsilon]
    cheapest = min(within, key=lambda m: (costs[m], -quality[m]))
    return cheapest, (
        f"within_epsilon: cheapest whose quality {quality[cheapest]:.3f} is within "
        f"{learn.epsilon:g} of the best ({top} {quality[top]:.3f})"
    )
