#!/usr/bin/env python3
"""How much of a request the attack head reads, by size and shape, with the shipped model.

    python bench/attack_read.py [--out bench/results/attack_read.json]

Each request goes through the router's classifier adapter (`EngineClassifier`, as `serve` runs
it, signal cache off) and reports the share of its tokens the attack head read
(`AttackSignal.read`: 1.0 when every paragraph was read, less when a spread of them was), its
row tokens and its classification time. Shapes: benign prompts joined by blank lines (as
`bench/classifier_sizes.py`), a list of short distinct lines, and a short question with many
one-word tool descriptions. A policy's `prompt_attack` signal with `read: all` refuses every
request under 1.0 (docs/security.md); `read: spread` routes it marked `partial_read`. `plan_ms`
is what planning alone takes to tell the same share (`EngineClassifier.read_share`, which is all
a required `read: all` signal under `on_unavailable: block` now spends on a request it refuses).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path
from typing import Any

from meritorder.classify import EngineClassifier, load_classifier
from meritorder.endpoints import parse

REPO = Path(__file__).resolve().parent.parent
BENIGN = REPO / "classifiers" / "training" / "data" / "guard" / "benign_prompts.jsonl"


def prompts(size: int) -> str:
    """Benign prompts joined by blank lines, cut to `size` characters."""
    rows = [json.loads(line)["text"] for line in BENIGN.read_text().split("\n") if line]
    parts: list[str] = []
    while sum(len(p) + 2 for p in parts) < size:
        parts.append(rows[len(parts) % len(rows)])
    return "\n\n".join(parts)[:size]


def lines(count: int) -> str:
    return "Sum these:\n" + "\n".join(f"item {i}: {i * 37 % 1000} units" for i in range(count))


def body(prompt: str, tools: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    if tools:
        out["tools"] = [
            {"type": "function", "function": {"name": f"t{i}", "description": f"t{i}"}}
            for i in range(tools)
        ]
    return out


SHAPES: list[tuple[str, dict[str, Any]]] = [
    *((f"prompts, {n // 1024} KB", body(prompts(n))) for n in (1024, 8192, 20480, 65536, 204800)),
    *((f"{n:,} short lines", body(lines(n))) for n in (300, 1000, 3000)),
    *((f"a question and {n:,} one-word tools", body("What is 2 + 2?", n)) for n in (20, 300, 3000)),
]


async def measure(
    classifier: EngineClassifier, name: str, request: dict[str, Any]
) -> dict[str, Any]:
    raw = json.dumps(request).encode()
    view = parse("chat", raw, max_bytes=1 << 22)
    rows = classifier.engine.model_rows(view.classifier_messages())
    start = time.perf_counter()
    planned = await classifier.read_share(view)
    plan_ms = 1000 * (time.perf_counter() - start)
    start = time.perf_counter()
    classified = await classifier.classify(view)
    assert planned == classified.attack_read, (name, planned, classified.attack_read)
    return {
        "shape": name,
        "bytes": len(raw),
        "tokens": classified.tokens,
        "row_tokens": sum(len(r) for r in rows),
        "attack_read": round(classified.attack_read, 4),
        "ms": round(1000 * (time.perf_counter() - start)),
        "plan_ms": round(plan_ms, 1),
    }


async def run() -> dict[str, Any]:
    classifier = load_classifier()
    assert classifier is not None, "the shipped model did not load"
    await classifier.classify(
        parse("chat", json.dumps(body("warm up")).encode(), max_bytes=1 << 20)
    )
    results = [await measure(classifier, name, request) for name, request in SHAPES]
    classifier.close()
    return {
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "model": classifier.engine.spec.version,
        "attack_tokens": classifier.engine.attack_tokens,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/attack_read.json")
    args = parser.parse_args()
    result = asyncio.run(run())
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for row in result["results"]:
        print(
            f"{row['shape']:<40} {row['bytes']:>9,} B {row['tokens']:>7,} tokens "
            f"{row['row_tokens']:>6,} row tokens  read {row['attack_read']:.3f}  {row['ms']:>6,} ms"
            f"  planned in {row['plan_ms']:>6.1f} ms"
        )


if __name__ == "__main__":
    main()
