#!/usr/bin/env python3
"""Signal cache: the classifier's time per turn of a 10-turn conversation, without and with it.

    python bench/signal_cache.py [--repeats 9] [--out bench/results/signal_cache.json]

The conversation: a repeated system prompt (~100 tokens), then 10 user turns of real questions
(`examples/data/mmlu_pro_dev.jsonl`, 50-200 tokens each) and, between them, assistant turns of
the same size (other questions of that file stand in for the replies: the encoder's cost depends
on a row's tokens, not on who wrote them). Turn k is the request a client sends for it: the
system prompt and every message so far, ending with user turn k.

Measured on the shipped model (`classifiers/models/`), one request at a time:
  - cold: no cache, every turn's request alone;
  - warm: the cache on and emptied before each repetition, then turns 1..10 in order, as a
    client resends the history;
  - the 10th turn's newest message alone (a one-message request, no cache).
Time is `classify_messages` wall time (tokenize, plan, encoder, decode), median of the repeats;
with the rows each turn ran through the encoder, and how far the warm signals are from the cold:
next to how far the cold signals move when the same request shares a batch with the previous
turn's (the int8 model's activations are quantized per batch, so a row's scores depend on the
rows it runs with, cache or not).

With `--redis`, also a shared cache (`classifiers.cache_redis`) on a loopback redis-server it
starts: replica A classifies turns 1..9, replica B (its own engine) then turn 10, reading A's rows
in one MGET; and the round trip itself (MGET of turn 10's rows, and the write of its new rows)
next to the encoder's time for the same rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from classifiers.cache import row_key
from classifiers.cache_redis import RedisRowCache, encode_row
from classifiers.engine import SignalEngine
from classifiers.signals import Signals

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy"))
SOURCE = ROOT / "examples" / "data" / "mmlu_pro_dev.jsonl"
TURNS = 10
SYSTEM = (
    "You are a patient tutor for university students preparing for their exams. Explain each "
    "step of your reasoning before you give the answer, name the principle or formula you use, "
    "and point out the most common mistake students make on this kind of question. When a "
    "question is ambiguous, say which reading you chose and why. Keep answers under three "
    "hundred words, use plain language, and never invent citations or data that the student "
    "did not give you. If the student writes in another language, answer in that language."
)

Messages = list[dict[str, str]]


def conversation(engine: SignalEngine) -> Messages:
    """The system prompt, then 10 user turns and 9 replies between them, 50-200 tokens each."""
    texts = [json.loads(line)["text"] for line in SOURCE.read_text().splitlines()]
    sized = [t for t in texts if 50 <= len(engine.tokenizer.encode([t])[0]) <= 200]
    messages: Messages = [{"role": "system", "content": SYSTEM}]
    for turn in range(TURNS):
        if turn:
            reply = "Let us work through it step by step. " + sized[2 * turn + 1]
            messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": "Please help me with this. " + sized[2 * turn]})
    return messages


def turn(messages: Messages, k: int) -> Messages:
    """The request for user turn k (1-based): the system prompt and everything up to it."""
    return messages[: 2 * k]


async def timed(engine: SignalEngine, request: Messages) -> tuple[float, Signals, int]:
    before = engine.cache_stats.rows_encoded
    start = time.perf_counter()
    signals = await engine.classify_messages(request)
    elapsed = (time.perf_counter() - start) * 1000
    return elapsed, signals, engine.cache_stats.rows_encoded - before


def encoder_ms(signals: Signals) -> float:
    """The encoder's share of the request's time: its last batch's `session.run` calls (all of
    them for a warm turn, whose few rows run in one step)."""
    timing = signals.timing
    assert timing is not None
    return (timing.inference_end_ns - timing.inference_start_ns) / 1e6


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def same(a: Signals, b: Signals) -> bool:
    """The same domain label, attack verdict and PII spans (type, offsets, message)."""
    spans = [[(p.type, p.start, p.end, p.message) for p in s.pii] for s in (a, b)]
    labels = [(s.domain.label, s.prompt_attack.flagged) for s in (a, b)]
    return spans[0] == spans[1] and labels[0] == labels[1]


def score_diff(a: Signals, b: Signals) -> float:
    """The largest difference of any score (attack, difficulty, each domain's probability)."""
    return round(
        max(
            abs(a.prompt_attack.score - b.prompt_attack.score),
            abs(a.difficulty.score - b.difficulty.score),
            *(abs(a.domain.scores[d] - b.domain.scores[d]) for d in a.domain.scores),
        ),
        4,
    )


def median(samples: list[float]) -> float:
    return round(statistics.median(samples), 2)


async def measure(repeats: int, threads: int | None) -> dict[str, Any]:
    cold = SignalEngine.load(force_cpu=True, intra_op_threads=threads)
    warm = SignalEngine.load(force_cpu=True, intra_op_threads=threads, cache_entries=4096)
    assert warm.row_cache is not None and hasattr(warm.row_cache, "clear")
    messages = conversation(cold)
    requests = [turn(messages, k) for k in range(1, TURNS + 1)]
    newest = [{"role": "user", "content": messages[-1]["content"]}]
    for request in requests:  # warm-up: onnxruntime's first runs of each shape are slower
        await cold.classify_messages(request)
        await warm.classify_messages(request)
    cold_ms: list[list[float]] = [[] for _ in requests]
    warm_ms: list[list[float]] = [[] for _ in requests]
    warm_encoder: list[list[float]] = [[] for _ in requests]
    alone_ms: list[float] = []
    resend_ms: list[float] = []
    cold_rows, warm_rows = [0] * TURNS, [0] * TURNS
    cold_signals: list[Signals] = []
    warm_signals: list[Signals] = []
    for _ in range(repeats):
        warm.row_cache.clear()
        cold_signals, warm_signals = [], []
        for k, request in enumerate(requests):
            ms, signals, rows = await timed(cold, request)
            cold_ms[k].append(ms)
            cold_rows[k] = rows
            cold_signals.append(signals)
            ms, signals, rows = await timed(warm, request)
            warm_ms[k].append(ms)
            warm_encoder[k].append(encoder_ms(signals))
            warm_rows[k] = rows
            warm_signals.append(signals)
        alone_ms.append((await timed(cold, newest))[0])
        resend_ms.append((await timed(warm, requests[-1]))[0])  # every row cached
    _, alone, alone_rows = await timed(cold, newest)
    tokens = [cold.tokenizer.encode([m["content"]])[0] for m in messages]
    stats = warm.cache_stats
    cold.close()
    warm.close()
    batched = [cold.classify_batch([r, requests[max(0, k - 1)]])[0] for k, r in enumerate(requests)]
    turns = []
    for k in range(TURNS):
        c, w = cold_signals[k], warm_signals[k]
        turns.append(
            {
                "turn": k + 1,
                "messages": len(requests[k]),
                "tokens": c.tokens,
                "cold_ms": median(cold_ms[k]),
                "warm_ms": median(warm_ms[k]),
                "warm_encoder_ms": median(warm_encoder[k]),
                "cold_rows": cold_rows[k],
                "warm_rows_encoded": warm_rows[k],
                "warm_rows_cached": w.cached_rows,
                "same_labels": same(c, w),
                "max_score_diff": score_diff(c, w),
                "batched_same_labels": same(c, batched[k]),
                "batched_max_score_diff": score_diff(c, batched[k]),
            }
        )
    return {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "intra_op_threads": threads,
        },
        "repeats": repeats,
        "message_tokens": [len(t) for t in tokens],
        "turns": turns,
        "newest_alone": {
            "tokens": alone.tokens,
            "ms": median(alone_ms),
            "rows": alone_rows,
        },
        "turn_10_resent_all_cached_ms": median(resend_ms),
        "cache_after_last_repeat": {
            "entries": stats.entries,
            "bytes": stats.bytes,
            "hits": stats.hits,
            "misses": stats.misses,
        },
    }


