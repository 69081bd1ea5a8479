#!/usr/bin/env python3
"""Where the router's CPU goes under load: py-spy samples grouped by stage, and CPU per thread.

    python bench/profile_router.py [--model auto] [--concurrency 16] [--seconds 15]

Starts the demo stack (mocks, router, Envoy) on free ports, warms it up, then drives it closed
loop while `py-spy record` samples the router. Prints the share of samples per stage (the
innermost project frame decides), the hottest functions, and each router thread's CPU seconds per
request from /proc. The raw (collapsed) stacks are kept in bench/results/tmp/ for
flamegraph.pl or speedscope.
Needs py-spy (bench extra) and permission to ptrace the router (root, or ptrace_scope 0).
Sampling costs CPU itself: do not take figures from a profiled run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack import Ports, Stack

from bench.loadgen import build_request, run_level
from bench.run import CHAT, HOST, RESULTS, chat_body

# First match wins, in this order, over every frame of a main-thread sample.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("keyword/pattern signals (meritorder/signals/)", ("meritorder/signals/", "evaluate_signals")),
    ("tracing (opentelemetry, telemetry stages)", ("opentelemetry", "meritorder/telemetry.py")),
    ("logging (structlog, one line per decision)", ("structlog", "meritorder/logs.py")),
    ("metrics (prometheus_client)", ("prometheus_client",)),
    ("access log stream (extproc/access_log.py)", ("access_log.py",)),
    ("request parse/rewrite (meritorder/request.py)", ("meritorder/request.py",)),
    ("ext_proc adapter (extproc/)", ("extproc/",)),
    (
        "rest of router and policy",
        ("meritorder/router.py", "meritorder/policy/", "meritorder/config.py"),
    ),
)
LOOP = "grpc aio + asyncio machinery (Cython, syscalls)"
# Samples of a thread blocked in the poller: py-spy cannot always tell that it is idle.
IDLE = ("selectors.py",)


def stage_of(frames: list[str]) -> str | None:
    """The stage of one main-thread sample, or None when the loop was only waiting."""
    if any(needle in frames[-1] for needle in IDLE):
        return None
    for name, needles in STAGES:
        if any(needle in frame for frame in frames for needle in needles):
            return name
    return LOOP


def summarize(raw: Path, top: int) -> None:
    stages: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if "_run_module_as_main" not in frames[0]:
            continue  # other threads: their CPU comes from /proc (see above)
        stage = stage_of(frames)
        if stage is None:
            continue
        busy += int(count)
        stages[stage] += int(count)
        leaves[frames[-1]] += int(count)
    print(f"\nmain thread, {busy} busy samples; share per stage:")
    for stage, hits in stages.most_common():
        print(f"  {100 * hits / busy:5.1f}%  {stage}")
    print(f"\nhottest functions of the main thread (self time, top {top}):")
    for function, hits in leaves.most_common(top):
        print(f"  {100 * hits / busy:5.1f}%  {function}")


def thread_cpu(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        out[f"{task.name} {name}"] = (int(fields[11]) + int(fields[12])) / 100
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="auto", help="the model the clients ask for")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed: pip install py-spy (the bench extra)", file=sys.stderr)
        return 1
    out = RESULTS / "tmp"
    out.mkdir(parents=True, exist_ok=True)
    raw = out / f"router-{args.model}.txt"
    ports = Ports.free()
    request = build_request(HOST, ports.listener, CHAT, chat_body(args.model))
    stack = Stack(ports, workdir=Path(tempfile.mkdtemp(prefix="meritorder-profile-")))
    with stack:
        pid = stack.processes.running["router"].pid

        def load(requests: int, seconds: float) -> int:
            result = asyncio.run(
                run_level(
                    HOST,
                    ports.listener,
                    request,
                    concurrency=args.concurrency,
                    requests=requests,
                    warmup=args.concurrency,
                    max_seconds=seconds,
                )
            )
            return len(result.latencies_ns)

        load(500, 10)
        record = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
        sampler = subprocess.Popen([*record, "--duration", str(args.seconds), "-o", str(raw)])
        time.sleep(1)
        before = thread_cpu(pid)
        done = load(10**9, args.seconds - 2)
        after = thread_cpu(pid)
        sampler.wait()
        print(f"\n{done} requests at concurrency {args.concurrency}, model {args.model!r}")
        print("router CPU per request, by thread (ms):")
        for thread, seconds in after.items():
            spent = seconds - before.get(thread, 0.0)
            if spent >= 0.01:
                print(f"  {thread:28} {spent * 1000 / max(1, done):.3f}")
    summarize(raw, args.top)
    print(f"\nraw stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
