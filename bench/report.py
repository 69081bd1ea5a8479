"""Figures from a path-overhead run: the summary of each level, the targets, the plot and the
Markdown tables that `bench/run.py` writes into docs/BENCHMARKS.md."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.loadgen import LevelResult

# Markers in docs/BENCHMARKS.md between which a full run writes its tables; the prose around
# them is written by hand and left alone.
BEGIN = "<!-- bench:path-overhead:begin (written by bench/run.py; edit outside) -->"
END = "<!-- bench:path-overhead:end -->"


def summarize(result: LevelResult, roles: Sequence[str]) -> dict[str, Any]:
    """The figures of one level: latency percentiles (ms), throughput, CPU per request."""
    ms = np.asarray(result.latencies_ns, dtype=np.float64) / 1e6
    ok, n = len(ms), result.completed
    before, after = result.probes
    per_request: dict[str, float | None] = {}
    for role in roles:
        if before is None or before.get(role) is None or after.get(role) is None:
            per_request[role] = None
        else:
            per_request[role] = round((after[role] - before[role]) * 1000 / max(1, ok), 4)
    per_request["loadgen"] = round(result.loadgen_cpu_s * 1000 / max(1, result.completed), 4)
    return {
        "concurrency": result.concurrency,
        "requests": n,
        "ok": ok,
        "errors": result.errors,
        "error_kinds": result.error_kinds,
        "elapsed_s": round(result.elapsed_s, 3),
        "rps": round(ok / result.elapsed_s, 1) if result.elapsed_s else 0.0,
        "p50_ms": _pct(ms, 50),
        "p95_ms": _pct(ms, 95),
        "p99_ms": _pct(ms, 99),
        "mean_ms": round(float(ms.mean()), 3) if ok else None,
        "cpu_ms_per_request": per_request,
        "response_headers": result.last_headers,
        "decisions": result.decisions,
        **{f"{kind}_share": round(share, 4) for kind, share in shares(result.decisions, n).items()},
    }


# The notes of x-meritorder-reason that mark each kind of decision made without the policy's
# whole view: degraded (decided without the classifier's signals: busy, timeout, an error; a
# routing-only signal skipped or a required one's on_unavailable) and fallback (deciding failed).
_MARKERS = {"degraded": "degraded=", "fallback": "fallback="}


def shares(tally: Mapping[str, int], requests: int | None = None) -> dict[str, float]:
    """The share of a level's requests (all of them, failures too; default: those tallied) that
    were degraded and that fell back, from its tally of decisions (`LevelResult.decisions`)."""
    total = requests or sum(tally.values())
    return {
        kind: sum(n for key, n in tally.items() if marker in key) / total if total else 0.0
        for kind, marker in _MARKERS.items()
    }


def _pct(values: np.ndarray[Any, Any], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


@dataclass(frozen=True)
class Target:
    name: str
    measured: float | None
    threshold: float
    higher_is_better: bool
    unit: str
    detail: str
    # Why the figure does not count, e.g. the router fell back instead of deciding.
    invalid: str | None = None

    @property
    def met(self) -> bool | None:
        if self.measured is None or self.invalid:
            return None
        if self.higher_is_better:
            return self.measured >= self.threshold
        return self.measured <= self.threshold

    def as_dict(self) -> dict[str, Any]:
        margin = None if self.measured is None else round(self.measured - self.threshold, 3)
        return {
            "name": self.name,
            "measured": self.measured,
            "threshold": self.threshold,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "met": self.met,
            "margin": margin,
            "detail": self.detail,
            "invalid": self.invalid,
        }


def _level(paths: Mapping[str, Any], path: str, concurrency: int) -> dict[str, Any] | None:
    for level in paths.get(path, {}).get("levels", []):
        if level["concurrency"] == concurrency:
            return dict(level)
    return None


def _get(paths: Mapping[str, Any], path: str, concurrency: int, key: str) -> float | None:
    level = _level(paths, path, concurrency)
    return None if level is None or level.get(key) is None else float(level[key])


def share(paths: Mapping[str, Any], path: str, concurrency: int, kind: str) -> float | None:
    """The share of a level's requests that were `kind` (degraded, fallback); None when the
    level was not measured."""
    level = _level(paths, path, concurrency)
    if level is None:
        return None
    return shares(level.get("decisions") or {}, level.get("requests"))[kind]


def fallbacks(paths: Mapping[str, Any], path: str, concurrency: int) -> float:
    """The share of a level's requests that the router routed on a timeout or error fallback."""
    return share(paths, path, concurrency, "fallback") or 0.0


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _invalid(paths: Mapping[str, Any], path: str, levels: tuple[int, ...]) -> str | None:
    shares = {c: fallbacks(paths, path, c) for c in levels}
    bad = {c: share for c, share in shares.items() if share > 0.01}
    if not bad:
        return None
    return "the router fell back instead of deciding for " + ", ".join(
        f"{share:.1%} of requests at c={c}" for c, share in bad.items()
    )


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def targets(paths: Mapping[str, Any], bare_ms: float | None = None) -> list[Target]:
    """The issue's targets, each from figures of this one run; `bare_ms` is the bare model
    forward of (c)'s request (None when (c) ran no model)."""
    a1, b1, c1 = (_get(paths, p, 1, "p50_ms") for p in ("envoy", "explicit", "auto"))
    mock1, d1 = _get(paths, "mock", 1, "p50_ms"), _get(paths, "litellm", 1, "p50_ms")
    c_added, d_added = _sub(c1, mock1), _sub(d1, mock1)
    b16, c16, d16 = (_get(paths, p, 16, "rps") for p in ("explicit", "auto", "litellm"))
    c_rps1 = _get(paths, "auto", 1, "rps")
    c_over_a = _sub(c1, a1)
    loaded = (16, 64)
    fell = [share(paths, "auto", c, "fallback") for c in loaded]
    degraded = [share(paths, "auto", c, "degraded") for c in loaded]
    worst = None if None in fell else round(100 * max(f for f in fell if f is not None), 2)
    return [
        Target(
            "(b) router, explicit model: added p50 over (a) at c=1",
            _sub(b1, a1),
            1.5,
            False,
            "ms",
            f"p50 (b) {b1} ms - p50 (a) {a1} ms",
        ),
        Target(
            "(b) router, explicit model: requests/s at c=16",
            b16,
            1000.0,
            True,
            "req/s",
            "closed loop, 16 connections",
        ),
        Target(
            "(c) adds less p50 than (d) at c=1 (each over the bare mock)",
            _sub(c_added, d_added),
            0.0,
            False,
            "ms",
            f"(c) adds {c_added} ms, (d) adds {d_added} ms over the mock's {mock1} ms; "
            "measured = (c) added - (d) added, must be < 0",
            _invalid(paths, "auto", (1,)),
        ),
        Target(
            "(c) serves more requests/s than (d) at c=16",
            _sub(c16, d16),
            0.0,
            True,
            "req/s",
            f"(c) {c16} req/s - (d) {d16} req/s; must be > 0",
            _invalid(paths, "auto", (16,)),
        ),
        Target(
            "(c) auto: requests/s at c=16 over requests/s at c=1",
            round(c16 / c_rps1, 2) if c16 is not None and c_rps1 else None,
            3.0,
            True,
            "x",
            f"(c) {c16} req/s at c=16 / {c_rps1} req/s at c=1",
            _invalid(paths, "auto", (1, 16)),
        ),
        Target(
            "(c) auto: p50 end to end at c=1 (~128-token prompt, through Envoy)",
            c1,
            10.0,
            False,
            "ms",
            "the whole request: Envoy, router with every signal, mock upstream",
            _invalid(paths, "auto", (1,)),
        ),
        Target(
            "(c) auto: added p50 over (a) at c=1, in bare model forwards of the same request",
            round(c_over_a / bare_ms, 2) if c_over_a is not None and bare_ms else None,
            1.2,
            False,
            "x",
            f"((c) {c1} ms - (a) {a1} ms) / bare onnxruntime forward {bare_ms} ms",
            _invalid(paths, "auto", (1,)),
        ),
        Target(
            "(c) auto: ≤ 1% fallbacks at c=16 and c=64, degraded share reported",
            worst,
            1.0,
            False,
            "%",
            "fallbacks (deciding failed) "
            + ", ".join(f"c={c}: {_percent(f)}" for c, f in zip(loaded, fell, strict=True))
            + "; degraded (decided without the classifier's signals, no threshold) "
            + ", ".join(f"c={c}: {_percent(d)}" for c, d in zip(loaded, degraded, strict=True))
            + "; measured = the higher fallback share",
        ),
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def markdown(report: Mapping[str, Any]) -> str:
    """The generated part of docs/BENCHMARKS.md: conditions, one table per path, targets."""
    machine, conditions = report["machine"], report["conditions"]
    lines = [
        f"Run of {report['finished_at']} (`{report['command']}`, commit "
        f"`{report['git_commit']}`): {machine['cpu_model']}, {machine['cores']} cores, "
        f"Python {machine['python']}, Envoy {machine['envoy']}, LiteLLM {machine['litellm']}.",
        "",
        f"**Load conditions:** {conditions['summary']}",
        "",
        f"Router policy: `{report['policy']['path']}` (sha256 `{report['policy']['sha256']}`"
        + (", uncommitted changes" if report["policy"]["dirty"] else ", as committed")
        + f"). Classifier: {report['classifier']['summary']} Signal cache: "
        + f"{report['method'].get('signal_cache', 'on')}.",
        "",
    ]
    bare = report.get("bare_forward")
    if bare:
        lines += [
            f"Bare model forward of (c)'s request, measured first: p50 {bare['p50_ms']} ms, "
            f"p99 {bare['p99_ms']} ms ({bare['runs']} runs; rows of "
            f"{' + '.join(str(n) for n in bare['rows_tokens'])} tokens, {bare['provider']}).",
            "",
        ]
    for key, path in report["paths"].items():
        lines += [f"#### {path['label']}", ""]
        if path.get("skipped"):
            lines += [f"Not measured: {path['skipped']}", ""]
            continue
        roles = [r for r in path["cpu_roles"] if r != "loadgen"]
        decided = any(level.get("decisions") for level in path["levels"])
        head = [
            "conc.",
            "requests",
            "errors",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "req/s",
            *(f"{r} CPU ms/req" for r in [*roles, "loadgen"]),
            *(("degraded", "fallback") if decided else ()),
            "load1",
        ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
        for level in path["levels"]:
            cpu = level["cpu_ms_per_request"]
            row = [
                level["concurrency"],
                level["requests"],
                level["errors"],
                level["p50_ms"],
                level["p95_ms"],
                level["p99_ms"],
                level["rps"],
                *(cpu.get(r) for r in [*roles, "loadgen"]),
                *(
                    _percent(share(report["paths"], key, level["concurrency"], kind))
                    for kind in (_MARKERS if decided else ())
                ),
                level["load1_before"],
            ]
            lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
        lines.append("")
        if key in ("explicit", "auto"):
            tallies = "; ".join(
                f"c={lv['concurrency']}: `{lv['decisions']}`" for lv in path["levels"]
            )
            lines += [
                f"Decisions (x-meritorder-decision; fallback, classifier and degraded notes; "
                f"degraded and fallback: shares of all requests): {tallies}",
                "",
            ]
    lines += [
        "#### Added latency (p50, ms) over the bare mock",
        "",
        "| path | " + " | ".join(f"c={c}" for c in report["method"]["concurrency"]) + " |",
        "|---|" + "---:|" * len(report["method"]["concurrency"]),
    ]
    for key, path in report["paths"].items():
        if key in ("loadgen", "mock") or path.get("skipped"):
            continue
        added = [
            _sub(
                _get(report["paths"], key, c, "p50_ms"), _get(report["paths"], "mock", c, "p50_ms")
            )
            for c in report["method"]["concurrency"]
        ]
        lines.append(f"| {path['label']} | " + " | ".join(_fmt(v) for v in added) + " |")
    lines += ["", "#### Targets", "", "| target | measured | threshold | result | detail |"]
    lines.append("|---|---:|---:|---|---|")
    for target in report["targets"]:
        verdict = {True: "**met**", False: "**missed**", None: "not measured"}[target["met"]]
        if target["invalid"]:
            verdict = f"**not valid**: {target['invalid']}"
        elif target["met"] is not None:
            verdict += f" (by {abs(target['margin']):g} {target['unit']})"
        comparison = ">=" if target["higher_is_better"] else "<="
        lines.append(
            f"| {target['name']} | {_fmt(target['measured'])} {target['unit']} | "
            f"{comparison} {target['threshold']:g} | {verdict} | {target['detail']} |"
        )
    return "\n".join(lines)


def write_doc(doc: Path, generated: str) -> bool:
    """Replace the generated block of `doc`; False if its markers are missing."""
    text = doc.read_text() if doc.exists() else ""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        return False
    doc.write_text(pattern.sub(lambda _: f"{BEGIN}\n{generated}\n{END}", text, count=1))
    return True


def plot(report: Mapping[str, Any], path: Path) -> None:
    """p50 latency and requests/s against concurrency, one line per path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (latency, rps) = plt.subplots(1, 2, figsize=(12, 4.8))
    for path_data in report["paths"].values():
        levels = path_data.get("levels") or []
        if not levels:
            continue
        conc = [lv["concurrency"] for lv in levels]
        latency.plot(conc, [lv["p50_ms"] for lv in levels], marker="o", label=path_data["label"])
        rps.plot(conc, [lv["rps"] for lv in levels], marker="o", label=path_data["label"])
    for axis, title, unit in (
        (latency, "p50 latency", "ms (log)"),
        (rps, "throughput", "requests/s (log)"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xticks(report["method"]["concurrency"])
        axis.set_xticklabels([str(c) for c in report["method"]["concurrency"]])
        axis.set_xlabel("concurrency (closed-loop connections)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    latency.legend(fontsize=7)
    fig.suptitle(f"Path overhead: {report['conditions']['summary']}", fontsize=9, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
