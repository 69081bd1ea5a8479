#!/usr/bin/env python3
"""The classifier on a GPU: what `bench/gpu.sh` runs once its venv is ready.

    python bench/gpu.py [MODEL_DIR ...] [--graph FILE] [--out DIR] [--budget-s 420] [--cpu-smoke]

For each model directory (default: every profile of `classifiers.profiles` whose graph is
there, classifiers/models and classifiers/models/fast; each holds signals.int8.onnx,
signals.json and tokenizer.json), on CUDA:

  check        the session runs on CUDAExecutionProvider (`session.get_providers()`), else exit
               3 having measured nothing; and where each graph node runs (an onnxruntime
               profile of one forward): nodes left on the CPU cost a copy each way, so they are
               listed;
  latency      p50/p99 of one request at 128 and 512 tokens, through `SignalEngine.classify_text`
               and the bare `session.run` of the same rows, with the router's window (256
               tokens: a 512-token prompt is several rows) and with a 512-token window;
  batch        the bare forward's rows/s at batch 1, 2, 4, 8, 16, 32, 64 (128-token rows);
  concurrency  classifications/s at 1, 4, 16, 64 closed-loop callers through the engine's
               asyncio path (micro-batched: bench/classifier.py's `concurrent`).

Every section has a hard time cap, and the whole run `--budget-s` (default 420 s: with the
install, under 8 minutes); a section the budget cannot fit is recorded as skipped. Writes
gpu.json and gpu.md to `--out` (default: $OUT if set, else bench/results/gpu/). `--cpu-smoke`
runs every section with tiny counts on the CPU provider: a check of the script, not a figure.
`--graph FILE` measures another graph of each directory (an fp32 or fp16 export) in place of
signals.int8.onnx, with the same tokenizer and signals.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.classifier import (  # noqa: E402
    PROVIDERS,
    bare_forward,
    concurrent,
    cpu_name,
    filler_id,
    load_engine,
    prompt_of,
    prompts_of,
    single,
)
from classifiers.engine import SignalEngine  # noqa: E402
from classifiers.profiles import PROFILES  # noqa: E402
from classifiers.spec import MODEL_FILE  # noqa: E402

LENGTHS = (128, 512)
WINDOWS = (256, 512)
BATCHES = (1, 2, 4, 8, 16, 32, 64)
CONCURRENCY = (1, 4, 16, 64)


@dataclass(frozen=True)
class Counts:
    """How much each section measures, and its hard cap in seconds."""

    repeats: int  # latency samples per case
    warmup: int
    latency_cap_s: float  # per case (8 per model)
    batch_cap_s: float  # per batch size (7 per model)
    requests: int  # per concurrency level
    concurrency_cap_s: float  # per level (4 per model)


FULL = Counts(
    repeats=300, warmup=20, latency_cap_s=6.0, batch_cap_s=4.0, requests=4000, concurrency_cap_s=8.0
)
SMOKE = Counts(
    repeats=3, warmup=1, latency_cap_s=0.5, batch_cap_s=0.3, requests=8, concurrency_cap_s=1.0
)


class Budget:
    """The run's time budget: a section starts only if its cap still fits."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, cap_s: float) -> bool:
        return self.left() >= cap_s


def default_model_dirs() -> list[Path]:
    """Every shipped profile's directory that holds its graph (`classifiers.profiles`)."""
    return [path for path in PROFILES.values() if (path / MODEL_FILE).is_file()]


def shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def node_placement(model: Path, provider: str, filler: int) -> dict[str, Any]:
    """Which provider runs each node of one forward (from an onnxruntime profile)."""
    import numpy as np
    import onnxruntime as ort

    from classifiers.session import session_options

    options = session_options()
    with tempfile.TemporaryDirectory(prefix="gpu-profile-") as work:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(work) / "profile")
        providers = (
            [PROVIDERS[provider], PROVIDERS["cpu"]] if provider == "cuda" else [PROVIDERS["cpu"]]
        )
        session = ort.InferenceSession(str(model), options, providers=providers)
        ids = np.full((1, 130), filler, dtype=np.int64)
        session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes: dict[str, str] = {}
    for event in events:
        args = event.get("args", {})
        if event.get("cat") == "Node" and "provider" in args:
            nodes[event["name"].removesuffix("_kernel_time")] = args["provider"]
    counts: dict[str, int] = {}
    for where in nodes.values():
        counts[where] = counts.get(where, 0) + 1
    on_cpu = sorted(n for n, where in nodes.items() if where == PROVIDERS["cpu"])
    return {"nodes_by_provider": counts, "cpu_nodes": on_cpu[:20], "cpu_node_count": len(on_cpu)}


def check(engine: SignalEngine, model: Path, provider: str) -> dict[str, Any]:
    """The provider check: the session's providers, and where its nodes run."""
    result = {"providers": list(engine.session.get_providers()), "runs_on": engine.provider}
    result |= node_placement(model, provider, filler_id(engine))
    on_cpu = result["cpu_node_count"]
    if provider == "cuda" and on_cpu:
        print(
            f"  WARNING: {on_cpu} of the graph's nodes run on the CPU (each one a copy each "
            f"way): {', '.join(result['cpu_nodes'][:8])}",
            flush=True,
        )
    return result


