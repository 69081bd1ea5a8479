"""`meritorder eval`: what a policy buys on data with per-model correctness.

Each data line holds a prompt (`text` or `messages`, or joined by `id` from `--prompts`) and
`correct: {model: 0|1}`. The policy routes every prompt; its accuracy and mean cost are set next
to every single model, the oracle (the cheapest correct model per prompt) and random routing.
For a weak/strong pair, sweeping the difficulty threshold draws the cost-quality curve:
PGR(s) = (acc(s) - acc_weak) / (acc_strong - acc_weak) where a share s of prompts (highest
difficulty first) goes to the strong model; APGR is its area over s in [0, 1] (random = 0.5),
and CPT(x) is the smallest share of strong calls whose PGR reaches x.

With `--feedback` (`evaluate_feedback`) the rows are replayed in file order, as live traffic:
each decision is made before its row's outcome is revealed, then the chosen model's correctness
is fed back through `Router.observe_reward`, as feedback would be. The report adds the online
learning curve (accuracy, cost and each model's share per window of rows) and the regret
against the best single model in hindsight (its correct answers minus the router's, cumulative).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from meritorder.batch import _headers, request_from, route_one, signals_json
from meritorder.config import RouterConfig
from meritorder.jsonl import jsonl_values
from meritorder.policy import Observation, Routed
from meritorder.request import RequestView
from meritorder.router import Router


@dataclass(frozen=True)
class Point:
    name: str
    accuracy: float
    cost: float


@dataclass(frozen=True)
class Sweep:
    weak: str
    strong: str
    shares: tuple[float, ...]
    accuracy: tuple[float, ...]
    apgr: float
    cpt: Mapping[float, float]


@dataclass
class Report:
    rows: int
    policy: Point
    singles: list[Point]
    oracle: Point
    random: Point
    sweep: Sweep | None = None
    chosen: Mapping[str, int] = field(default_factory=dict)
    feedback: Feedback | None = None
    sessions: Sessions | None = None

    def best_single(self) -> Point:
        return max(self.singles, key=lambda p: (p.accuracy, -p.cost))

    def to_json(self) -> dict[str, Any]:
        def point(p: Point) -> dict[str, Any]:
            return {"name": p.name, "accuracy": round(p.accuracy, 4), "cost": round(p.cost, 4)}

        out: dict[str, Any] = {
            "rows": self.rows,
            "policy": point(self.policy),
            "singles": [point(p) for p in self.singles],
            "oracle": point(self.oracle),
            "random": point(self.random),
            "chosen": dict(self.chosen),
        }
        best = self.best_single()
        out["vs_best_single"] = {
            "model": best.name,
            "accuracy_delta": round(self.policy.accuracy - best.accuracy, 4),
            "cost_ratio": round(self.policy.cost / best.cost, 4) if best.cost else None,
        }
        if self.feedback is not None:
            out["feedback"] = self.feedback.to_json()
        if self.sessions is not None:
            out["sessions"] = self.sessions.to_json()
        if self.sweep is not None:
            out["sweep"] = {
                "weak": self.sweep.weak,
                "strong": self.sweep.strong,
                "apgr": round(self.sweep.apgr, 4),
                "cpt": {f"{int(k * 100)}%": round(v, 4) for k, v in self.sweep.cpt.items()},
            }
        return out

    def table(self) -> str:
        best = self.best_single()
        lines = [
            f"{self.rows} prompts",
            "",
            "| router | accuracy | mean cost | cost vs best single |",
            "|---|---:|---:|---:|",
        ]
        for p in [
            self.policy,
            *sorted(self.singles, key=lambda p: p.cost),
            self.oracle,
            self.random,
        ]:
            ratio = f"{p.cost / best.cost:.0%}" if best.cost else "-"
            lines.append(f"| {p.name} | {p.accuracy:.3f} | {p.cost:.2f} | {ratio} |")
        if self.sweep is not None:
            s = self.sweep
            cpt = ", ".join(f"CPT({int(k * 100)}%) = {v:.2f}" for k, v in s.cpt.items())
            lines += ["", f"difficulty sweep {s.weak} -> {s.strong}: APGR = {s.apgr:.3f}; {cpt}"]
        if self.feedback is not None:
            lines += ["", *self.feedback.table()]
        if self.sessions is not None:
            lines += ["", self.sessions.line()]
        return "\n".join(lines)


@dataclass(frozen=True)
class Sessions:
    """How often conversations changed model: rows that name a `session`, in file order."""

    sessions: int
    turns: int
    switches: int
    most: int  # the most switches of one session

    def to_json(self) -> dict[str, Any]:
        per = self.switches / self.sessions if self.sessions else 0.0
        return {"sessions": self.sessions, "turns": self.turns, "switches": self.switches,
                "switches_per_session": round(per, 4), "most_switches": self.most}  # fmt: skip

    def line(self) -> str:
        per = self.switches / self.sessions if self.sessions else 0.0
        return (
            f"{self.sessions} sessions, {self.turns} turns: {per:.2f} model switches per "
            f"session (at most {self.most})"
        )


def session_switches(
    rows: Sequence[Mapping[str, Any]], chosen: Sequence[str | None]
) -> Sessions | None:
    """Model changes between consecutive routed turns of each session (a row's `session`, or
    its `x-session-id` header); None when no row names a session."""
    last: dict[str, str] = {}
    switches: dict[str, int] = {}
    turns = 0
    for row, model in zip(rows, chosen, strict=True):
        headers = row.get("headers")
        name = row.get("session") or (
            headers.get("x-session-id") if isinstance(headers, dict) else None
        )
        if not isinstance(name, str) or not name or model is None:
            continue
        turns += 1
        switches.setdefault(name, 0)
        if name in last and last[name] != model:
            switches[name] += 1
        last[name] = model
    if not switches:
        return None
    return Sessions(len(switches), turns, sum(switches.values()), max(switches.values()))


@dataclass(frozen=True)
class Window:
    """One window of consecutive rows of a feedback replay."""

    end: int  # rows replayed so far
    accuracy: float
    cost: float
    share: Mapping[str, float]
    regret: float  # cumulative: the best single model's correct answers minus the router's
    best_accuracy: float  # the best single model's (in hindsight), on the same rows


@dataclass(frozen=True)
class Feedback:
    """The online figures of a feedback replay (see the module doc)."""

    best_single: str
    window: int
    windows: tuple[Window, ...]
    learned: int  # rows whose decision learned (had a pick) and was fed back
    explored: int
    resets: int = 0  # observations on which the change detector reset a context

    @property
    def regret(self) -> float:
        return self.windows[-1].regret if self.windows else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "best_single": self.best_single,
            "regret": round(self.regret, 4),
            "learned": self.learned,
            "explored": self.explored,
            "resets": self.resets,
            "window": self.window,
            "curve": [
                {
                    "end": w.end,
                    "accuracy": round(w.accuracy, 4),
                    "cost": round(w.cost, 4),
                    "regret": round(w.regret, 4),
                    "best_accuracy": round(w.best_accuracy, 4),
                    "share": {m: round(v, 4) for m, v in sorted(w.share.items())},
                }
                for w in self.windows
            ],
        }

    def table(self) -> list[str]:
        lines = [
            f"feedback replay in file order: {self.learned} decisions learned "
            f"({self.explored} explored{f', {self.resets} resets' if self.resets else ''}); "
            f"regret vs {self.best_single} in hindsight: "
            f"{self.regret:+.0f} correct answers",
            "",
            f"| rows | accuracy | {self.best_single} | mean cost | top model (share) | regret |",
            "|---:|---:|---:|---:|---|---:|",
        ]
        for w in self.windows:
            top = max(w.share.items(), key=lambda kv: kv[1]) if w.share else ("-", 0.0)
            lines.append(
                f"| {w.end} | {w.accuracy:.3f} | {w.best_accuracy:.3f} | {w.cost:.2f} | "
                f"{top[0]} ({top[1]:.0%}) | "
                f"{w.regret:+.0f} |"
            )
        return lines


class BadLine(ValueError):
    """A data or prompts line that cannot be used, named by its file flag and line number."""


def load_rows(
    data: Iterable[str],
    prompts: Iterable[str] | None = None,
    *,
    on_bad: Callable[[str, int, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Data lines, with their prompt joined from `prompts` by id when they carry none.

    A bad line is passed to `on_bad` as (which file, line number, error) and left out; without
    `on_bad` it raises `BadLine`."""

    def bad(which: str, number: int, error: str) -> None:
        if on_bad is None:
            raise BadLine(f"--{which} line {number}: {error}")
        on_bad(which, number, error)

    rows = []
    for number, row in _objects(data, "data", bad):
        if isinstance(row.get("correct"), dict):
            rows.append(row)
        else:
            bad("data", number, "needs a 'correct' object of model: 0 or 1")
    if prompts is not None:
        texts = {}
        for number, item in _objects(prompts, "prompts", bad):
            if isinstance(item.get("text"), str) and "id" in item:
                texts[item["id"]] = item["text"]
            else:
                bad("prompts", number, "needs an 'id' and a string 'text'")
        rows = [{**r, "text": texts[r["id"]]} for r in rows if "text" in r or r.get("id") in texts]
    missing = [r.get("id") for r in rows if "text" not in r and "messages" not in r]
    if missing:
        raise ValueError(f"{len(missing)} rows have no prompt (e.g. {missing[:3]}); pass --prompts")
    return rows