async def measure_redis(repeats: int, threads: int | None) -> dict[str, Any]:
    from devstack import Processes, free_port, redis_server_command

    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        processes = Processes(Path(workdir))
        processes.spawn("redis", redis_server_command(port, Path(workdir)))
        try:
            processes.wait_port("redis", port, timeout=10)
            return await _measure_redis(f"redis://127.0.0.1:{port}/0", repeats, threads)
        finally:
            processes.stop("redis")


async def _measure_redis(url: str, repeats: int, threads: int | None) -> dict[str, Any]:
    base = SignalEngine.load(force_cpu=True, intra_op_threads=threads)
    messages = conversation(base)
    requests = [turn(messages, k) for k in range(1, TURNS + 1)]
    caches = [RedisRowCache(url, ttl_s=600, timeout_s=1.0) for _ in range(2)]
    a, b = (
        SignalEngine(base.session, base.tokenizer, base.spec, row_cache=cache, fingerprint=fp)
        for cache, fp in zip(caches, (b"bench", b"bench"), strict=True)
    )
    turn10_ms: list[float] = []
    cached = encoded = 0
    for n in range(repeats + 1):
        a.fingerprint = b.fingerprint = f"bench-{n}".encode()  # an empty shared cache each time
        for request in requests[:-1]:
            await a.classify_messages(request)
        ms, signals, encoded = await timed(b, requests[-1])
        cached = signals.cached_rows
        if n:  # the first round warms onnxruntime and the connections
            turn10_ms.append(ms)
    # The round trip alone, against the encoder's time for the same rows.
    rows = base.model_rows(requests[-1])
    keys = [row_key(b.fingerprint, row) for row in rows]
    outputs = base._forward(rows)
    items = [(key, outputs.row(i)) for i, key in enumerate(keys)]
    get_ms, put_ms, encode_ms = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        caches[1].put_many(items)
        put_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        found = caches[1].get_many(keys)
        get_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        for at in range(0, len(rows), base.step_rows):  # in steps, as the engine runs them
            base._forward(rows[at : at + base.step_rows])
        encode_ms.append((time.perf_counter() - start) * 1000)
        assert all(f is not None for f in found)
    size = sum(len(encode_row(output)) for _, output in items)
    for engine in (base, a, b):
        engine.close()
    for cache in caches:
        cache.close()
    return {
        "turn_10_on_another_replica_ms": median(turn10_ms),
        "turn_10_rows_cached": cached,
        "turn_10_rows_encoded": encoded,
        "rows": len(rows),
        "row_bytes": size,
        "mget_ms": median(get_ms),
        "write_ms": median(put_ms),
        "encode_same_rows_ms": median(encode_ms),
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| turn | messages | tokens | cold ms | warm ms (encoder) | cold rows "
        "| warm rows encoded | warm rows cached | warm: same labels and PII (max score diff) "
        "| cold, batched with the turn before: same (max diff) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for t in result["turns"]:
        lines.append(
            f"| {t['turn']} | {t['messages']} | {t['tokens']} "
            f"| {t['cold_ms']} | {t['warm_ms']} ({t['warm_encoder_ms']}) "
            f"| {t['cold_rows']} | {t['warm_rows_encoded']} | {t['warm_rows_cached']} "
            f"| {'yes' if t['same_labels'] else 'no'} ({t['max_score_diff']}) "
            f"| {'yes' if t['batched_same_labels'] else 'no'} ({t['batched_max_score_diff']}) |"
        )
    alone = result["newest_alone"]
    lines.append(
        f"| turn 10's newest message alone | 1 | {alone['tokens']} | {alone['ms']} | | "
        f"{alone['rows']} | | | | |"
    )
    lines.append(
        f"| turn 10 resent (every row cached) | 20 | | | {result['turn_10_resent_all_cached_ms']} "
        "| | 0 | | | |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--redis", action="store_true", help="also measure a shared Redis cache")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "signal_cache.json"
    )
    args = parser.parse_args()
    result = asyncio.run(measure(args.repeats, args.threads))
    if args.redis:
        result["redis"] = asyncio.run(measure_redis(args.repeats, args.threads))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(json.dumps(result["machine"]), json.dumps(result["cache_after_last_repeat"]))
    if args.redis:
        print(json.dumps(result["redis"]))


if __name__ == "__main__":
    main()
