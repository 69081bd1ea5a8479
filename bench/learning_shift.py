"""Tune the learner's change detection on synthetic non-stationary streams (no real replay).

Each stream is a sequence of task segments. A model's accuracy on a task is
`sigmoid(skill[model] + ease[task] + twist[model, task])`: `ease` moves every model at once (a
difficulty shift common to all arms), `twist` reorders them (the best model changes with the
task). The prior is each model's mean accuracy over a separate set of "fit" tasks, worth
`--weight` observations, as the shipped examples seed theirs from another source. Costs: one
cheap model (0.1), five at 0.2, three at 0.9, so `within_epsilon` has a real trade. Besides the
task streams (`tasks`), five plain ones: `steady` (one task for every row), `swap` (two tasks, the
best model changes at a third of the stream), `drift` (the first task blends linearly into the
second over the middle third), `open` (a hard opening common to every model, every model near
0.1-0.2 for 300 rows, then a fit task, then another) and `drop` (one task made 1.5 logits
harder for every model at a third of the stream, the order kept, then another task as hard).
`stale` (not in the default `--streams`) is the LLMRouter replay's math segment: the hard
opening, a fit task, a task that one arm wins for 900 rows, then, for the last third, a task a
logit harder for every model and three for that arm, so the best arm after the change is one
last played long before it, where it looked weak; its last third is scored on its own too.

For each configuration it prints, averaged over seeds: each stream's accuracy minus the best
single model's in hindsight (points), and their mean over the streams; over every stream,
cost as a share of that model's and the share of explored picks; the explored share over the
last third of the `steady` stream, and resets per stream. The decisions run through the real
bandit and store arithmetic (`meritorder.learning.bandit.pick`,
`meritorder.learning.store.observed`).

    .venv/bin/python bench/learning_shift.py --seeds 16 --configs h16-k30,rel-s0.02-h8-k30
    .venv/bin/python bench/learning_shift.py --seeds 16 --configs h16-k30,h16-k30-i300 \
        --streams steady,swap,drift,open,drop,tasks,stale
    .venv/bin/python bench/learning_shift.py --seeds 2 --configs baseline,chosen,relative
    .venv/bin/python bench/learning_shift.py --detector 16 0.05 --seeds 10   # the detector alone
    .venv/bin/python bench/learning_shift.py --detector 8 0.05 --level-step 0.02 --seeds 10

Without `--configs` it runs the whole grid (absolute and relative, over a hundred
configurations: many minutes); name a few instead, about 20 s each at 16 seeds.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from meritorder.learning.bandit import Candidate, pick, rules
from meritorder.learning.config import LearnConfig
from meritorder.learning.store import ContextEstimates, Detect, Relative, Rules, observed

COSTS = [0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.9, 0.9, 0.9]
MODELS = [Candidate(f"m{i}", c) for i, c in enumerate(COSTS)]
ROWS = 2400
STREAMS = ["steady", "swap", "drift", "open", "drop", "tasks", "tasks", "stale"]
Rates = Callable[[int], dict[str, float]]  # row -> each model's P(correct)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class World:
    skill: dict[str, float]
    twist: dict[tuple[str, int], float]
    ease: dict[int, float]

    def skill_mean(self) -> float:
        return sum(self.skill.values()) / len(self.skill)

    def rates(self, task: int) -> dict[str, float]:
        return {
            m.name: sigmoid(self.skill[m.name] + self.ease[task] + self.twist[m.name, task])
            for m in MODELS
        }


def world(rng: random.Random, tasks: int) -> World:
    # Dear models are better on average; tasks differ in ease by about +-1.5 logits (0.2 to
    # 0.8 for an average model) and reorder the models by about +-0.7 logits.
    skill = {m.name: rng.gauss(1.2 if m.cost > 0.5 else 0.3, 0.5) for m in MODELS}
    skill[MODELS[-1].name] -= 2.0  # one dear model that is bad at everything
    twist = {(m.name, t): rng.gauss(0.0, 0.7) for m in MODELS for t in range(tasks)}
    ease = {t: rng.gauss(0.0, 1.0) for t in range(tasks)}
    return World(skill, twist, ease)


def stream(kind: str, rng: random.Random) -> tuple[Rates, dict[str, float]]:
    """Each row's rates, and the prior means (from fit tasks the stream does not hold)."""
    w = world(rng, 16)
    fit = range(8, 16)
    prior = {m.name: sum(w.rates(t)[m.name] for t in fit) / len(fit) for m in MODELS}
    if kind == "steady":
        return (lambda _row: w.rates(0)), prior
    if kind == "swap":
        return (lambda row: w.rates(0 if row < ROWS // 3 else 1)), prior
    if kind == "drift":

        def drift(row: int) -> dict[str, float]:
            x = min(1.0, max(0.0, (row - ROWS / 3) / (ROWS / 3)))
            a, b = w.rates(0), w.rates(1)
            return {m: (1 - x) * a[m] + x * b[m] for m in a}

        return drift, prior
    if kind == "open":
        # A hard opening common to every model (every model near 0.2, as a trivia task would
        # open a replay), then a fit task, then another.
        hard = World(w.skill, w.twist, {**w.ease, 0: -2.0 - w.skill_mean()})
        return (lambda row: hard.rates(0) if row < 300 else w.rates(8 if row < 1200 else 1)), prior
    if kind == "stale":
        # The arm played before a change collapses, and the best arm after it was last played
        # long before, where it looked weak: the hard opening, a fit task, a task that one arm
        # wins, then a task one logit harder for every model and three for that arm (what
        # math is to the LLMRouter replay, after gsm8k).
        hard = World(w.skill, w.twist, {**w.ease, 0: -2.0 - w.skill_mean()})
        one = w.rates(1)
        played = max(one, key=lambda m: one[m])
        last = World(
            {**w.skill, played: w.skill[played] - 2.0},
            w.twist,
            {t: e - 1.0 for t, e in w.ease.items()},
        )

        def stale(row: int) -> dict[str, float]:
            if row < 200:
                return hard.rates(0)
            if row < 700:
                return w.rates(8)
            return w.rates(1) if row < 2 * ROWS // 3 else last.rates(2)

        return stale, prior
    if kind == "drop":
        # A drop common to every model: the same task (the same order of models) made harder
        # by 1.5 logits at a third of the stream, then a reorder with the drop kept.
        hard = World(w.skill, w.twist, {t: e - 1.5 for t, e in w.ease.items()})
        return (
            lambda row: w.rates(0) if row < ROWS // 3 else hard.rates(0 if row < 1600 else 1)
        ), prior
    # tasks: segments of 150-600 rows, a fit task first (the replay of the fit source's
    # held-out rows), then the other tasks in a random order, some of them twice.
    bounds: list[tuple[int, int]] = []
    row, task = 0, rng.choice(list(fit))
    while row < ROWS:
        length = rng.randint(150, 600)
        bounds.append((row + length, task))
        row += length
        task = rng.randrange(0, 8)

    def tasks(row: int) -> dict[str, float]:
        return w.rates(next(t for end, t in bounds if row < end))

    return tasks, prior


def replay(learn: LearnConfig, rates: Rates, seed: int) -> dict[str, Any]:
    rng, outcome = random.Random(seed), random.Random(seed + 1)
    ctx = ContextEstimates()
    how = rules(learn)
    correct = cost = explored = resets = late_explored = late_correct = 0.0
    single = {m.name: 0.0 for m in MODELS}
    late_single = {m.name: 0.0 for m in MODELS}  # on the last third
    costs = {m.name: m.cost for m in MODELS}
    for row in range(ROWS):
        p = rates(row)
        chosen = pick(MODELS, ctx, learn, rng, "c")
        u = outcome.random()
        late = row >= 2 * ROWS // 3
        for m in MODELS:  # every model's outcome on this row, from one draw (correlated rows)
            single[m.name] += u < p[m.name]
            late_single[m.name] += late and u < p[m.name]
        reward = float(u < p[chosen.model])
        correct += reward
        late_correct += late * reward
        cost += costs[chosen.model]
        explored += chosen.explored
        late_explored += chosen.explored and late
        ctx, fired = observed(ctx, chosen.model, reward, 0.0, how)
        ctx = replace(ctx, picks=ctx.picks + 1, explored=ctx.explored + int(chosen.explored))
        resets += fired
    best = max(single, key=lambda m: (single[m], -costs[m]))
    return {
        "points": 100 * (correct - single[best]) / ROWS,
        "cost": cost / (costs[best] * ROWS),
        "explored": explored / ROWS,
        "late_explored": late_explored / (ROWS - 2 * ROWS // 3),
        "late_points": 100 * (late_correct - max(late_single.values())) / (ROWS - 2 * ROWS // 3),
        "resets": resets,
    }


BASE: dict[str, Any] = {"objective": "within_epsilon", "epsilon": 0.01, "explore": {"max": 0.2}}
CONFIGS: dict[str, dict[str, Any]] = {
    "baseline": {"half_life": 500},  # the shipped examples before detection
    "no-decay": {},
    **{
        f"h{h:g}-k{k:g}": {"detect": {"threshold": h, "drift": 0.05, "keep": k, "idle": None}}
        for h in (8, 12, 16, 24)
        for k in (10, 30, 100)
    },
}
# The detector's reset, each arm keeping less the longer ago it was last observed (`idle`).
for h, k, idle in [(16, 30, i) for i in (30, 100, 300, 1000)] + [(16, 10, 300), (12, 30, 300)]:
    CONFIGS[f"h{h:g}-k{k:g}-i{idle:g}"] = {
        "detect": {"threshold": h, "drift": 0.05, "keep": k, "idle": idle}
    }
# The relative model: a level step (the share of each error the level takes), with or without
# a detector on the residuals.
for step in (0.01, 0.02, 0.05, 0.1):
    CONFIGS[f"rel-s{step:g}"] = {"model": "relative", "level_step": step}
    for h in (4, 6, 8, 12, 16):
        for k in (10, 30, 100):
            CONFIGS[f"rel-s{step:g}-h{h:g}-k{k:g}"] = {
                "model": "relative",
                "level_step": step,
                "detect": {"threshold": h, "drift": 0.05, "keep": k, "idle": None},
            }
CONFIGS["rel-s0.02-h8-k30-i300"] = {
    "model": "relative",
    "level_step": 0.02,
    "detect": {"threshold": 8, "drift": 0.05, "keep": 30, "idle": 300},
}
CONFIGS["chosen"] = CONFIGS["h16-k30-i300"]  # the examples' settings (absolute; before: h16-k30)
# The relative model's best here, an opt-in: the examples stayed absolute (README).
CONFIGS["relative"] = CONFIGS["rel-s0.02-h8-k30"]


def detector_runs(threshold: float, drift: float, seeds: int, step: float | None = None) -> None:
    """One arm, no prior: rows to a false alarm on a steady arm, rows to detect a drop (under
    the relative model with level step `step`, if given: the residual it watches)."""
    detect = Detect(threshold, drift, keep=30, weight=0)
    rel = None if step is None else Relative(step, weight=0)

    def first(rates: Callable[[int], float], seed: int, rows: int) -> int:
        rng, ctx = random.Random(seed), ContextEstimates()
        for row in range(rows):
            reward = float(rng.random() < rates(row))
            ctx, fired = observed(ctx, "a", reward, 0.0, Rules(detect=detect, relative=rel))
            if fired:
                return row
        return rows

    model = "absolute" if step is None else f"relative, level step {step:g}"
    print(f"threshold {threshold:g}, drift {drift:g} ({model}), {seeds} seeded runs each:")
    for p in (0.5, 0.7):
        runs = sorted(first(lambda _r, p=p: p, s, 40_000) for s in range(seeds))
        print(f"  steady at {p}: first false alarm after {runs} rows (40000: none)")
    for drop in (0.2, 0.4):
        runs = sorted(
            first(lambda r, d=drop: 0.8 if r < 1000 else 0.8 - d, s, 3000) - 1000
            for s in range(seeds)
        )
        print(f"  0.8 dropping by {drop} at row 1000: found {runs} rows after (negative: early)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    parser.add_argument("--weight", type=float, default=200, help="the prior's weight")
    parser.add_argument(
        "--streams",
        default="steady,swap,drift,open,drop,tasks",
        help=f"comma-separated, of {','.join(dict.fromkeys(STREAMS))}",
    )
    parser.add_argument(
        "--detector",
        nargs=2,
        type=float,
        metavar=("THRESHOLD", "DRIFT"),
        help="instead: the detector alone (false alarms and delays over --seeds runs)",
    )
    parser.add_argument(
        "--level-step",
        type=float,
        help="with --detector: under the relative model with this level step",
    )
    args = parser.parse_args(argv)
    if args.detector:
        threshold, drift = args.detector
        detector_runs(threshold, drift, args.seeds, args.level_step)
        return
    # Each stream's seed is its place here; `tasks` runs twice (two seeds per --seeds).
    chosen = args.streams.split(",")
    unknown = sorted(set(chosen) - set(STREAMS))
    if unknown:
        parser.error(f"--streams: unknown {unknown}; choose from {sorted(set(STREAMS))}")
    kinds = [(i, k) for i, k in enumerate(STREAMS) if k in chosen]
    names = list(dict.fromkeys(k for _, k in kinds))
    late = ["stale, last third"] if "stale" in names else []
    print(
        "| config | "
        + " | ".join([f"{k} points" for k in names] + late + ["mean points"])
        + " | cost | explored | steady late explored | resets (steady) | resets (tasks) |"
    )
    print("|---|" + "---:|" * (len(names) + len(late) + 6))
    for name in args.configs.split(","):
        learn = LearnConfig.model_validate(
            {**BASE, **CONFIGS[name], "prior": {"weight": args.weight}}
        )
        by_kind: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
        for seed in range(args.seeds):
            for i, kind in kinds:
                rates, prior = stream(kind, random.Random(1000 * seed + i))
                cfg = learn.model_copy(
                    update={"prior": learn.prior.model_copy(update={"means": prior})}
                )
                by_kind[kind].append(replay(cfg, rates, seed))
        rows = [r for _, k in kinds for r in by_kind[k]]

        def mean(
            key: str,
            kind: str | None = None,
            rows: list[dict[str, Any]] = rows,
            by_kind: dict[str, list[dict[str, Any]]] = by_kind,
        ) -> float:
            rs = rows if kind is None else by_kind.get(kind, [])
            return float(sum(r[key] for r in rs)) / len(rs) if rs else math.nan

        points = [f"{mean('points', k):+.1f}" for k in names]
        points += [f"{mean('late_points', 'stale'):+.1f}" for _ in late]
        points.append(f"{sum(mean('points', k) for k in names) / len(names):+.2f}")
        print(
            f"| {name} | " + " | ".join(points)
            + f" | {mean('cost'):.0%} | {mean('explored'):.1%} | "
            f"{mean('late_explored', 'steady'):.1%} | "
            f"{mean('resets', 'steady'):.2f} | {mean('resets', 'tasks'):.1f} |"
        )  # fmt: skip


if __name__ == "__main__":
    main()
