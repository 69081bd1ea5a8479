"""Short windows over long lines: what they would add to the attack head's views (not shipped).

    python bench/short_windows.py [--size 64] [--stride 32] [--count 100] [--out FILE]

An attack inside one long paragraph of filler shares every 254-token view with filler, and the
mean-pooled head reads it diluted. This scores, on the calibration rows of
`bench/classifier_sizes.py --calibrate` (attacks the engine blocks alone, filler it passes alone,
split in halves by row id), windows of `--size` tokens every `--stride` over every line longer
than a view, beside what the engine already reads. The windows' threshold is the 99th percentile of
half 0's benign 8 KB requests (multi-paragraph and the same text on one line); the figures are half
1's. Nothing here changes the engine: it measures a candidate before it is built.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.classifier_sizes import calibration_rows, decision_scores, filler, half, pad
from classifiers.engine import SignalEngine
from classifiers.windows import IdArray, lines


def window_rows(engine: SignalEngine, text: str, size: int, stride: int) -> list[IdArray]:
    """Rows of `size` tokens every `stride` (and one ending each line) over lines past a view."""
    (encoded,) = engine.tokenizer.encode([text])
    ids = encoded.ids
    rows = []
    for a, b in lines(text, encoded.encoding.offsets, 0, len(ids)):
        if b - a > engine.max_length - 2:  # past one view: a row less [CLS] and [SEP]
            starts = sorted({*range(a, b - size, stride), b - size})
            rows += [engine.tokenizer.wrap(ids[s : s + size]) for s in starts]
    return rows


def window_scores(
    engine: SignalEngine, prompts: list[str], size: int, stride: int
) -> tuple[np.ndarray, float]:
    """Each prompt's highest window score (0 without a long line), and the mean row tokens."""
    best, tokens = [], []
    for prompt in prompts:
        rows = window_rows(engine, prompt, size, stride)
        best.append(float(engine._forward(rows).attack.max()) if rows else 0.0)
        tokens.append(sum(len(r) for r in rows))
    return np.array(best), float(np.mean(tokens))


def measure(engine: SignalEngine, size: int, stride: int, count: int) -> dict[str, Any]:
    rng = random.Random(1)
    candidates = calibration_rows("prompt_attacks.jsonl") + calibration_rows("more_attacks.jsonl")
    blocked = engine.classify_batch([r["text"] for r in candidates])
    attacks = [r for r, s in zip(candidates, blocked, strict=True) if s.prompt_attack.flagged]
    pool = calibration_rows("benign_prompts.jsonl") + calibration_rows("hard_benign.jsonl")
    pool += [r for r in calibration_rows("indirect_injections.jsonl") if r["label"] == "benign"]
    pool = rng.sample(pool, min(1200, len(pool)))
    alone = engine.classify_batch([r["text"] for r in pool])
    passed = [r for r, s in zip(pool, alone, strict=True) if not s.prompt_attack.flagged]
    scores: dict[tuple[int, str], tuple[np.ndarray, np.ndarray, float]] = {}
    for h in (0, 1):
        fill = [r["text"] for r in passed if half(r["id"]) == h]
        mine = [r["text"] for r in attacks if half(r["id"]) == h]
        rng.shuffle(mine)
        benign = [filler(fill, 8_000, rng) for _ in range(count)]
        padded, inline = pad(mine[:count], fill, 8_000, rng)
        kinds = {
            "benign": benign,
            "benign_one_line": [" ".join(b.split()) for b in benign],
            "padded": padded,
            "inline": inline,
        }
        for kind, prompts in kinds.items():
            sequence, views, _ = decision_scores(engine, prompts)
            engine_hit = (sequence >= engine.spec.thresholds.prompt_attack) | (
                views >= engine.attack_paragraph_threshold
            )
            best, tokens = window_scores(engine, prompts, size, stride)
            scores[h, kind] = (engine_hit, best, tokens)
            print(h, kind, flush=True)
    benign0 = np.concatenate([scores[0, k][1] for k in ("benign", "benign_one_line")])
    threshold = float(np.quantile(benign0, 0.99))
    half_1 = {
        kind: {
            "engine": round(float(scores[1, kind][0].mean()), 4),
            "windows_alone": round(float((scores[1, kind][1] >= threshold).mean()), 4),
            "engine_with_windows": round(
                float((scores[1, kind][0] | (scores[1, kind][1] >= threshold)).mean()), 4
            ),
            "window_row_tokens_mean": round(scores[1, kind][2]),
        }
        for kind in ("benign", "benign_one_line", "padded", "inline")
    }
    return {
        "model": engine.spec.version,
        "size": size,
        "stride": stride,
        "attacks_blocked_alone": len(attacks),
        "filler_passed_alone": len(passed),
        "window_threshold_from_half_0": round(threshold, 6),
        "half_1": half_1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    engine = SignalEngine.load()
    result = measure(engine, args.size, args.stride, args.count)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    engine.close()


if __name__ == "__main__":
    main()
