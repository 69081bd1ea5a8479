#!/usr/bin/env python3
"""Router memory after large prompts, and what the onnxruntime arena settings cost.

    python bench/rss.py [--sizes 204800,1048576] [--out bench/results/rss.json]
    python bench/rss.py --latency-only

1. Through the real Envoy (devstack, free ports, the demo policy with room for a 1 MiB prompt):
   the router's VmRSS before a large chat prompt, right after its response, and settled: the
   lowest RSS within 10 s of the classifier going idle (the router releases memory once it is
   quiet, meritorder/memory.py).
   Each size runs in a fresh stack, so the figures do not depend on each other.
2. In-process: a 128-token classification (p50/p99) and a 50 KB one (seconds) with
   onnxruntime's CPU arena on and off (classifiers/session.py), interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "deploy")]

from devstack import ROUTER_CONFIG, Ports, Stack  # noqa: E402

from meritorder.memory import rss_bytes  # noqa: E402

SIZES = (200 << 10, 1 << 20)
LONG_PROMPT_CHARS = 50 << 10
WORDS = [
    "the",
    "quarterly",
    "report",
    "lists",
    "revenue",
    "costs",
    "and",
    "a",
    "forecast",
    "for",
    "each",
    "region",
]


def prompt(chars: int) -> str:
    """Plain prose of `chars` characters (many distinct windows, like a pasted document)."""
    out: list[str] = []
    total = 0
    i = 0
    while total < chars:
        word = f"{WORDS[i % len(WORDS)]}{i % 97}"
        out.append(word)
        total += len(word) + 1
        i += 1
    return " ".join(out)[:chars]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, quiet_s: float = 2.0, limit_s: float = 300.0) -> float:
    """Until the process used under 5% of a core for `quiet_s`; the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        before = cpu_seconds(pid)
        time.sleep(quiet_s)
        if cpu_seconds(pid) - before < 0.05 * quiet_s:
            break
    return time.monotonic() - start


def one_size(chars: int, settle_s: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="meritorder-rss-"))
    policy = workdir / "policy.yaml"
    # Room for the largest prompt: the demo limit (1 MiB) would answer 413 before classifying.
    policy.write_text(
        ROUTER_CONFIG.read_text().replace("max_body_bytes: 1048576", "max_body_bytes: 4194304")
    )
    with Stack(Ports.free(), router_config=policy, workdir=workdir) as stack:
        pid = stack.processes.running["router"].pid
        with httpx.Client(base_url=stack.base_url, timeout=300) as http:

            def ask(text: str) -> int:
                body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
                return http.post("/v1/chat/completions", json=body).status_code

            for i in range(30):  # warm: every path, the arena at ordinary sizes
                ask(f"fix this python function number {i}, step by step")
            wait_idle(pid)
            before = rss_bytes(pid)
            started = time.monotonic()
            status = ask(prompt(chars))
            answered_s = time.monotonic() - started
            after = rss_bytes(pid)
            idle_s = wait_idle(pid)
            # Settled: the lowest RSS within `settle_s` of the classifier going idle.
            settled = rss_bytes(pid)
            settle_end = time.monotonic() + settle_s
            while time.monotonic() < settle_end:
                time.sleep(0.25)
                settled = min(settled, rss_bytes(pid))
            peak = _hwm(pid)
            ask("one more ordinary request after the large one")
            time.sleep(1.5)
            final = rss_bytes(pid)
    mb = lambda b: round(b / 2**20, 1)  # noqa: E731
    return {
        "prompt_chars": chars,
        "status": status,
        "answered_s": round(answered_s, 2),
        "classifier_busy_s": round(idle_s, 1),
        "rss_before_mb": mb(before),
        "rss_after_response_mb": mb(after),
        "rss_peak_mb": mb(peak),
        "rss_settled_mb": mb(settled),
        "rss_after_next_request_mb": mb(final),
        "settled_vs_before": round(settled / before, 3),
    }


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def arena_latency(repeats: int) -> dict[str, Any]:
    """p50/p99 of a 128-token classification with the CPU arena on (onnxruntime's default) and
    off (classifiers/session.py), interleaved so that a change in the machine's load hits both."""
    from bench.classifier import percentiles, prompt_of
    from classifiers.engine import DEFAULT_MODEL_DIR, SignalEngine
    from classifiers.session import create_session
    from classifiers.spec import MODEL_FILE, SPEC_FILE, TOKENIZER_FILE, ModelSpec
    from classifiers.windows import TextTokenizer

    spec = ModelSpec.load(DEFAULT_MODEL_DIR / SPEC_FILE)
    engines = {
        name: SignalEngine(
            create_session(DEFAULT_MODEL_DIR / MODEL_FILE, force_cpu=True, cpu_arena=arena),
            TextTokenizer.from_file(DEFAULT_MODEL_DIR / TOKENIZER_FILE),
            spec,
        )
        for name, arena in (("arena on", True), ("arena off", False))
    }
    text = prompt_of(next(iter(engines.values())), 128)
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for round_ in range(repeats + 20):
        for name, engine in engines.items():
            start = time.perf_counter()
            engine.classify_batch([text])
            if round_ >= 20:  # the first runs warm caches and the arena
                samples[name].append((time.perf_counter() - start) * 1000)
    # A long prompt (many full 32-row runs): without the arena each run faults its buffers in.
    long_text = prompt(LONG_PROMPT_CHARS)
    long_s: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(2):
        for name, engine in engines.items():
            start = time.perf_counter()
            engine.classify_batch([long_text])
            long_s[name].append(round(time.perf_counter() - start, 2))
    for engine in engines.values():
        engine.close()
    return {
        name: {**percentiles(values), f"{LONG_PROMPT_CHARS}_chars_s": long_s[name]}
        for name, values in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--settle-s", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--rss-only", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rss.json")
    args = parser.parse_args()
    # Keep the other part's figures when only one part runs.
    report: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    report["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    report["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if not args.latency_only:
        report["rss"] = [one_size(int(s), args.settle_s) for s in args.sizes.split(",")]
        for row in report["rss"]:
            print(json.dumps(row), flush=True)
    if not args.rss_only:
        report["latency_128_tokens_ms"] = arena_latency(args.repeats)
        print(json.dumps(report["latency_128_tokens_ms"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
