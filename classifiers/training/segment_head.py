"""Fit the segment head (`classifiers/segments.py`): planted instructions, segment by segment.

Features come from the shipped engine itself (`SignalEngine.segment_features`: the rows, windows
and token states the router reads), so what is fitted is what runs. Labels: a segment of an
indirect-injection row is positive when at least half of it lies in the text its clean twin lacks
(the planted instruction); every other segment of those rows, of their twins, of hard-benign
look-alikes, benign prompts and request-style questions is negative, all from the *train* sources
(`sources.py`). A logistic regression (C=0.1, classes balanced) is fitted on them; its threshold
is the score that 0.5% of whole calibration requests (hard-benign, benign and clean documents of
the calibration sources) reach. Nothing reads the dev sources.

    .venv-train/bin/python -m classifiers.training.segment_head [--model-dir DIR]

Writes DIR/segment_head.json (default: the shipped model's) and prints the calibration figures.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from classifiers.engine import SignalEngine
from classifiers.segments import CONTEXT_FEATURES, HEAD_FILE, SegmentHead

from . import sources
from .common import MODELS_DIR
from .data import load_all
from .stage3 import injected_span, twins

SEED = 20240615
C = 0.1
CALIB_FPR = 0.005  # half the attack head's 1%: the two fire on different requests
OVERLAP = 0.5  # of a segment's characters inside the planted span, to call it planted
REQUESTS = 1500  # request-style questions sampled as negatives (they have few segments)
PLANTED = 2000  # attacks made by planting other sources' instructions in clean documents


def labelled(
    engine: SignalEngine, rows: list[dict], clean: dict[str, str], batch: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels, row index and head flag of every scored segment of `rows`."""
    feats, labels, index, heads = [], [], [], []
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        for i, (row, found) in enumerate(
            zip(chunk, engine.segment_features([r["text"] for r in chunk]), strict=True)
        ):
            span = None
            if row.get("label") == "attack" and row.get("pair_id") in clean:
                span = injected_span(row["text"], clean[row["pair_id"]])
            for a, b, head, f in found:
                inside = 0 if span is None else max(0, min(b, span[1]) - max(a, span[0]))
                feats.append(f)
                labels.append(int(inside >= OVERLAP * (b - a)))
                index.append(start + i)
                heads.append(head)
    return (
        np.asarray(feats, np.float32).reshape(-1, engine_width(engine)),
        np.asarray(labels, np.int64),
        np.asarray(index, np.int64),
        np.asarray(heads, bool),
    )


def planted(
    documents: list[dict], instructions: list[str], n: int, rng: random.Random
) -> tuple[list[dict], dict[str, str]]:
    """`n` attacks made by planting an instruction on a line of its own in a clean document,
    after its first line (the request), as a comment in code; and the clean twins.

    BIPIA's training attacks are a few dozen strings; any instruction to the reader, planted in
    pasted content, is an injection whatever it asks, so instructions from other sources teach
    the head the shape rather than those strings."""
    rows, clean = [], {}
    for k in range(n):
        doc = rng.choice(documents)
        lines = doc["text"].split("\n")
        text = rng.choice(instructions)
        if doc.get("kind", "").startswith("code"):
            text = "# " + text
        at = rng.randint(1, len(lines))
        pair = f"planted-{k}"
        rows.append(
            {
                "text": "\n".join([*lines[:at], text, *lines[at:]]),
                "label": "attack",
                "pair_id": pair,
            }
        )
        clean[pair] = doc["text"]
    return rows, clean


def instruction_pool(d: dict, s: dict) -> list[str]:
    """Short one-line instructions and questions of the train sources: benign prompts, plain
    harmful requests, synthetic injections and direct attacks."""
    texts = [r["text"] for r in d["attack_train"] if r["kind"] in ("benign", "synthetic_injection")]
    texts += [r["text"] for r in s["harmful"]["train"]]
    texts += [r["text"] for r in s["more_attacks"]["train"] if r.get("kind") != "GCG"]
    return sorted({t.strip() for t in texts if "\n" not in t.strip() and 20 <= len(t) <= 200})