def _objects(
    lines: Iterable[str], which: str, bad: Callable[[str, int, str], None]
) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, item, error in jsonl_values(lines):
        if error is not None:
            bad(which, number, f"invalid JSON at column {error.colno}: {error.msg}")
            continue
        if isinstance(item, dict):
            yield number, item
        else:
            bad(which, number, "each line must be a JSON object")


async def evaluate(
    router: Router,
    rows: Sequence[Mapping[str, Any]],
    pair: tuple[str, str] | None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    config = router.config
    results: list[dict[str, Any]] = []
    # A policy with sessions decides a turn on the turns before it: route in file order.
    width = 1 if config.sessions is not None else 64
    for start in range(0, len(rows), width):
        chunk = rows[start : start + width]
        results += await asyncio.gather(*(route_one(router, r) for r in chunk))
        if progress is not None:
            progress(len(chunk))
    chosen = [r["model"] for r in results]
    difficulty = [float(r["signals"].get("difficulty", 0.0)) for r in results]
    return score(config, rows, chosen, difficulty, pair)


async def evaluate_feedback(
    router: Router,
    rows: Sequence[Mapping[str, Any]],
    pair: tuple[str, str] | None,
    progress: Callable[[int], None] | None = None,
    windows: int = 10,
) -> Report:
    """Replay `rows` in file order, deciding each before its outcome is revealed and feeding the
    chosen model's correctness back (see the module doc); the report carries `feedback`."""
    # Signals do not depend on what was learned: classify first, then decide and learn one row
    # at a time, in order.
    observed = await observe_rows(router, rows)
    results: list[dict[str, Any]] = []
    learned = explored = resets = 0
    for number, (row, (request, headers, obs)) in enumerate(zip(rows, observed, strict=True)):
        # A request id per row seeds the row's draws: the same replay makes the same decisions.
        headers = {**headers, "x-request-id": f"eval-{number}-{row.get('id', '')}"}
        obs = replace(obs, headers=headers)
        decision = await router.route(request, headers, observed=obs)
        model = decision.model.name if isinstance(decision, Routed) else None
        if isinstance(decision, Routed) and decision.pick is not None and model is not None:
            reward = min(1.0, max(0.0, float(row["correct"].get(model, 0))))
            resets += await router.observe_reward(decision.pick.context, model, reward)
            learned += 1
            explored += decision.pick.explored
        results.append({"model": model, "signals": signals_json(decision, obs.classified)})
        if progress is not None and (number + 1) % 64 == 0:
            progress(64)
    if progress is not None and len(rows) % 64:
        progress(len(rows) % 64)
    chosen = [r["model"] for r in results]
    difficulty = [float(r["signals"].get("difficulty", 0.0)) for r in results]
    report = score(router.config, rows, chosen, difficulty, pair)
    report.feedback = learning_curve(
        router.config, rows, chosen, report, windows, learned, explored, resets
    )
    return report


async def observe_rows(
    router: Router, rows: Sequence[Mapping[str, Any]]
) -> list[tuple[RequestView, dict[str, str], Observation]]:
    """Each row's request, headers and observation, classified in concurrent chunks of 64 (the
    classifier batches them; the int8 model's activation scales are per batch, so a replay that
    classifies otherwise can see a close call go the other way)."""
    observed = []
    for start in range(0, len(rows), 64):
        chunk = rows[start : start + 64]
        observed += await asyncio.gather(*(_observe(router, r) for r in chunk))
    return observed


async def _observe(
    router: Router, row: Mapping[str, Any]
) -> tuple[RequestView, dict[str, str], Observation]:
    headers = _headers(row.get("headers"))
    request = request_from(row, router)
    return request, headers, await router.observe(request, headers)


def learning_curve(
    config: RouterConfig,
    rows: Sequence[Mapping[str, Any]],
    chosen: Sequence[str | None],
    report: Report,
    windows: int,
    learned: int = 0,
    explored: int = 0,
    resets: int = 0,
) -> Feedback:
    """Accuracy, cost and shares per window of rows, and the cumulative regret (pure)."""
    costs = {m.name: m.cost for m in config.models}
    best = report.best_single().name
    size = max(1, -(-len(rows) // max(1, windows)))
    out = []
    regret = 0.0
    for start in range(0, len(rows), size):
        part = list(zip(rows[start : start + size], chosen[start : start + size], strict=True))
        right = [int(r["correct"].get(m, 0)) if m else 0 for r, m in part]
        best_right = sum(int(r["correct"].get(best, 0)) for r, _ in part)
        regret += best_right - sum(right)
        counts: dict[str, int] = {}
        for _, m in part:
            counts[m or "blocked"] = counts.get(m or "blocked", 0) + 1
        out.append(
            Window(
                start + len(part),
                sum(right) / len(part),
                sum(costs[m] for _, m in part if m) / len(part),
                {m: c / len(part) for m, c in counts.items()},
                regret,
                best_right / len(part),
            )
        )
    return Feedback(best, size, tuple(out), learned, explored, resets)


def score(
    config: RouterConfig,
    rows: Sequence[Mapping[str, Any]],
    chosen: Sequence[str | None],
    difficulty: Sequence[float],
    pair: tuple[str, str] | None,
) -> Report:
    """Accuracy and cost of the routed choices and of the baselines (pure; see module doc)."""
    costs = {m.name: m.cost for m in config.models}
    names = [m for m in costs if any(m in r["correct"] for r in rows)]

    def right(row: Mapping[str, Any], model: str | None) -> int:
        return int(row["correct"].get(model, 0)) if model else 0

    n = len(rows)
    policy = Point(
        "policy",
        sum(right(r, m) for r, m in zip(rows, chosen, strict=True)) / n,
        sum(costs[m] for m in chosen if m) / n,
    )
    singles = [Point(m, sum(right(r, m) for r in rows) / n, costs[m]) for m in names]
    by_cost = sorted(names, key=lambda m: costs[m])
    oracle_models = [next((m for m in by_cost if right(r, m)), by_cost[0]) for r in rows]
    oracle = Point(
        "oracle",
        sum(right(r, m) for r, m in zip(rows, oracle_models, strict=True)) / n,
        sum(costs[m] for m in oracle_models) / n,
    )
    rand = Point(
        "random",
        sum(p.accuracy for p in singles) / len(singles),
        sum(p.cost for p in singles) / len(singles),
    )
    counts: dict[str, int] = {}
    for m in chosen:
        counts[m or "blocked"] = counts.get(m or "blocked", 0) + 1
    sweep = _sweep(rows, difficulty, pair) if pair and all(p in names for p in pair) else None
    report = Report(n, policy, singles, oracle, rand, sweep, dict(sorted(counts.items())))
    report.sessions = session_switches(rows, chosen)
    return report


def _sweep(
    rows: Sequence[Mapping[str, Any]], difficulty: Sequence[float], pair: tuple[str, str]
) -> Sweep:
    weak, strong = pair
    n = len(rows)
    # Highest difficulty first; the seeded shuffle breaks ties fairly when scores are equal.
    order = list(range(n))
    random.Random(0).shuffle(order)
    order.sort(key=lambda i: -difficulty[i])
    weak_right = [int(rows[i]["correct"].get(weak, 0)) for i in order]
    strong_right = [int(rows[i]["correct"].get(strong, 0)) for i in order]
    base = sum(weak_right)
    accuracy = [base / n]
    for k in range(n):  # move the k-th hardest prompt to the strong model
        base += strong_right[k] - weak_right[k]
        accuracy.append(base / n)
    shares = [k / n for k in range(n + 1)]
    acc_weak, acc_strong = accuracy[0], accuracy[-1]
    gap = acc_strong - acc_weak
    pgr = [(a - acc_weak) / gap if gap else 0.0 for a in accuracy]
    apgr = sum((pgr[k] + pgr[k + 1]) / 2 for k in range(n)) / n
    cpt = {x: next(s for s, p in zip(shares, pgr, strict=True) if p >= x) for x in (0.5, 0.8)}
    return Sweep(weak, strong, tuple(shares), tuple(accuracy), apgr, cpt)


def plot(report: Report, costs: Mapping[str, float], path: Path) -> None:
    """The cost-quality frontier: single models, oracle, random, the policy, the sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for p in report.singles:
        ax.scatter(p.cost, p.accuracy, color="tab:gray")
        ax.annotate(
            p.name, (p.cost, p.accuracy), fontsize=7, xytext=(4, 2), textcoords="offset points"
        )
    if report.sweep is not None:
        s = report.sweep
        sweep_cost = [
            costs[s.weak] + share * (costs[s.strong] - costs[s.weak]) for share in s.shares
        ]
        ax.plot(
            sweep_cost,
            s.accuracy,
            color="tab:blue",
            label=f"difficulty sweep {s.weak} → {s.strong}",
        )
    ax.scatter(
        report.oracle.cost, report.oracle.accuracy, marker="^", color="tab:green", label="oracle"
    )
    ax.scatter(
        report.random.cost, report.random.accuracy, marker="x", color="black", label="random"
    )
    ax.scatter(
        report.policy.cost,
        report.policy.accuracy,
        marker="*",
        s=220,
        color="tab:red",
        label="policy",
    )
    ax.set_xlabel("mean cost per request (config cost units)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Cost-quality on {report.rows} prompts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_feedback(report: Report, path: Path, title: str = "") -> None:
    """The learning curve of a feedback replay: accuracy, cost and model shares per window,
    against the best single model in hindsight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert report.feedback is not None
    fb = report.feedback
    best = next(p for p in report.singles if p.name == fb.best_single)
    ends = [w.end for w in fb.windows]
    fig, (acc, cost, share) = plt.subplots(3, 1, figsize=(8, 8), dpi=120, sharex=True)
    acc.plot(ends, [w.accuracy for w in fb.windows], marker="o", color="tab:red", label="router")
    acc.plot(
        ends,
        [w.best_accuracy for w in fb.windows],
        ls="--",
        marker=".",
        color="tab:gray",
        label=f"{best.name} (best single in hindsight), same rows",
    )
    acc.axhline(report.policy.accuracy, ls=":", color="tab:red", label="router, whole replay")
    acc.set_ylabel("accuracy per window")
    acc.legend(fontsize=7, loc="lower right")
    cost.plot(ends, [w.cost for w in fb.windows], marker="o", color="tab:blue", label="router")
    cost.axhline(best.cost, ls="--", color="tab:gray", label=best.name)
    cost.set_ylabel("mean cost per window")
    cost.legend(fontsize=7, loc="upper right")
    totals: dict[str, float] = {}
    for w in fb.windows:
        for m, v in w.share.items():
            totals[m] = totals.get(m, 0.0) + v
    top = sorted(totals, key=lambda m: -totals[m])[:6]
    series = [[w.share.get(m, 0.0) for w in fb.windows] for m in top]
    rest = [1.0 - sum(w.share.get(m, 0.0) for m in top) for w in fb.windows]
    share.stackplot(ends, *series, rest, labels=[*top, "others"], alpha=0.85)
    share.set_ylabel("share of requests")
    share.set_xlabel("rows replayed (file order)")
    share.set_ylim(0, 1)
    share.legend(fontsize=6, loc="upper left", ncol=2)
    for ax in (acc, cost, share):
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"Learning from feedback on {report.rows} prompts", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
