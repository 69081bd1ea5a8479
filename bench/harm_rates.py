"""How often a shipped policy's `harmful` rule refuses: the harm head's flag rate on held-out rows.

    python bench/harm_rates.py [--model-dir DIR] [--threshold T] [--out FILE]

Three sets, none of them seen in training (classifiers/training/data/splits/sources.json):
  harmful      the dev rows of guard/harmful_requests.jsonl (`harmful.dev`: strongreject,
               jbb-behaviors): the share flagged is the rule's recall;
  hard_benign  the dev rows of guard/hard_benign.jsonl (`hard_benign.dev`): benign requests that
               look like attacks or instructions; the share flagged is refused by mistake;
  twins        bench/data/harm_benign_twins.jsonl: benign questions on the subjects of the
               harmful rows (how a navigation system works, how to report trafficking), written
               for this check; the share flagged is refused by mistake.
Each at the model's shipped threshold (`thresholds.harmful`), or `--threshold`; the flags are
the runtime's own (`SignalEngine.classify_batch`, as `meritorder classify` reads them). About a
minute on two idle cores, most of it the 898 hard-benign rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from classifiers.engine import DEFAULT_MODEL_DIR, SignalEngine  # noqa: E402

DATA = REPO / "classifiers" / "training" / "data"
TWINS = REPO / "bench" / "data" / "harm_benign_twins.jsonl"
BATCH = 32


def rows(path: Path, ids: set[str] | None = None) -> list[dict[str, Any]]:
    """The JSONL rows of `path`, only those whose id is in `ids` when given."""
    lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines: U+2028 in text
    parsed = [json.loads(line) for line in lines if line.strip()]
    return [r for r in parsed if ids is None or r["id"] in ids]


def held_out_sets() -> dict[str, list[dict[str, Any]]]:
    splits = json.loads((DATA / "splits" / "sources.json").read_text())
    guard = DATA / "guard"
    return {
        "harmful": rows(guard / "harmful_requests.jsonl", set(splits["harmful"]["dev"])),
        "hard_benign": rows(guard / "hard_benign.jsonl", set(splits["hard_benign"]["dev"])),
        "twins": rows(TWINS),
    }


def scores(engine: SignalEngine, texts: list[str]) -> list[float]:
    out: list[float] = []
    for start in range(0, len(texts), BATCH):
        for signals in engine.classify_batch(texts[start : start + BATCH]):
            if signals.harmful is None:
                raise SystemExit("this model has no harm head (signals.json thresholds.harmful)")
            out.append(signals.harmful.score)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--threshold", type=float, help="default: the model's thresholds.harmful")
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()
    engine = SignalEngine.load(args.model_dir, force_cpu=True)
    threshold = args.threshold
    if threshold is None:
        threshold = engine.spec.thresholds.harmful
    if threshold is None:
        raise SystemExit("this model has no harm head (signals.json thresholds.harmful)")
    report: dict[str, Any] = {"model_dir": str(args.model_dir), "threshold": threshold}
    for name, chosen in held_out_sets().items():
        got = scores(engine, [r["text"] for r in chosen])
        flagged = [r["id"] for r, s in zip(chosen, got, strict=True) if s >= threshold]
        rate = len(flagged) / len(chosen)
        report[name] = {"rows": len(chosen), "flagged": len(flagged), "rate": rate}
        if name == "twins":
            report[name]["flagged_ids"] = flagged
        print(f"{name:12} {len(flagged):4} of {len(chosen):4} flagged ({rate:.1%})")
    engine.close()
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