def section(
    name: str,
    budget: Budget,
    limit_s: float,
    skipped: list[str],
    run: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> Any:
    """`run(*args, **kwargs)`, one case capped at `limit_s`, if the budget fits it; else None,
    recorded as skipped."""
    return run(*args, **kwargs) if _fits(name, budget, limit_s, skipped) else None


def _fits(name: str, budget: Budget, limit_s: float, skipped: list[str]) -> bool:
    """Whether the case fits the budget; one that does not is recorded as skipped."""
    if budget.fits(limit_s):
        return True
    skipped.append(name)
    print(f"  {name}: skipped, {budget.left():.0f} s of the budget left", flush=True)
    return False


async def measure_model(
    model_dir: Path, graph: str, provider: str, counts: Counts, budget: Budget
) -> dict[str, Any]:
    skipped: list[str] = []
    result: dict[str, Any] = {"model_dir": shown(model_dir), "graph": graph, "skipped": skipped}
    latency: list[dict[str, Any]] = []
    for window in WINDOWS:
        engine = load_engine(provider, model_dir, graph, max_length=window)
        try:
            if window == WINDOWS[0]:
                result["model"] = engine.spec.version
                result["check"] = check(engine, model_dir / graph, provider)
                print(
                    f"  provider check: {result['check']['runs_on']} "
                    f"{result['check']['nodes_by_provider']}",
                    flush=True,
                )
            for tokens in LENGTHS:
                text = prompt_of(engine, tokens)
                case = f"latency window {window} tokens {tokens}"
                cap = counts.latency_cap_s
                runtime = await _capped(
                    case + " engine",
                    budget,
                    cap,
                    skipped,
                    single(engine, text, counts.repeats, warmup=counts.warmup, cap_s=cap),
                )
                bare = section(
                    case + " bare",
                    budget,
                    cap,
                    skipped,
                    bare_forward,
                    engine,
                    tokens,
                    counts.repeats,
                    warmup=counts.warmup,
                    cap_s=cap,
                )
                row = {
                    "window": window,
                    "tokens": tokens,
                    "rows": len(engine.model_rows(text)),
                    "engine_ms": runtime,
                    "bare_forward_ms": bare,
                }
                latency.append(row)
                print(
                    f"  {case}: engine {_p(runtime)}, bare {_p(bare)} ms ({row['rows']} row(s))",
                    flush=True,
                )
            if window == WINDOWS[0]:
                result["batch_128_tokens"] = batches(engine, counts, budget, skipped)
                result["concurrency_128_tokens"] = await concurrency(
                    engine, counts, budget, skipped
                )
        finally:
            engine.close()
    result["latency"] = latency
    return result


async def _capped(name: str, budget: Budget, cap_s: float, skipped: list[str], work: Any) -> Any:
    """`await work`, an async case capped at `cap_s`, if the budget fits it (else None)."""
    if _fits(name, budget, cap_s, skipped):
        return await work
    work.close()  # the coroutine never runs
    return None


def batches(
    engine: SignalEngine, counts: Counts, budget: Budget, skipped: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for batch in BATCHES:
        cap = counts.batch_cap_s
        timing = section(
            f"batch {batch}",
            budget,
            cap,
            skipped,
            bare_forward,
            engine,
            128,
            10**6,
            batch=batch,
            warmup=counts.warmup,
            cap_s=cap,
        )
        if timing is None:
            continue
        per_second = round(batch * 1000 / timing["mean"], 1)
        rows.append({"batch": batch, "rows_per_s": per_second, **timing})
        print(f"  batch {batch:>2}: {per_second} rows/s, p50 {timing['p50']} ms", flush=True)
    return rows


async def concurrency(
    engine: SignalEngine, counts: Counts, budget: Budget, skipped: list[str]
) -> list[dict[str, Any]]:
    texts = prompts_of(engine, 128, 256)
    rows = []
    for level in CONCURRENCY:
        cap = counts.concurrency_cap_s
        got = await _capped(
            f"concurrency {level}",
            budget,
            cap,
            skipped,
            concurrent(engine, texts, level, counts.requests, cap_s=cap),
        )
        if got is not None:
            rows.append(got)
            print(
                f"  concurrency {level:>2}: {got['per_second']} classifications/s, "
                f"mean batch {got['mean_batch']}, p50 {got['p50']} ms",
                flush=True,
            )
    return rows


def _p(timing: dict[str, Any] | None) -> str:
    return "skipped" if timing is None else f"p50 {timing['p50']} / p99 {timing['p99']}"


def preload_cuda() -> None:
    """Load the CUDA and cuDNN libraries of the nvidia-* wheels (onnxruntime-gpu[cuda,cudnn])
    before the first session: without a CUDA toolkit on the machine, they are found only so."""
    import onnxruntime as ort

    try:
        ort.preload_dlls()
    except Exception as error:  # then the session's own load reports what is missing
        print(f"onnxruntime.preload_dlls failed: {error}", file=sys.stderr)


def gpu_name() -> str | None:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def machine(provider: str) -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "gpu": gpu_name(),
        "cpu": cpu_name(),
        "cores": len(os.sched_getaffinity(0)),
        "provider_asked": PROVIDERS[provider],
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "python": platform.python_version(),
        "load1_before": round(os.getloadavg()[0], 2),
    }


def markdown(figures: dict[str, Any]) -> str:
    m = figures["machine"]
    lines = [
        f"`{figures['command']}` on {m['gpu'] or 'no GPU'} ({m['cpu']}, {m['cores']} cores), "
        f"onnxruntime {m['onnxruntime']}, {figures['started_at']}"
        + (" — CPU SMOKE RUN, not a figure" if figures["cpu_smoke"] else "")
        + ".",
    ]
    cuda = not figures["cpu_smoke"]
    for model in figures["models"]:
        c = model.get("check", {})
        lines += [
            "",
            f"### {model['model_dir']}/{model['graph']} ({model.get('model', '?')})",
            "",
            f"Runs on {c.get('runs_on')}; nodes by provider {c.get('nodes_by_provider')}"
            + (
                f"; left on the CPU: {', '.join(c['cpu_nodes'])}"
                if cuda and c.get("cpu_nodes")
                else ""
            )
            + ".",
            "",
            "| window | tokens | rows | engine p50 / p99 ms | bare forward p50 / p99 ms |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in model.get("latency", []):
            lines.append(
                f"| {row['window']} | {row['tokens']} | {row['rows']} | "
                f"{_cell(row['engine_ms'])} | {_cell(row['bare_forward_ms'])} |"
            )
        lines += ["", "| batch (128 tokens) | rows/s | p50 ms | p99 ms |", "|---:|---:|---:|---:|"]
        for row in model.get("batch_128_tokens", []):
            lines.append(f"| {row['batch']} | {row['rows_per_s']} | {row['p50']} | {row['p99']} |")
        lines += [
            "",
            "| concurrency (128 tokens) | classifications/s | mean batch | p50 ms | p99 ms |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in model.get("concurrency_128_tokens", []):
            lines.append(
                f"| {row['concurrency']} | {row['per_second']} | {row['mean_batch']} | "
                f"{row['p50']} | {row['p99']} |"
            )
        if model.get("skipped"):
            lines += ["", f"Skipped (time budget): {', '.join(model['skipped'])}."]
    return "\n".join(lines)


def _cell(timing: dict[str, Any] | None) -> str:
    return "skipped" if timing is None else f"{timing['p50']} / {timing['p99']}"


async def run(
    model_dirs: list[Path],
    graph: str,
    provider: str,
    counts: Counts,
    budget_s: float,
    command: str,
) -> dict[str, Any]:
    budget = Budget(budget_s)
    started = datetime.datetime.now(datetime.UTC)
    figures: dict[str, Any] = {
        "benchmark": "gpu",
        "command": command,
        "cpu_smoke": provider == "cpu",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(provider),
        "budget_s": budget_s,
        "counts": counts.__dict__,
        "models": [],
    }
    for model_dir in model_dirs:
        print(f"{shown(model_dir)} on {PROVIDERS[provider]}", flush=True)
        figures["models"].append(await measure_model(model_dir, graph, provider, counts, budget))
    figures["duration_s"] = round(
        (datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1
    )
    figures["machine"]["load1_after"] = round(os.getloadavg()[0], 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dirs", nargs="*", type=Path, help="default: every profile there")
    parser.add_argument("--out", type=Path, help="default: $OUT, else bench/results/gpu/")
    parser.add_argument("--budget-s", type=float, help="the whole run's cap (default 420)")
    parser.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="tiny counts on the CPU provider: checks the script",
    )
    parser.add_argument(
        "--graph",
        default=MODEL_FILE,
        help=f"the graph file of each model directory (default {MODEL_FILE}; e.g. an fp16 "
        "export, which a GPU may run whole where int8 nodes fall back to the CPU)",
    )
    args = parser.parse_args(argv)
    model_dirs = args.model_dirs or default_model_dirs()
    for directory in model_dirs:
        if not (directory / args.graph).is_file():
            parser.error(f"{directory} has no {args.graph}")
    out = args.out or Path(os.environ.get("OUT") or REPO / "bench" / "results" / "gpu")
    provider, counts = ("cpu", SMOKE) if args.cpu_smoke else ("cuda", FULL)
    budget_s = args.budget_s or (120.0 if args.cpu_smoke else 420.0)
    command = "bash bench/gpu.sh " + " ".join(argv if argv is not None else sys.argv[1:])
    if provider == "cuda":
        preload_cuda()
    try:
        figures = asyncio.run(
            run(model_dirs, args.graph, provider, counts, budget_s, command.strip())
        )
    except SystemExit as error:  # load_engine: the session is not on the provider asked for
        if not isinstance(error.code, str):
            raise
        import onnxruntime as ort

        print(
            f"CUDA PROVIDER CHECK FAILED: {error.code}; onnxruntime {ort.__version__} has "
            f"{ort.get_available_providers()}",
            file=sys.stderr,
        )
        return 3
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(figures, indent=2) + "\n")
    table = markdown(figures)
    (out / "gpu.md").write_text(table + "\n")
    print(table)
    print(f"wrote {out / 'gpu.json'} and {out / 'gpu.md'} in {figures['duration_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
