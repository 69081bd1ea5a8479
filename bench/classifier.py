#!/usr/bin/env python3
"""Classifier cost: the fused signals model through the runtime vs the bare onnxruntime forward.

    python bench/classifier.py [--quick] [--out bench/results/classifier.json]
        [--provider cpu|cuda] [--model-dir DIR]

Measures, on the machine it runs on (provider and threads recorded):
  1. single request latency p50/p99 at 16..512 tokens: `SignalEngine.classify_text` (tokenize,
     windows, all four heads, PII decoding and validators) next to the bare `session.run` of the
     same graph on the same token ids, so the serving overhead is visible;
  2. throughput under concurrency with micro-batching (128-token prompts);
  3. fused vs separate: one forward for all heads vs four forwards of the same-size encoder, the
     cost a one-encoder-per-task design pays.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.engine import DEFAULT_MODEL_DIR, SignalEngine
from classifiers.session import create_session
from classifiers.spec import INPUTS, SPEC_FILE, TOKENIZER_FILE, ModelSpec
from classifiers.windows import TextTokenizer

LENGTHS = (16, 64, 128, 256, 512)
SOURCE = Path(__file__).resolve().parent.parent / "examples" / "data" / "mmlu_pro_dev.jsonl"


def prompt_of(engine: SignalEngine, tokens: int) -> str:
    """Real question text cut to exactly `tokens` word pieces."""
    words: list[str] = []
    for line in SOURCE.read_text().splitlines():
        words += json.loads(line)["text"].split()
        if len(words) > tokens * 2:
            break
    encoding = engine.tokenizer._tokenizer.encode(" ".join(words), add_special_tokens=False)
    end = encoding.offsets[tokens - 1][1]
    return " ".join(words)[:end]


def prompts_of(engine: SignalEngine, tokens: int, count: int) -> list[str]:
    """`count` different texts of exactly `tokens` word pieces, each a cut of the question text
    from another starting word: within a batch the engine encodes identical rows once, so a
    load of one repeated text would measure that, not the encoder."""
    words: list[str] = []
    for line in SOURCE.read_text().splitlines():
        words += json.loads(line)["text"].split()
        if len(words) > tokens * 2 + 4 * count:
            break
    texts = []
    for k in range(count):
        start = (4 * k) % max(1, len(words) - tokens * 2)
        joined = " ".join(words[start : start + tokens * 2])
        encoding = engine.tokenizer._tokenizer.encode(joined, add_special_tokens=False)
        texts.append(joined[: encoding.offsets[tokens - 1][1]])
    return texts


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "p50": round(pick(0.5), 3),
        "p99": round(pick(0.99), 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def _until(cap_s: float | None) -> float:
    """The perf_counter time a capped section stops taking samples (inf: no cap)."""
    return math.inf if cap_s is None else time.perf_counter() + cap_s


def filler_id(engine: SignalEngine) -> int:
    """A word piece to fill rows with (the forward's cost does not depend on which)."""
    return min(1000, engine.tokenizer._tokenizer.get_vocab_size() - 1)


def bare_forward(
    engine: SignalEngine,
    tokens: int,
    repeats: int,
    passes: int = 1,
    *,
    batch: int = 1,
    warmup: int = 5,
    cap_s: float | None = None,
) -> dict[str, float]:
    """`session.run` of `batch` rows of `tokens` tokens (at most the window): latency in ms of
    `passes` runs, `repeats` times or until `cap_s` seconds have gone (at least 3 samples)."""
    ids = np.full((batch, min(tokens, engine.max_length - 2) + 2), filler_id(engine), np.int64)
    ids[:, 0], ids[:, -1] = engine.tokenizer.cls_id, engine.tokenizer.sep_id
    mask = np.ones_like(ids)
    feed = {INPUTS[0]: ids, INPUTS[1]: mask}
    outputs = list(engine.spec.outputs)  # the harm head's too, when the model has one
    for _ in range(warmup):
        engine.session.run(outputs, feed)
    samples: list[float] = []
    until = _until(cap_s)
    while len(samples) < repeats and (len(samples) < 3 or time.perf_counter() < until):
        start = time.perf_counter()
        for _ in range(passes):
            engine.session.run(outputs, feed)
        samples.append((time.perf_counter() - start) * 1000)
    return {**percentiles(samples), "runs": len(samples)}


async def single(
    engine: SignalEngine, text: str, repeats: int, *, warmup: int = 5, cap_s: float | None = None
) -> dict[str, float]:
    """`classify_text` latency in ms, `repeats` times or until `cap_s` (at least 3 samples)."""
    for _ in range(warmup):
        await engine.classify_text(text)
    samples: list[float] = []
    until = _until(cap_s)
    while len(samples) < repeats and (len(samples) < 3 or time.perf_counter() < until):
        start = time.perf_counter()
        await engine.classify_text(text)
        samples.append((time.perf_counter() - start) * 1000)
    return {**percentiles(samples), "runs": len(samples)}


async def concurrent(
    engine: SignalEngine,
    texts: list[str],
    concurrency: int,
    total: int,
    cap_s: float | None = None,
) -> dict[str, Any]:
    """`concurrency` closed-loop callers of `classify_text` (micro-batched) over `texts` in
    turn (`prompts_of`: distinct ones), `total` requests or until `cap_s`."""
    latencies: list[float] = []
    remaining = total
    until = _until(cap_s)

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < until:
            remaining -= 1
            text = texts[remaining % len(texts)]
            start = time.perf_counter()
            await engine.classify_text(text)
            latencies.append((time.perf_counter() - start) * 1000)

    batches_before = engine.batch_stats.batches
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    batches = engine.batch_stats.batches - batches_before
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1),
        "mean_batch": round(len(latencies) / max(batches, 1), 2),
        **percentiles(latencies),
    }


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` says."""
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )


def machine(engine: SignalEngine) -> dict[str, Any]:
    import os

    return {
        "cpu": cpu_name(),
        "cores": len(os.sched_getaffinity(0)),
        "provider": engine.provider,
        "python": platform.python_version(),
        "model": engine.spec.version,
        "max_length": engine.max_length,
    }


PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def load_engine(
    provider: str, model_dir: Path | None = None, graph: str | None = None, **options: Any
) -> SignalEngine:
    """The engine on `provider` (cpu or cuda), with another graph file of `model_dir` than
    signals.int8.onnx if `graph` names one (an fp32 or fp16 export, for a GPU); exits loudly
    when CUDA was asked for and the session fell back to the CPU (`create_session` logs why),
    rather than time the wrong one."""
    force_cpu = provider == "cpu"
    if graph is None:
        engine = SignalEngine.load(model_dir, force_cpu=force_cpu, **options)
    else:
        directory = model_dir or DEFAULT_MODEL_DIR
        session = create_session(directory / graph, force_cpu=force_cpu)
        tokenizer = TextTokenizer.from_file(directory / TOKENIZER_FILE)
        engine = SignalEngine(session, tokenizer, ModelSpec.load(directory / SPEC_FILE), **options)
    if engine.provider != PROVIDERS[provider]:
        engine.close()
        raise SystemExit(
            f"asked for {PROVIDERS[provider]}, but the session runs on {engine.provider} "
            "(the log line 'onnx session ready' above says why); nothing was measured"
        )
    return engine


async def main(
    quick: bool, out: Path, provider: str = "cpu", model_dir: Path | None = None
) -> dict[str, Any]:
    repeats = 30 if quick else 200
    results: dict[str, Any] = {}
    for max_length in (256, 512):
        engine = load_engine(provider, model_dir, max_length=max_length)
        rows = []
        for tokens in LENGTHS:
            text = prompt_of(engine, tokens)
            runtime = await single(engine, text, repeats)
            bare = bare_forward(engine, tokens, repeats)
            rows.append(
                {
                    "tokens": tokens,
                    "runtime_ms": runtime,
                    "bare_forward_ms": bare,
                    "overhead_ratio_p50": round(runtime["p50"] / bare["p50"], 2),
                }
            )
        results[f"single_max_length_{max_length}"] = rows
        if max_length == 256:
            results["machine"] = machine(engine)
            texts = prompts_of(engine, 128, 256)
            total = 200 if quick else 1000
            results["concurrency_128_tokens"] = [
                await concurrent(engine, texts, c, total) for c in (1, 4, 16, 64)
            ]
            results["fused_vs_separate_128_tokens"] = {
                "fused_one_pass_ms": bare_forward(engine, 128, repeats),
                "four_task_passes_ms": bare_forward(engine, 128, repeats, passes=4),
            }
        engine.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['provider']}, model {m['model']}.",
        "",
        row("tokens", "runtime p50 / p99 ms (window 256)", "bare forward p50 ms", "runtime / bare",
            "runtime p50 / p99 ms (window 512)", "bare p50 (window 512)"),
        "|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    pairs = zip(results["single_max_length_256"], results["single_max_length_512"], strict=True)
    for a, b in pairs:
        ra, rb = a["runtime_ms"], b["runtime_ms"]
        lines.append(
            row(a["tokens"], f"{ra['p50']} / {ra['p99']}", a["bare_forward_ms"]["p50"],
                a["overhead_ratio_p50"], f"{rb['p50']} / {rb['p99']}", b["bare_forward_ms"]["p50"])
        )  # fmt: skip
    lines += [
        "",
        row("concurrency (128 tokens)", "classifications/s", "mean batch", "p50 ms", "p99 ms"),
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results["concurrency_128_tokens"]:
        lines.append(row(r["concurrency"], r["per_second"], r["mean_batch"], r["p50"], r["p99"]))
    fused = results["fused_vs_separate_128_tokens"]
    lines += [
        "",
        f"Fused vs separate (128 tokens, bare forward): one pass for all four heads p50 "
        f"{fused['fused_one_pass_ms']['p50']} ms; four same-size per-task passes p50 "
        f"{fused['four_task_passes_ms']['p50']} ms.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/results/classifier.json"))
    parser.add_argument("--provider", choices=sorted(PROVIDERS), default="cpu")
    parser.add_argument("--model-dir", type=Path, help="default: the shipped classifiers/models")
    args = parser.parse_args()
    print(table(asyncio.run(main(args.quick, args.out, args.provider, args.model_dir))))
