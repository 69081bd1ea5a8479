#!/usr/bin/env python3
"""Does admission recover after a spike? Path (c) of `bench/run.py` at 64 connections, with a
CPU hog on every core for a few seconds in the middle, once per GIL switch interval of the router.

Admission (`routing.admission: estimate`) refuses a request at once when the classifier's
estimate of its wait passes its budget. The estimate is the rows waiting times the measured cost
of a row, and that cost is timed on the classifier's worker thread. A hog makes the cost rise,
and the refusals begin, as they should. The question is whether they stop when the hog does.
Each refusal is answered in well under a millisecond and its client sends the next request at
once. A storm of them can keep the event loop busy, and then the worker waits for the GIL at
every step that released it, so the cost it measures stays high, and so do the refusals.

Phases, back to back on one stack (Envoy, one router, the mocks; deploy/config.yaml, the signal
cache off, distinct prompts), each a closed-loop level of `bench/loadgen.py`:

  before    the load alone
  hog       the load, and a busy loop on each core (cores + 1 processes)
  after     the load alone again, in two halves (after-1, after-2)

    python bench/admission_storm.py            # bench/results/admission_storm.json (~4 minutes)
    python bench/admission_storm.py --quick    # short phases: bench/results/tmp/
    python bench/admission_storm.py --switch-ms 5 0.5 --repeats 2 --classifier-profile accurate
    python bench/admission_storm.py --in-process   # admission_storm.in-process.json

The router's interval is `serve --gil-switch-interval-ms` (5 is Python's own default).

Through Envoy on two cores, Envoy and the load generator share the router's cores, and they cap
how fast refusals can come back. `--in-process` takes them out. The phases then drive the
router's ext_proc `Processor` directly, in one process, with 64 callers on its event loop (the
same policy, classifier and admission, but no gRPC). That is a router whose clients and Envoy
have cores of their own: refusals come back as fast as its event loop can answer them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack import Ports, Stack

from bench import report
from bench.loadgen import build_request, run_level
from bench.run import CHAT, HOST, RESULTS, chat_body, load1, machine, settle
from classifiers.profiles import DEFAULT_PROFILE, PROFILES

CONCURRENCY = 64
PHASES = ("before", "hog", "after-1", "after-2")
# Distinct prompts, sent in turn: a prompt comes back only thousands of requests later, never
# within one batch (the signal cache is off, so it is encoded again).
PROMPTS = 20_000


@contextlib.contextmanager
def hog(processes: int) -> Iterator[None]:
    """`processes` busy loops (Python, one a process) until the block ends."""
    spin = "while True: pass"
    children = [
        subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.DEVNULL)
        for _ in range(processes)
    ]
    try:
        yield
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait()


def during(name: str) -> contextlib.AbstractContextManager[None]:
    """What runs alongside phase `name`: the hog (a busy loop per core, plus one), or nothing."""
    return hog((os.cpu_count() or 1) + 1) if name == "hog" else contextlib.nullcontext()


def phase(port: int, bodies: list[bytes], seconds: float, offset: int) -> dict[str, Any]:
    """One closed-loop level of `seconds` at CONCURRENCY, the bodies from `offset` on."""
    result = asyncio.run(
        run_level(
            HOST,
            port,
            bodies[offset:] + bodies[:offset],
            concurrency=CONCURRENCY,
            requests=10**9,  # until `seconds`
            warmup=0,
            max_seconds=seconds,
        )
    )
    summary = report.summarize(result, [])
    for key in ("cpu_ms_per_request", "response_headers"):
        summary.pop(key)
    summary["answered_per_s"] = round(result.completed / max(result.elapsed_s, 1e-9), 1)
    return summary


def storm(switch_ms: float, profile: str, seconds: float, workdir: Path) -> dict[str, Any]:
    """The four phases on a fresh stack whose router runs at `switch_ms`."""
    stack = Stack(
        Ports.free(),
        workdir=workdir,
        router_args=[
            "--signal-cache-entries", "0",
            "--gil-switch-interval-ms", f"{switch_ms:g}",
            "--classifier-profile", profile,
        ],
    )  # fmt: skip
    phases: dict[str, Any] = {}
    with stack:
        port = stack.ports.listener
        bodies = [build_request(HOST, port, CHAT, chat_body("auto", n)) for n in range(PROMPTS)]
        phase(port, bodies, 3.0, 0)  # warm up
        offset = 0
        for name in PHASES:
            load = load1()
            with during(name):
                figures = phase(port, bodies, seconds, offset)
            offset = (offset + figures["requests"] + CONCURRENCY) % len(bodies)
            figures["load1_before"] = load
            phases[name] = figures
            print(
                f"  switch={switch_ms:g} ms {name:8} answered={figures['requests']:<6} "
                f"served={figures['rps']:>6} /s degraded={figures['degraded_share']:.1%} "
                f"p50={figures['p50_ms']} ms load1={load}",
                flush=True,
            )
    return {"switch_ms": switch_ms, "phases": phases}


def in_process(switch_ms: float, profile: str, seconds: float) -> dict[str, Any]:
    """The four phases against an in-process router (`_child`), in a fresh interpreter."""
    child = subprocess.run(
        [sys.executable, __file__, "--child", f"{switch_ms:g}", profile, f"{seconds:g}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    phases = json.loads(child.stdout.strip().splitlines()[-1])
    for name, figures in phases.items():
        print(
            f"  in-process switch={switch_ms:g} ms {name:8} served={figures['rps']:>6} /s "
            f"refused={figures['degraded_share']:.1%} cost of a row "
            f"{figures['ms_per_row_after']} ms",
            flush=True,
        )
    return {"switch_ms": switch_ms, "phases": phases}


def _child(switch_ms: float, profile: str, seconds: float) -> None:
    """Run the phases against `extproc.Processor` in this process; print them as JSON."""
    from devstack import ROUTER_CONFIG

    from bench.processor_path import exchange
    from classifiers.profiles import profile_dir
    from extproc.processor import Processor, StreamState
    from meritorder.classify import load_classifier
    from meritorder.config import load_config
    from meritorder.logs import configure_logging
    from meritorder.router import Router

    sys.setswitchinterval(switch_ms / 1000)  # as `serve --gil-switch-interval-ms` does
    configure_logging(json_logs=True, level="ERROR")
    # As `serve` loads it, less the signal cache (off, as in the stack's runs).
    classifier = load_classifier(profile_dir(profile), pii_second_opinion=True)
    assert classifier is not None
    processor = Processor(Router(load_config(ROUTER_CONFIG), classifier))
    stats = classifier.engine.batch_stats
    sent = 0

    async def level(until: float, tally: dict[str, int]) -> None:
        nonlocal sent
        while time.perf_counter() < until:
            sent += 1
            headers, body = exchange(chat_body("auto", sent % PROMPTS), f"storm-{sent}")
            state = StreamState()
            await processor.process(state, headers)
            reply = await processor.process(state, body)
            kind = "served" if reply.WhichOneof("response") == "request_body" else "refused"
            tally[kind] = tally.get(kind, 0) + 1

    async def phases() -> dict[str, Any]:
        out: dict[str, Any] = {}
        await asyncio.gather(*(level(time.perf_counter() + 3.0, {}) for _ in range(8)))
        for name in PHASES:
            tally: dict[str, int] = {}
            with during(name):
                start = time.perf_counter()
                until = start + seconds
                await asyncio.gather(*(level(until, tally) for _ in range(CONCURRENCY)))
                elapsed = time.perf_counter() - start
            total = sum(tally.values())
            cost = stats.seconds_per_row
            out[name] = {
                "answered": total,
                "served": tally.get("served", 0),
                "rps": round(tally.get("served", 0) / elapsed, 1),
                "degraded_share": round(tally.get("refused", 0) / max(1, total), 4),
                "ms_per_row_after": None if cost is None else round(cost * 1000, 3),
            }
        return out

    print(json.dumps(asyncio.run(phases())))


def table(runs: list[dict[str, Any]]) -> str:
    """Markdown: per run, each phase's served/s and share refused (degraded)."""
    head = "| switch interval | run | " + " | ".join(PHASES) + " |"
    lines = [
        "Served requests/s (share decided without the classifier: refused as busy, or timed out)",
        "",
        head,
        "|---|---:|" + "---:|" * len(PHASES),
    ]
    seen: dict[float, int] = {}
    for run in runs:
        seen[run["switch_ms"]] = seen.get(run["switch_ms"], 0) + 1
        cells = [
            f"{p['rps']:.0f} ({p['degraded_share']:.0%})"
            for p in (run["phases"][name] for name in PHASES)
        ]
        label = f"| {run['switch_ms']:g} ms | {seen[run['switch_ms']]} | "
        lines.append(label + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--child"]:
        _child(float(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--in-process", action="store_true", help="no Envoy: the Processor")
    parser.add_argument("--quick", action="store_true", help="3 s phases, one run; tmp/")
    parser.add_argument("--switch-ms", type=float, nargs="+", default=[5.0, 0.5])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each interval, in turn")
    parser.add_argument("--seconds", type=float, default=8.0, help="each phase")
    parser.add_argument("--classifier-profile", choices=PROFILES, default=DEFAULT_PROFILE)
    args = parser.parse_args(argv)
    seconds, repeats = (3.0, 1) if args.quick else (args.seconds, args.repeats)
    out = RESULTS / "tmp" if args.quick else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    settled = settle()
    runs = []
    with tempfile.TemporaryDirectory(prefix="meritorder-storm-") as tmp:
        for k in range(repeats):
            for switch_ms in args.switch_ms:
                if args.in_process:
                    runs.append(in_process(switch_ms, args.classifier_profile, seconds))
                    continue
                workdir = Path(tmp) / f"{switch_ms:g}-{k}"
                workdir.mkdir()
                runs.append(storm(switch_ms, args.classifier_profile, seconds, workdir))
    figures = {
        "benchmark": "admission_storm",
        "command": "python bench/admission_storm.py " + " ".join(argv or sys.argv[1:]),
        "started_at": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(
            timespec="seconds"
        ),
        "duration_s": round(time.time() - started, 1),
        "machine": machine(),
        "load1_at_start": settled,
        "method": {
            "concurrency": CONCURRENCY,
            "phase_s": seconds,
            "hog": f"{(os.cpu_count() or 1) + 1} Python busy loops during the hog phase",
            "policy": "deploy/config.yaml (routing.admission: estimate), signal cache off",
            "path": "extproc.Processor in one process, no gRPC or Envoy"
            if args.in_process
            else "Envoy + router (serve) + mocks, bench/loadgen.py",
            "classifier_profile": args.classifier_profile,
            "cores": multiprocessing.cpu_count(),
        },
        "runs": runs,
    }
    path = out / ("admission_storm.in-process.json" if args.in_process else "admission_storm.json")
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(table(runs))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
