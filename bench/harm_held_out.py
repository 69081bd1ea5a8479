#!/usr/bin/env python3
"""Whether reading the harm head on paragraphs flags held-out benign text: the benign documents
of the held-out indirect-injection set and the held-out hard-benign rows (`splits/sources.json`
dev; no threshold was chosen on them), flagged as harmful by the sequence row alone (before
`thresholds.harm_paragraph`) and with the paragraph rows (now).

    python bench/harm_held_out.py [--model-dir DIR] [--out bench/results/harm_held_out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.classifier_sizes import DATA, decision_scores, rows
from classifiers.engine import SignalEngine

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/harm_held_out.json")
    args = parser.parse_args()
    engine = SignalEngine.load(args.model_dir)
    thresholds = engine.spec.thresholds
    assert thresholds.harmful is not None and thresholds.harm_paragraph is not None
    at, views_at = thresholds.harmful, max(thresholds.harm_paragraph, thresholds.harmful)
    dev = set(json.loads((DATA / "splits" / "sources.json").read_text())["hard_benign"]["dev"])
    slices = {
        "benign documents (indirect_injections_dev)": [
            r["text"] for r in rows("indirect_injections_dev.jsonl") if r["label"] == "benign"
        ],
        "hard-benign (dev)": [r["text"] for r in rows("hard_benign.jsonl") if r["id"] in dev],
    }
    report: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {engine.provider}",
        "model": engine.spec.version,
        "harmful": at,
        "harm_paragraph": views_at,
    }
    for name, texts in slices.items():
        sequence, views, _ = decision_scores(engine, texts, head="harmful")
        report[name] = {
            "n": len(texts),
            "read_in_more_than_one_row": round(float(np.mean(views > 0)), 4),
            "flagged_by_the_sequence_row": round(float(np.mean(sequence >= at)), 4),
            "flagged_with_the_paragraph_rows": round(
                float(np.mean((sequence >= at) | (views >= views_at))), 4
            ),
        }
        print(name, json.dumps(report[name]), flush=True)
    engine.close()
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
