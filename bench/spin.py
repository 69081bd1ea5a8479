"""How long onnxruntime's idle intra-op threads should spin: the bare forward of path (c)'s
request, and the CPU it takes, with the pool sleeping at once, spinning as long as onnxruntime's
default, and spinning a bounded number of microseconds (`session.intra_op.spin_duration_us`).

    python bench/spin.py [--model-dir classifiers/models/fast] [--batch 1] [--out FILE.json]

The rows are those `bench/run.py`'s path (c) request becomes (`SignalEngine.model_rows`: the
user turn and the system prompt, in the engine's own runs: one each), or with `--batch N`
one run of N such user turns. Each variant has its own session with the router's other options
(`classifiers.session.session_options`); the variants take turns in rounds, and between two
requests the bench sleeps `--gap-ms` (default 2), as a router at concurrency 1 waits for the
next request: a pool that spins through that gap costs CPU that Envoy and the event loop need.
Reports, per variant, the median over rounds of each round's p50, and the process CPU (utime +
stime of every thread) per request.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ort_options import spin_options
from bench.run import chat_body, machine

REPO = Path(__file__).resolve().parents[1]
# (name, intra-op spin in microseconds: 0 sleeps at once, None is onnxruntime's own default)
VARIANTS: tuple[tuple[str, int | None], ...] = (
    ("sleep at once", 0),
    ("onnxruntime's default spin", None),
    ("spin 10 us", 10),
    ("spin 25 us", 25),
    ("spin 50 us (the router's)", 50),
    ("spin 100 us", 100),
    ("spin 200 us", 200),
)


def feeds_for(model_dir: Path, batch: int) -> tuple[list[str], list[dict[str, Any]]]:
    """The engine's output names and the input feeds of one request (or one batch)."""
    import numpy as np

    from classifiers.engine import SignalEngine, _length_buckets
    from classifiers.spec import INPUTS

    engine = SignalEngine.load(model_dir)
    if batch == 1:
        rows = engine.model_rows(json.loads(chat_body("auto", 1))["messages"])
        lengths = np.array([len(row) for row in rows])
        chunks = _length_buckets(np.argsort(lengths, kind="stable"), lengths, engine.max_batch)
    else:
        turns = [json.loads(chat_body("auto", n))["messages"][1]["content"] for n in range(batch)]
        rows = [engine.model_rows(turn)[0] for turn in turns]
        chunks = [np.arange(batch)]
    feeds = []
    for chunk in chunks:
        ids, mask = engine._padded(rows, np.array(chunk))
        feeds.append({INPUTS[0]: ids, INPUTS[1]: mask})  # one run each, as the engine runs them
    names = list(engine._outputs)
    engine.close()
    return names, feeds


def session(model: Path, spin_us: int | None) -> Any:
    import onnxruntime as ort

    options = spin_options(None, spin_us)  # every core, as the router
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "classifiers" / "models")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=150, help="a variant's requests a round")
    parser.add_argument("--gap-ms", type=float, default=2.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from classifiers.session import spin_is_bounded

    if not spin_is_bounded():
        print("this onnxruntime ignores spin_duration_us: every bounded row would be the default")
    names, feeds = feeds_for(args.model_dir, args.batch)
    model = args.model_dir / "signals.int8.onnx"
    sessions = {name: session(model, spin) for name, spin in VARIANTS}
    p50s: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    cpu: dict[str, float] = dict.fromkeys(sessions, 0.0)
    for _ in range(args.rounds):
        for name, run in sessions.items():
            for _ in range(20):  # warm this session's pool and arena
                for feed in feeds:
                    run.run(names, feed)
            times = []
            started = time.process_time()
            for _ in range(args.requests):
                begun = time.perf_counter()
                for feed in feeds:
                    run.run(names, feed)
                times.append(time.perf_counter() - begun)
                time.sleep(args.gap_ms / 1000)
            cpu[name] += time.process_time() - started
            p50s[name].append(statistics.median(times) * 1000)
    rows = []
    for name, spin in VARIANTS:
        rows.append({
            "variant": name,
            "spin_us": spin,
            "p50_ms": round(statistics.median(p50s[name]), 3),
            "p50_ms_rounds": [round(p, 3) for p in p50s[name]],
            "cpu_ms_per_request": round(cpu[name] / (args.rounds * args.requests) * 1000, 3),
        })  # fmt: skip
        row = rows[-1]
        print(f"{name:28} p50 {row['p50_ms']:7.3f} ms   CPU {row['cpu_ms_per_request']:6.3f} ms")
    figures = {
        "benchmark": "spin",
        "command": "python bench/spin.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine(),
        "model_dir": str(args.model_dir),
        "batch": args.batch,
        "runs_per_request": len(feeds),
        "gap_ms": args.gap_ms,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
