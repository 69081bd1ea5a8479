#!/usr/bin/env python3
"""Classification cost by prompt size, and the calibration of the attack head on paragraphs.

    python bench/classifier_sizes.py [--repeats 3] [--out bench/results/classifier_sizes.json]
    python bench/classifier_sizes.py --calibrate [--target-fp 0.01]

Cost: one request of 1 KB .. 1 MiB of benign text (rows of examples' guard data joined by blank
lines) through `SignalEngine.classify_batch`, alone on the worker: the rows it became, its token
count and the wall time (median of `--repeats`). Run it against an older checkout to compare.

Calibration: the attack head reads each paragraph of a long request alone, so a long benign
request has many chances to fire. `--calibrate` builds long benign requests (`--size` characters
of benign and hard-benign prompts) and padded attacks (an attack between two halves of such
filler, and the same inside one long paragraph of filler), and prints the paragraph threshold at
which `--target-fp` of the benign requests fire, with the share of padded attacks caught at it:
the figure behind `ATTACK_PARAGRAPH_THRESHOLD`.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.engine import SignalEngine

GUARD = Path(__file__).resolve().parents[2] / "shared" / "data" / "guard"
SIZES = {"1 KB": 1_000, "8 KB": 8_000, "64 KB": 64_000, "200 KB": 200_000, "1 MiB": 1 << 20}


def texts(name: str, label: str | None = None) -> list[str]:
    rows = [json.loads(line) for line in (GUARD / name).read_text().split("\n") if line]
    return [r["text"] for r in rows if label is None or r.get("label") == label]


def filler(pool: list[str], size: int, rng: random.Random) -> str:
    """Benign prompts joined by blank lines, cut to `size` characters."""
    parts: list[str] = []
    length = 0
    while length < size:
        parts.append(rng.choice(pool))
        length += len(parts[-1]) + 2
    return "\n\n".join(parts)[:size]


def cost(engine: SignalEngine, repeats: int) -> dict[str, Any]:
    pool = texts("benign_prompts.jsonl")
    rng = random.Random(0)
    out: dict[str, Any] = {}
    engine.classify_batch(["warm up"])
    for name, size in SIZES.items():
        prompt = filler(pool, size, rng)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            (signals,) = engine.classify_batch([prompt])
            times.append(time.perf_counter() - start)
        rows = engine.model_rows(prompt)
        out[name] = {
            "chars": len(prompt),
            "rows": len(rows),
            "row_tokens": int(sum(len(r) for r in rows)),
            "tokens": signals.tokens,
            "ms": round(statistics.median(times) * 1000, 1),
        }
        print(name, out[name], flush=True)
    return out


def paragraph_max(engine: SignalEngine, prompts: list[str]) -> np.ndarray:
    """The highest raw attack score over the paragraph rows of each prompt (0 without any)."""
    # The engine's own planning, so the figure is of exactly the rows it runs.
    found = []
    for prompt in prompts:
        job = _job(prompt)
        plan = engine._plan(job, engine.tokenizer.encode(engine._texts_to_encode(job)))
        if not plan.attack_rows:
            found.append(0.0)
            continue
        outputs = engine._forward([plan.rows[r] for r in plan.attack_rows])
        found.append(float(outputs.attack.max()))
    return np.array(found)


def _job(prompt: str) -> Any:
    from classifiers.engine import Job

    return Job.of(prompt)


def calibrate(engine: SignalEngine, size: int, count: int, target_fp: float) -> dict[str, Any]:
    rng = random.Random(1)
    pool = texts("benign_prompts.jsonl") + texts("hard_benign.jsonl")
    attacks = texts("prompt_attacks.jsonl", "attack")
    rng.shuffle(attacks)
    benign = [filler(pool, size, rng) for _ in range(count)]
    padded, inline = [], []
    for attack in attacks[:count]:
        before, after = filler(pool, size // 2, rng), filler(pool, size // 2, rng)
        padded.append(f"{before}\n\n{attack}\n\n{after}")
        # the same attack inside one long paragraph of filler (no line breaks at all)
        inline.append(" ".join(f"{before} {attack} {after}".split()))
    benign_max = paragraph_max(engine, benign)
    attack_max = paragraph_max(engine, padded)
    inline_max = paragraph_max(engine, inline)
    threshold = float(np.quantile(benign_max, 1 - target_fp))
    result: dict[str, Any] = {
        "size_chars": size,
        "benign_requests": count,
        "padded_attacks": len(padded),
        "target_fp": target_fp,
        "threshold": round(threshold, 6),
        "padded_attacks_caught": round(float((attack_max >= threshold).mean()), 4),
        "inline_padded_attacks_caught": round(float((inline_max >= threshold).mean()), 4),
        "by_threshold": {},
    }
    for t in (0.5, 0.9, 0.99, 0.999, round(threshold, 6)):
        result["by_threshold"][str(t)] = {
            "benign_fp": round(float((benign_max >= t).mean()), 4),
            "padded_caught": round(float((attack_max >= t).mean()), 4),
            "inline_caught": round(float((inline_max >= t).mean()), 4),
        }
    print(json.dumps(result, indent=1), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--size", type=int, default=8_000, help="calibration prompt characters")
    parser.add_argument("--count", type=int, default=200, help="calibration prompts of each kind")
    parser.add_argument("--target-fp", type=float, default=0.01)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    engine = SignalEngine.load()
    report: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {engine.provider}",
    }
    if args.calibrate:
        report["calibration"] = calibrate(engine, args.size, args.count, args.target_fp)
    else:
        report["cost"] = cost(engine, args.repeats)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    engine.close()


if __name__ == "__main__":
    main()
