"""PII false positives on code and logs: the share of chunks of the project's own source and of
its router/Envoy logs in which the runtime (model + patterns) finds any PII.

    .venv/bin/python -m bench.pii_code [--logs DIR ...]

Code: the Python files under classifiers/ (not training/), meritorder/, extproc/, bench/ and
deploy/, in chunks of whole lines of up to 1,500 characters (what a client pastes). The files of
`PII_EXAMPLES` hold PII-shaped examples on purpose (test card numbers, phone formats,
`jane [at] example [dot] com` in the PII detectors' docstrings): they are a corpus of their own
(`code_with_pii_examples`, where a hit is the detector working), so that `code` has no PII and
every hit there is a false positive. Logs: 10-line chunks of the router's JSON logs and Envoy's
access logs found under the given folders (a test run's stack leaves them in its workdir).
Pasted code and tables: the benign twins of the shared guard data's indirect injections (a user
request that pastes a function of a permissively licensed repository, or a generated CSV table
whose region names are made-up places), train and dev files, when `../shared/data` is there.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from classifiers.engine import SignalEngine

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("classifiers", "meritorder", "extproc", "bench", "deploy")
# Files that spell out PII-shaped examples on purpose (found by grepping for them).
PII_EXAMPLES = frozenset(
    {
        "bench/pii_code.py",
        "classifiers/addresses.py",
        "classifiers/normalize.py",
        "classifiers/pii.py",
        "classifiers/pii_patterns.py",
        "classifiers/pii_scan.py",
    }
)


def code_chunks(size: int = 1500, examples: bool = False) -> list[tuple[str, str]]:
    """Chunks of whole lines, at most `size` characters each (a longer line is a chunk alone),
    of the files with PII examples (`examples`) or of all the others."""
    files = [
        path
        for folder in CODE_DIRS
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "training" not in path.parts
        and (str(path.relative_to(ROOT)) in PII_EXAMPLES) == examples
    ]
    chunks = []
    for path in files:
        start, text = 1, list[str]()
        for number, line in enumerate(path.read_text().splitlines(keepends=True), 1):
            if text and sum(len(t) for t in text) + len(line) > size:
                chunks.append((f"{path.relative_to(ROOT)}:{start}", "".join(text)))
                start, text = number, []
            text.append(line)
        if text:
            chunks.append((f"{path.relative_to(ROOT)}:{start}", "".join(text)))
    return chunks


GUARD = ROOT.parent / "shared" / "data" / "guard"


def pasted(kind: str) -> list[tuple[str, str]]:
    """The benign `kind` twins (`code/clean`, `table/clean`) of the guard data, by id."""
    rows = []
    for name in ("indirect_injections.jsonl", "indirect_injections_dev.jsonl"):
        path = GUARD / name
        if path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                if row["label"] == "benign" and row["kind"] == kind:
                    rows.append((f"{name}:{row['id']}", row["text"]))
    return rows


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
    parser.add_argument("--model-dir", type=Path, help="the model (default: the shipped profile)")
    parser.add_argument(
        "--pii-second-opinion",
        action="store_true",
        help="as the router reads by default: Rampart must confirm model names and addresses",
    )
    args = parser.parse_args()
    engine = SignalEngine.load(
        args.model_dir, force_cpu=True, pii_second_opinion=args.pii_second_opinion
    )
    report = {
        "code": flagged(engine, code_chunks()),
        "code_with_pii_examples": flagged(engine, code_chunks(examples=True)),
        "logs": flagged(engine, log_chunks(args.logs)),
    }
    for kind in ("code", "table"):
        rows = pasted(f"{kind}/clean")
        if rows:
            report[f"pasted_{kind}"] = flagged(engine, rows)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for name, part in report.items():
        print(f"{name}: {part['flagged']} of {part['chunks']} chunks flagged ({part['share']:.1%})")


if __name__ == "__main__":
    main()
