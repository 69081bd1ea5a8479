#!/usr/bin/env python3
"""What the segment head costs: multi-line requests with and without it, one at a time.

    .venv/bin/python bench/segment_cost.py [--requests 120] [--rounds 4]
    .venv/bin/python bench/segment_cost.py --filler [--count 60]

`--filler`: instead, the share of benign requests the head alone flags, made of calibration prompts
the router passes alone joined by blank lines (`classifier_sizes.filler`) at 1, 2, 4 and 8 KB.

The requests are the clean documents of `classifiers/training/data/guard/indirect_injections_dev
.jsonl` (a request that pastes an e-mail, a table or code), and the same texts joined into one line
(no segment to score: what the `make bench` prompts are). The two engines share one session; rounds
alternate (ABBA) so that drift on a shared machine falls on both. Prints p50 and mean latency per
request and the share of time the head adds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifiers.engine import SignalEngine

DATA = (
    Path(__file__).resolve().parent.parent
    / "classifiers/training/data/guard/indirect_injections_dev.jsonl"
)


def timings(engine: SignalEngine, texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        start = time.perf_counter()
        engine.classify_batch([text])
        out.append((time.perf_counter() - start) * 1e3)
    return out


def filler_flags(engine: SignalEngine, count: int) -> None:
    import random

    import numpy as np

    from bench.classifier_sizes import calibration_rows, decision_scores, filler

    assert engine.segment_head is not None
    rng = random.Random(1)
    pool = calibration_rows("benign_prompts.jsonl") + calibration_rows("hard_benign.jsonl")
    pool += [r for r in calibration_rows("indirect_injections.jsonl") if r["label"] == "benign"]
    pool = rng.sample(pool, min(1200, len(pool)))
    alone = engine.classify_batch([r["text"] for r in pool])
    passed = [r["text"] for r, s in zip(pool, alone, strict=True) if not s.prompt_attack.flagged]
    for size in (1000, 2000, 4000, 8000):
        requests = [filler(passed, size, rng) for _ in range(count)]
        _, _, segment = decision_scores(engine, requests)
        print(
            f"{size} characters: the head alone flags "
            f"{np.mean(segment >= engine.segment_head.threshold):.0%} of {count}; "
            f"its p99 {np.quantile(segment, 0.99):.5f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--filler", action="store_true", help="flags on joined benign prompts")
    parser.add_argument("--count", type=int, default=60, help="with --filler: requests per size")
    args = parser.parse_args()
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    texts = [r["text"] for r in rows if r["label"] == "benign"][: args.requests]
    guarded = SignalEngine.load(force_cpu=True, segments=True)
    assert guarded.segment_head is not None, "the model directory has no segment_head.json"
    if args.filler:
        filler_flags(guarded, args.count)
        return
    plain = SignalEngine(guarded.session, guarded.tokenizer, guarded.spec)
    sets = {"multi-line": texts, "one line": [" ".join(t.split()) for t in texts]}
    for name, batch in sets.items():
        got: dict[str, list[float]] = {"with": [], "without": []}
        timings(guarded, batch[:10])  # warm up
        for r in range(args.rounds):
            order = ("with", "without") if r % 2 == 0 else ("without", "with")
            for which in order:
                got[which] += timings(guarded if which == "with" else plain, batch)
        w, wo = got["with"], got["without"]
        print(
            f"{name} ({len(batch)} requests x {args.rounds}): "
            f"with the head p50 {statistics.median(w):.2f} ms, mean {statistics.mean(w):.2f}; "
            f"without p50 {statistics.median(wo):.2f} ms, mean {statistics.mean(wo):.2f}; "
            f"mean +{100 * (statistics.mean(w) / statistics.mean(wo) - 1):.1f}%"
        )


if __name__ == "__main__":
    main()
