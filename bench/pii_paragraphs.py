#!/usr/bin/env python3
"""Runtime PII on requests of several paragraphs: entity F1 and the row tokens the encoder ran.

    python bench/pii_paragraphs.py [--group 12] [--out bench/results/pii_paragraphs.json]

The PII dev split's rows are single sentences, each read in one row; a request of several
paragraphs is planned differently (`SignalEngine._plan_by_paragraphs`, or the spread windows).
Here every `--group` consecutive dev rows are joined into one request, by blank lines (each row
its own paragraph) and by single line breaks (one paragraph of many lines), with the gold spans
shifted; exact-offset entity F1 as in `classifiers.training.runtime_eval`. Run it against an
older checkout (PYTHONPATH) to compare.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from classifiers.engine import SignalEngine
from classifiers.training.data import load_all
from classifiers.training.metrics import f1_from_counts, pii_counts

REPO = Path(__file__).resolve().parent.parent


def run(group: int) -> dict[str, Any]:
    engine = SignalEngine.load()
    rows = load_all()["pii_dev"]
    run_session = engine.session.run
    counted = [0]

    def counting(names: Any, feeds: Any) -> Any:
        counted[0] += int(feeds["attention_mask"].sum())
        return run_session(names, feeds)

    engine.session.run = counting  # type: ignore[method-assign]
    out: dict[str, Any] = {"model": engine.spec.version, "group": group}
    for layout, sep in (("blank line", "\n\n"), ("line break", "\n")):
        texts, gold = [], []
        for i in range(0, len(rows) - group + 1, group):
            text, spans = "", set()
            for row in rows[i : i + group]:
                text += sep if text else ""
                base = len(text)
                text += row["text"]
                spans |= {(e["type"], e["start"] + base, e["end"] + base) for e in row["entities"]}
            texts.append(text)
            gold.append(spans)
        counted[0] = 0
        found = engine.classify_batch(texts)
        pred = [{(p.type, p.start, p.end) for p in s.pii} for s in found]
        counts = pii_counts(gold, pred)
        types = sorted({t for g in gold for t, _, _ in g})
        out[layout] = {
            "requests": len(texts),
            "entity_f1": round(f1_from_counts(counts), 4),
            "per_type_f1": {t: round(f1_from_counts(counts, t), 4) for t in types},
            "row_tokens": counted[0],
        }
    engine.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=12)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/pii_paragraphs.json")
    args = parser.parse_args()
    result = run(args.group)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