def engine_width(engine: SignalEngine) -> int:
    assert engine.segment_head is not None
    return int(engine.segment_head.weights.shape[0])


def row_scores(p: np.ndarray, index: np.ndarray, heads: np.ndarray, n: int) -> np.ndarray:
    """Per row, the highest score of its segments that are not the head; -1: none."""
    out = np.full(n, -1.0)
    keep = ~heads
    np.maximum.at(out, index[keep], p[keep])
    return out


def main(argv: list[str] | None = None) -> None:
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODELS_DIR)
    args = parser.parse_args(argv)
    base = SignalEngine.load(args.model_dir)
    width = 384 + CONTEXT_FEATURES
    probe = SegmentHead(np.zeros(width, np.float32), 0.0, 0.5, "probe")
    engine = SignalEngine(base.session, base.tokenizer, base.spec, segment_head=probe)

    d, s = load_all(), sources.load()
    rng = random.Random(SEED)
    clean = twins(s["indirect"]["train"] + s["indirect"]["calib"])
    benign_kinds = ("benign", "hard_negative")
    train = {
        "indirect": s["indirect"]["train"],
        "hard_benign": s["hard_benign"]["train"],
        "benign": [r for r in d["attack_train"] if r["kind"] in benign_kinds],
        "requests": rng.sample(s["domain_requests"]["train"], REQUESTS),
    }
    calib_clean = [r for r in s["indirect"]["calib"] if r["label"] == "benign"]
    calib = {
        "indirect": [r for r in s["indirect"]["calib"] if r["label"] == "attack"],
        "hard_benign": s["hard_benign"]["calib"],
        "benign": [r for r in d["attack_calib"] if r["kind"] in benign_kinds],
        "clean documents": calib_clean,
    }
    # Clean e-mails, tables and code of the train side. (Planting into its pasted docs and tool
    # outputs as well, and planting request-style questions, lowered the source-split dev
    # figures: segment-view ROC-AUC 0.978 -> 0.942; see the model card.)
    documents = [r for r in s["indirect"]["train"] if r["label"] == "benign"]
    rows, planted_clean = planted(documents, instruction_pool(d, s), PLANTED, rng)
    train["planted"] = rows
    clean |= planted_clean
    xs, ys = [], []
    for name, rows in train.items():
        x, y, _, _ = labelled(engine, rows, clean)
        xs.append(x)
        ys.append(y)
        print(f"train {name}: {len(rows)} rows, {len(y)} segments, {int(y.sum())} planted")
    model = LogisticRegression(C=C, max_iter=4000, class_weight="balanced")
    model.fit(np.concatenate(xs), np.concatenate(ys))
    weights = model.coef_[0].astype(np.float32)
    bias = float(model.intercept_[0])

    scores: dict[str, np.ndarray] = {}
    for name, rows in calib.items():
        x, _, index, heads = labelled(engine, rows, clean)
        p = 1.0 / (1.0 + np.exp(-(x @ weights + bias))) if len(x) else np.zeros(0)
        scores[name] = row_scores(p, index, heads, len(rows))
    negatives = np.concatenate([scores[k] for k in ("hard_benign", "benign", "clean documents")])
    threshold = float(np.quantile(negatives, 1 - CALIB_FPR))
    head = SegmentHead(weights, bias, threshold, base.spec.version + "+segments.1")
    report = {k: round(float(np.mean(v >= threshold)), 4) for k, v in scores.items()}
    data = head.to_json() | {
        "fitted": {
            "C": C,
            "seed": SEED,
            "threshold_at": f"{CALIB_FPR:.0%} of calibration hard-benign, benign and clean rows",
            "calibration_flagged": report,
            "train_rows": {k: len(v) for k, v in train.items()},
        }
    }
    (args.model_dir / HEAD_FILE).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"threshold {threshold:.4f}; calibration flagged: {report}")


if __name__ == "__main__":
    main()
