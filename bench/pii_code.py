"""PII false positives on code and logs: the share of chunks of the project's own source and of
its router/Envoy logs in which the runtime (model + patterns) finds any PII.

    .venv/bin/python -m bench.pii_code [--logs DIR ...]

Code: the Python files under classifiers/ (not training/), meritorder/, extproc/, bench/ and
deploy/, in 1,500-character chunks. Some of them hold PII-shaped examples on purpose (test card
numbers, phone formats, `jane [at] example [dot] com` in docstrings): those hits are listed, not
hidden. Logs: 10-line chunks of the router's JSON logs and Envoy's access logs found under the
given folders (a test run's stack leaves them in its workdir).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from classifiers.engine import SignalEngine

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("classifiers", "meritorder", "extproc", "bench", "deploy")


def code_chunks(size: int = 1500) -> list[tuple[str, str]]:
    files = [
        path
        for folder in CODE_DIRS
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "training" not in path.parts
    ]
    chunks = []
    for path in files:
        text = path.read_text()
        for at in range(0, len(text), size):
            chunks.append((f"{path.relative_to(ROOT)}:{at}", text[at : at + size]))
    return chunks


def log_chunks(folders: list[Path], lines: int = 10, most: int = 300) -> list[tuple[str, str]]:
    chunks: list[tuple[str, str]] = []
    for name in ("router.log", "envoy.log"):
        for folder in folders:
            for path in sorted(folder.rglob(name)):
                rows = path.read_text(errors="replace").splitlines()[:100]
                for at in range(0, len(rows), lines):
                    chunks.append((f"{path}:{at}", "\n".join(rows[at : at + lines])))
    return chunks[:most]


def flagged(engine: SignalEngine, chunks: list[tuple[str, str]]) -> dict[str, object]:
    hits: Counter[str] = Counter()
    examples = []
    for at in range(0, len(chunks), 16):
        batch = chunks[at : at + 16]
        for (where, text), signals in zip(
            batch, engine.classify_batch([t for _, t in batch]), strict=True
        ):
            if signals.pii:
                hits.update(f"{e.type}/{e.source}" for e in signals.pii)
                examples.append(
                    [where, [[e.type, text[e.start : e.end][:40]] for e in signals.pii]]
                )
    return {
        "chunks": len(chunks),
        "flagged": len(examples),
        "share": round(len(examples) / max(1, len(chunks)), 4),
        "spans_by_type": dict(hits),
        "examples": examples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, nargs="*", default=[Path("/tmp")])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pii_code.json")
    args = parser.parse_args()
    engine = SignalEngine.load(force_cpu=True)
    report = {
        "code": flagged(engine, code_chunks()),
        "logs": flagged(engine, log_chunks(args.logs)),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for name, part in report.items():
        print(f"{name}: {part['flagged']} of {part['chunks']} chunks flagged ({part['share']:.1%})")


if __name__ == "__main__":
    main()
