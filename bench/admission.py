#!/usr/bin/env python3
"""Admission control against waiting out the budget: path (c) of `bench/run.py` (Envoy + router,
`"model": "auto"`, deploy/config.yaml: every signal, the attack signal required) under closed-loop
load, with `routing.admission: estimate` (shipped) and `off`, at concurrency 16 and 64.

Each request has its own prompt and the signal cache is off, as in `bench/run.py`'s (c), so every
request costs the classifier a forward. Reports per level: p50/p99 of the answers (200s and the
router's refusals alike: what a client waits for an answer), requests/s, the degraded share
(decided without the classifier's signals: `classifier=busy` or `timeout`) and the fallback
share (deciding failed), and the tally of decisions.

    python bench/admission.py            # bench/results/admission.json (~2 minutes)
    python bench/admission.py --quick    # a few seconds a level: bench/results/tmp/
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack import ROUTER_CONFIG, Ports, Stack

from bench import report
from bench.loadgen import build_request, run_level
from bench.run import CHAT, DISTINCT_PROMPTS, HOST, RESULTS, chat_body, load1, training_running

CONCURRENCY = (16, 64)
MODES = ("estimate", "off")


def policy(mode: str, workdir: Path) -> Path:
    """deploy/config.yaml with `routing.admission: mode`."""
    config = yaml.safe_load(ROUTER_CONFIG.read_text())
    config.setdefault("routing", {})["admission"] = mode
    path = workdir / f"admission-{mode}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def measure(mode: str, workdir: Path, requests: int, seconds: float) -> list[dict[str, Any]]:
    levels = []
    run_dir = workdir / mode
    run_dir.mkdir()
    stack = Stack(
        Ports.free(),
        router_config=policy(mode, workdir),
        workdir=run_dir,
        router_args=["--signal-cache-entries", "0"],
    )
    with stack:
        bodies = [
            build_request(HOST, stack.ports.listener, CHAT, chat_body("auto", n))
            for n in range(DISTINCT_PROMPTS)
        ]
        offset = 0
        for concurrency in CONCURRENCY:
            load = load1()
            result = asyncio.run(
                run_level(
                    HOST,
                    stack.ports.listener,
                    bodies[offset:] + bodies[:offset],
                    concurrency=concurrency,
                    requests=requests,
                    warmup=concurrency,
                    max_seconds=seconds,
                )
            )
            offset += requests + concurrency
            summary = report.summarize(result, [])
            summary.pop("cpu_ms_per_request")
            refused = np.asarray(result.failed_ns, dtype=np.float64) / 1e6
            for q in (50, 99):
                value = float(np.percentile(refused, q)) if len(refused) else None
                summary[f"refused_p{q}_ms"] = None if value is None else round(value, 3)
            summary["load1_before"] = load
            summary["training_running"] = training_running()
            levels.append(summary)
            print(
                f"  admission={mode:8} c={concurrency:<3} n={summary['requests']:<5} "
                f"ok={summary['ok']:<5} p50={summary['p50_ms']} ms p99={summary['p99_ms']} ms "
                f"refused p50={summary['refused_p50_ms']} ms "
                f"{summary['rps']} req/s degraded={summary['degraded_share']:.1%} "
                f"fallback={summary['fallback_share']:.1%} load1={load}",
                flush=True,
            )
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds a level; tmp/")
    args = parser.parse_args(argv)
    requests, seconds = (400, 6.0) if args.quick else (3000, 25.0)
    out = RESULTS / "tmp" if args.quick else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="meritorder-admission-") as workdir:
        figures: dict[str, Any] = {
            "benchmark": "admission",
            "command": "python bench/admission.py" + (" --quick" if args.quick else ""),
            "finished_at": None,
            "policy": "deploy/config.yaml with routing.admission set; signal cache off",
            "modes": {mode: measure(mode, Path(workdir), requests, seconds) for mode in MODES},
        }
    figures["finished_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    figures["duration_s"] = round(time.time() - started, 1)
    path = out / "admission.json"
    path.write_text(json.dumps(figures, indent=2, default=_plain) + "\n")
    print(f"wrote {path}")
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
