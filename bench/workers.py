#!/usr/bin/env python3
"""Scale-out: path (c), "model": "auto" through Envoy, with 1, 2 and 4 router workers.

    python bench/workers.py [--quick] [--workers 1,2,4] [--classifier-profile fast]
        [--no-redis] [--signal-cache]

Each worker count gets a fresh stack (bench/run.py's: the mock upstreams, Envoy as shipped,
`meritorder serve --workers N` on one port, SO_REUSEPORT), measured at bench/run.py's levels
(concurrency 1, 4, 16, 64; `--quick`: its smoke counts) once every worker says it is listening.
As bench/run.py's (c) does, every request has its own prompt (a request number after the same
~128-token text: within a micro-batch the classifier encodes identical rows once) and the signal
cache is off (`--signal-cache-entries 0`; `--signal-cache` keeps the default), so the figures are
the encoder's and not a cache's.
The workers keep their shared state in one redis-server (`--state-store`, as a deployment of
several workers must for budgets, outcomes, sessions and learned estimates; `--no-redis`: each
process its own). Writes workers.<profile>.json and .md to bench/results/ (`--quick`: tmp/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack import ROUTER_CONFIG, Ports, Stack, StackError

from bench import report
from bench.loadgen import build_request
from bench.run import (
    CHAT,
    DISTINCT_PROMPTS,
    FULL,
    HOST,
    QUICK,
    RESULTS,
    Bench,
    Level,
    _sub,
    chat_body,
    load1,
    machine,
    settle,
    training_running,
)
from classifiers.profiles import DEFAULT_PROFILE, PROFILES

READY_S = 180.0  # every worker loads its own classifier; four on two cores take a while


def wait_for_workers(stack: Stack, workers: int, timeout_s: float = READY_S) -> None:
    """Until `workers` processes have logged that they listen (the port answers at the first)."""
    deadline = time.monotonic() + timeout_s
    while (ready := stack.log("router").count('"router listening"')) < workers:
        if time.monotonic() > deadline:
            raise StackError(f"{ready} of {workers} router workers listening after {timeout_s} s")
        time.sleep(0.5)


def measure(stack: Stack, levels: tuple[Level, ...], workers: int) -> list[dict[str, Any]]:
    """bench/run.py's (c) on `stack`: its levels and distinct prompts, through `Bench`."""
    pids = {
        "router": stack.processes.running["router"].pid,
        "envoy": stack.processes.running["envoy"].pid,
        "mock": stack.processes.running["mocks"].pid,
    }
    requests = [
        build_request(HOST, stack.ports.listener, CHAT, chat_body("auto", n))
        for n in range(DISTINCT_PROMPTS)
    ]
    bench = Bench(levels)
    key = f"auto_{workers}w"
    bench.measure(
        key,
        f'(c) Envoy + {workers} router workers, "model": "auto"',
        stack.ports.listener,
        requests,
        pids,
    )
    rows = []
    for summary in bench.paths[key]["levels"]:
        shares = report.shares(summary["decisions"], summary["requests"])
        rows.append(
            {
                "workers": workers,
                **summary,
                "shares": {kind: round(share, 4) for kind, share in shares.items()},
            }
        )
    return rows


def markdown(figures: dict[str, Any]) -> str:
    m = figures["machine"]
    lines = [
        f"`{figures['command']}` — {m['cpu_model']}, {m['cores_usable']} usable cores; "
        f"classifier profile {figures['classifier_profile']}; "
        f"state store: {figures['state_store']}; signal cache: {figures['signal_cache']}; "
        f"a prompt per request; load1 {figures['load1_start']} at the start"
        + (", the training job was running" if figures["training_running"] else "")
        + ".",
        "",
        "| workers | concurrency | req/s | p50 ms | p99 ms | errors | fallback | degraded | "
        "router CPU ms/req |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in figures["rows"]:
        cpu = row["cpu_ms_per_request"].get("router")
        lines.append(
            f"| {row['workers']} | {row['concurrency']} | {row['rps']} | {row['p50_ms']} | "
            f"{row['p99_ms']} | {_errors(row)} | {row['shares']['fallback']:.1%} | "
            f"{row['shares']['degraded']:.1%} | {cpu} |"
        )
    return "\n".join(lines)


def _errors(row: dict[str, Any]) -> str:
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(row["error_kinds"].items()))
    return f"{row['errors']} ({kinds})" if kinds else str(row["errors"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="bench/run.py's smoke counts")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--no-redis", action="store_true", help="no shared state store")
    parser.add_argument("--signal-cache", action="store_true", help="keep the signal cache on")
    parser.add_argument("--config", type=Path, default=ROUTER_CONFIG, help="the router's policy")
    parser.add_argument(
        "--classifier-profile", choices=tuple(PROFILES), help="passed to serve (default: its own)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the process logs' directory")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    levels = QUICK if args.quick else FULL
    out = RESULTS / "tmp" if args.quick else RESULTS
    workdir = Path(tempfile.mkdtemp(prefix="meritorder-workers-"))
    started = datetime.datetime.now(datetime.UTC)
    figures: dict[str, Any] = {
        "benchmark": "workers",
        "command": " ".join(["python bench/workers.py", *(argv or sys.argv[1:])]),
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "load1_start": settle(10.0 if args.quick else 90.0),
        "training_running": training_running(),
        "state_store": "none (each process its own)" if args.no_redis else "redis (--state-store)",
        "signal_cache": "on (default)" if args.signal_cache else "off",
        "classifier_profile": args.classifier_profile or DEFAULT_PROFILE,
        "levels": [lv.__dict__ for lv in levels],
        "rows": [],
    }
    router_args = [] if args.signal_cache else ["--signal-cache-entries", "0"]
    if args.classifier_profile:
        router_args += ["--classifier-profile", args.classifier_profile]
    print(f"path (c) with {counts} workers, logs in {workdir}", flush=True)
    try:
        for workers in counts:
            stack = Stack(
                Ports.free(),
                router_config=args.config.resolve(),
                workdir=_sub(workdir, f"workers-{workers}"),
                router_args=[*router_args, "--workers", str(workers)],
                redis=not args.no_redis,
            )
            with stack:
                wait_for_workers(stack, workers)
                figures["rows"] += measure(stack, levels, workers)
    except StackError as error:
        print(f"bench could not start a stack: {error}\nlogs in {workdir}", file=sys.stderr)
        return 1
    finished = datetime.datetime.now(datetime.UTC)
    figures["duration_s"] = round((finished - started).total_seconds(), 1)
    figures["load1_end"] = load1()
    out.mkdir(parents=True, exist_ok=True)
    # One pair of files per profile: a run of one never overwrites the other's.
    stem = f"workers.{figures['classifier_profile']}"
    (out / f"{stem}.json").write_text(json.dumps(figures, indent=2) + "\n")
    table = markdown(figures)
    (out / f"{stem}.md").write_text(table + "\n")
    print(table)
    print(f"wrote {out / stem}.json and .md")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
