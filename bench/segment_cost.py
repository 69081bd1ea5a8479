#!/usr/bin/env python3
"""What the segment head costs: multi-line requests with and without it, one at a time.

    .venv/bin/python bench/segment_cost.py [--requests 120] [--rounds 4]

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
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    texts = [r["text"] for r in rows if r["label"] == "benign"][: args.requests]
    guarded = SignalEngine.load(force_cpu=True, segments=True)
    assert guarded.segment_head is not None, "the model directory has no segment_head.json"
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
