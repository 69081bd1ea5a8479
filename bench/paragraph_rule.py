"""What "read each whole paragraph as a request alone" would refuse: the rule that would keep
"an attack blocked alone stays blocked when padded" by construction.

    python bench/paragraph_rule.py [--requests 60] [--model-dir DIR]

Builds 8 KB requests from held-out benign rows (the calibration and dev splits, never training
rows), whole rows joined by blank lines: documents (the clean twins of the indirect-injection
sets: e-mails, code, tables), prompts (benign and hard-benign), and both mixed. Each paragraph is
classified alone, as a request; the rule refuses a request when any paragraph scores at or over
the sequence threshold. Prints, per kind, the share of paragraphs flagged alone, of requests the
rule would refuse, and of requests the shipped engine refuses. About two minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.classifier_sizes import DATA, filler, rows
from classifiers.engine import SignalEngine


def held_out() -> set[str]:
    """Ids in a calibration or dev split of the attack guard data."""
    sources = json.loads((DATA / "splits" / "sources.json").read_text())
    split = json.loads((DATA / "splits" / "prompt_attack.json").read_text())
    ids = set(split["calib"]) | set(split.get("dev", []))
    for task in ("hard_benign", "more_attacks", "indirect", "indirect_dev"):
        ids |= set(sources[task]["calib"]) | set(sources[task]["dev"])
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--size", type=int, default=8000)
    parser.add_argument("--model-dir", type=Path)
    args = parser.parse_args()
    engine = SignalEngine.load(args.model_dir)
    threshold = engine.spec.thresholds.prompt_attack
    keep = held_out()
    documents = [
        r["text"]
        for name in ("indirect_injections.jsonl", "indirect_injections_dev.jsonl")
        for r in rows(name)
        if r["label"] == "benign" and r["id"] in keep
    ]
    prompts = [
        r["text"]
        for name in ("benign_prompts.jsonl", "hard_benign.jsonl")
        for r in rows(name)
        if r["label"] == "benign" and r["id"] in keep
    ]
    print(f"{len(documents)} documents, {len(prompts)} prompts; sequence threshold {threshold}")
    rng = random.Random(7)
    for kind, pool in (
        ("documents", documents),
        ("prompts", prompts),
        ("mixed", documents + prompts),
    ):
        requests = [filler(pool, args.size, rng, cut=False) for _ in range(args.requests)]
        paragraphs = [[p.strip() for p in r.split("\n\n") if p.strip()] for r in requests]
        flat = [p for ps in paragraphs for p in ps]
        scores = iter(s.prompt_attack.score for s in engine.classify_batch(flat))
        per_request = [[next(scores) for _ in ps] for ps in paragraphs]
        alone = float(np.mean([s >= threshold for ps in per_request for s in ps]))
        rule = float(np.mean([max(ps) >= threshold for ps in per_request]))
        shipped = float(np.mean([s.prompt_attack.flagged for s in engine.classify_batch(requests)]))
        print(
            f"{kind}: {len(flat)} paragraphs, {alone:.1%} flagged alone; {args.size}-character "
            f"requests refused by the rule {rule:.1%}, by the shipped engine {shipped:.1%}",
            flush=True,
        )
    engine.close()


if __name__ == "__main__":
    main()
