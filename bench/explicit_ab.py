"""The explicit-model path (or `auto`) through the real Envoy, two trees against each other (A/B).

    python bench/explicit_ab.py --before /tmp/before [--after .] [--rounds 3] [--json OUT]
    python bench/explicit_ab.py --before /tmp/before --model auto [--classifier-profile fast]

Each tree brings up its own demo stack (`deploy/devstack.py --no-classifier --free-ports`: its
own Envoy config, router and mock upstreams, on free ports read from its banner) with this
repo's virtualenv; the same load generator (`bench/loadgen.py`) sends `"model": "small"` chat
requests through Envoy at each concurrency. With `--model auto` the stack runs the classifier
(`deploy/config.yaml`, every signal; the profile if given) and every request of a run has its
own user turn, as path (c) of `bench/run.py`; the router keeps `serve`'s signal cache, so the
repeated system prompt is read from it after the first request, in both trees alike. Trees run
in ABBA order within every round, so drift in this VM's speed falls equally on both; the report
gives, per tree and level, the median over rounds of each run's p50 and p99 and of the router's
and Envoy's CPU per request (utime + stime from /proc), and the per-round after/before ratio of
p50.

Make a "before" tree with `git worktree add --detach /tmp/before <rev>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report
from bench.loadgen import build_request, run_level
from bench.run import CHAT, HOST, chat_body, load1, probe_for

REPO = Path(__file__).resolve().parents[1]
Levels = tuple[tuple[int, int, int], ...]  # concurrency, requests, warm-up
LEVELS: Levels = ((1, 2000, 200), (16, 4000, 400))
QUICK: Levels = ((1, 200, 20), (16, 300, 32))  # a smoke run


_BANNER = re.compile(r"OpenAI API \(Envoy\)\s+http://127\.0\.0\.1:(\d+)/v1")
_PIDS = re.compile(r"processes\s+(.+)")


def wait_ready(
    log: Path, stack: subprocess.Popen[bytes], timeout_s: float = 120.0
) -> tuple[int, dict[str, int]]:
    """The Envoy listener's port and the stack's pids (router, envoy), once the banner names
    them and `GET /v1/models` answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            raise RuntimeError(f"the stack exited ({stack.returncode}); see {log}")
        banner = log.read_text(errors="replace")
        found, named = _BANNER.search(banner), _PIDS.search(banner)
        if found and named:
            port = int(found.group(1))
            pairs = (item.split("=") for item in named.group(1).split(", "))
            pids = {name: int(pid) for name, pid in pairs if name in ("router", "envoy")}
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        return port, pids
            except OSError:
                pass
        time.sleep(0.5)
    raise RuntimeError(f"the stack was not up within {timeout_s:.0f} s; see {log}")


def stack_args(model: str, profile: str | None) -> list[str]:
    """devstack's flags for a run of `model`: no classifier for an explicit model."""
    if model != "auto":
        return ["--no-classifier"]
    return ["--classifier-profile", profile] if profile else []


def measure(
    tree: Path, log: Path, levels: Levels, model: str = "small", profile: str | None = None
) -> list[dict[str, Any]]:
    """Bring up `tree`'s stack, run every level against it, stop it."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with log.open("w") as out:
        stack = subprocess.Popen(
            [sys.executable, "deploy/devstack.py", "--free-ports", *stack_args(model, profile)],
            cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            port, pids = wait_ready(log, stack)
            distinct = sum(requests + max(warmup, c) for c, requests, warmup in levels)
            request: bytes | list[bytes] = (
                [build_request(HOST, port, CHAT, chat_body(model, n)) for n in range(distinct)]
                if model == "auto"
                else build_request(HOST, port, CHAT, chat_body(model))
            )
            measured = []
            for concurrency, requests, warmup in levels:
                result = asyncio.run(
                    run_level(
                        HOST, port, request, concurrency=concurrency, requests=requests,
                        warmup=warmup, max_seconds=30.0, probe=probe_for(pids),
                    )
                )  # fmt: skip
                summary = report.summarize(result, list(pids))
                measured.append({"concurrency": concurrency, **summary, "load1": load1()})
            return measured
        finally:
            os.killpg(stack.pid, signal.SIGINT)
            try:
                stack.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(stack.pid, signal.SIGKILL)
                stack.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the tree to compare against")
    parser.add_argument("--after", type=Path, default=REPO, help="default: this repo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="few requests: a smoke run")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--model", choices=("small", "auto"), default="small", help="what the requests ask for"
    )
    parser.add_argument(
        "--classifier-profile", choices=("accurate", "fast"), help="with --model auto"
    )
    args = parser.parse_args()
    levels_run = QUICK if args.quick else LEVELS
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    logs = REPO / "bench" / "results" / "tmp"
    logs.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[list[dict[str, Any]]]] = {"before": [], "after": []}
    for round_ in range(args.rounds):
        order = ("before", "after", "after", "before")  # ABBA
        for position, name in enumerate(order):
            log = logs / f"explicit_ab.{args.model}.{name}.{round_}.{position}.log"
            levels = measure(trees[name], log, levels_run, args.model, args.classifier_profile)
            runs[name].append(levels)
            line = " ".join(
                f"c={lv['concurrency']} p50={lv['p50_ms']} p99={lv['p99_ms']} err={lv['errors']}"
                f" router_cpu_ms={lv['cpu_ms_per_request'].get('router')}"
                f" envoy_cpu_ms={lv['cpu_ms_per_request'].get('envoy')}"
                for lv in levels
            )
            print(f"round {round_} {name:6} {line} load1={levels[-1]['load1']}", flush=True)
    summary: dict[str, Any] = {
        "trees": {k: str(v) for k, v in trees.items()},
        "model": args.model,
        "classifier_profile": args.classifier_profile,
        "levels": [],
    }
    for index, (concurrency, _, _) in enumerate(levels_run):
        row: dict[str, Any] = {"concurrency": concurrency}
        for name in ("before", "after"):
            p50s = [run[index]["p50_ms"] for run in runs[name]]
            p99s = [run[index]["p99_ms"] for run in runs[name]]
            row[name] = {"p50_ms": statistics.median(p50s), "p99_ms": statistics.median(p99s),
                         "p50_runs": p50s}  # fmt: skip
            for role in ("router", "envoy"):
                cpu = [run[index]["cpu_ms_per_request"].get(role) or 0.0 for run in runs[name]]
                row[name][f"{role}_cpu_ms_per_request"] = statistics.median(cpu)
                row[name][f"{role}_cpu_runs"] = cpu
        # Pair each "after" run with the "before" run next to it in the ABBA order.
        ratios = [
            a[index]["p50_ms"] / b[index]["p50_ms"]
            for b, a in zip(runs["before"], runs["after"], strict=True)
        ]
        row["p50_ratio_after_over_before"] = {
            "median": round(statistics.median(ratios), 3),
            "runs": [round(r, 3) for r in ratios],
        }
        summary["levels"].append(row)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
