"""PII pattern detection before and after obfuscation handling: the share of benign prompts
flagged (false positives), the share of the obfuscation corpus found, and the cost per MiB.

    .venv/bin/python -m bench.pii_obfuscation [--data ../shared/data/guard]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from classifiers import pii_patterns
from classifiers.pii_scan import find_obfuscated, scan
from classifiers.signals import PiiEntity
from classifiers.text import part_joins
from meritorder.endpoints import parse

ROOT = Path(__file__).resolve().parents[1]
Finder = Callable[[str], Sequence[PiiEntity]]
FINDERS: dict[str, Finder] = {"before": pii_patterns.find_pii, "after": find_obfuscated}


def flagged_share(texts: list[str], find: Finder) -> float:
    return sum(bool(find(t)) for t in texts) / len(texts)


def code_chunks() -> list[str]:
    """This repository's Python sources in 2,000-character pieces: code-like text."""
    chunks = []
    for path in sorted(ROOT.glob("[!.]*/**/*.py")):
        text = path.read_text(encoding="utf-8")
        chunks += [text[i : i + 2000] for i in range(0, len(text), 2000)]
    return chunks


def corpus_found(before: bool) -> float:
    rows = [json.loads(line) for line in (ROOT / "tests/data/pii_obfuscation.jsonl").open()]
    hits = 0
    for row in rows:
        raw = json.dumps({"model": "auto", **row["body"]}).encode()
        request = parse("chat", raw, max_bytes=1 << 22)
        if before:  # message content only, each message alone, as written
            found = {(f"messages[{i}].content", h.type) for i, t in enumerate(request.texts())
                     for h in pii_patterns.find_pii(t)}  # fmt: skip
        else:
            texts = request.inspected_texts()
            joins = [part_joins(m) for m in request.messages]
            per = scan([t for _, t in texts], len(request.messages), joins)
            found = {(texts[i][0], h.type) for i, hs in enumerate(per) for h in hs}
        hits += (row["where"], row["type"]) in found
    return hits / len(rows)


def number_lists() -> dict[str, Callable[[random.Random], str]]:
    """Generators of numeric text that is not PII (2,000 of each are drawn)."""

    def decimals(rng: random.Random) -> str:
        return " ".join(f"{rng.uniform(0, 100):.{rng.choice([1, 2, 3])}f}" for _ in range(20))

    def integers(rng: random.Random) -> str:
        return " ".join(str(rng.randint(0, 999)) for _ in range(rng.randint(5, 30)))

    def versions(rng: random.Random) -> str:
        return " ".join(f"{rng.randint(0, 20)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}"
                        for _ in range(rng.randint(3, 15)))  # fmt: skip

    def column(rng: random.Random) -> str:
        return "\n".join(f"{rng.uniform(0, 100):.2f}" for _ in range(rng.randint(5, 30)))

    return {
        "space-separated decimals": decimals,
        "space-separated integers 0-999": integers,
        "dotted versions": versions,
        "a column of decimals": column,
    }


def cost_texts() -> dict[str, str]:
    rng = random.Random(1)
    english = "The quick brown fox jumps over the lazy dog; version 1.2.3 at 10:30. " * 15000
    return {
        "English prose": english[: 1 << 20],
        "CJK text": "".join(chr(0x4E00 + rng.randrange(20000)) for _ in range(1 << 20)),
        "digits and spaces": " ".join(str(rng.randrange(10**6)) for _ in range(150000))[: 1 << 20],
        "base64 (random bytes)": base64.b64encode(rng.randbytes(786432)).decode(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "guard")
    args = parser.parse_args()
    sets = {
        name: [json.loads(line)["text"] for line in (args.data / f"{name}.jsonl").open()]
        for name in ("benign_prompts", "hard_benign")
    }
    sets["repository code (2,000-char chunks)"] = code_chunks()
    print("| texts | n | flagged before | flagged after |\n|---|---:|---:|---:|")
    for name, texts in sets.items():
        shares = [flagged_share(texts, find) for find in FINDERS.values()]
        print(f"| {name} | {len(texts)} | {shares[0]:.2%} | {shares[1]:.2%} |")
    print("\n| 2,000 generated | flagged before | flagged after |\n|---|---:|---:|")
    for name, make in number_lists().items():
        rng = random.Random(0)
        texts = [f"data: {make(rng)}" for _ in range(2000)]
        shares = [flagged_share(texts, find) for find in FINDERS.values()]
        print(f"| {name} | {shares[0]:.1%} | {shares[1]:.1%} |")
    print(f"\nObfuscation corpus found: before {corpus_found(True):.0%}, "
          f"after {corpus_found(False):.0%}\n")  # fmt: skip
    print("| 1 MiB of | before s | after s |\n|---|---:|---:|")
    for name, text in cost_texts().items():
        seconds = []
        for find in FINDERS.values():
            start = time.perf_counter()
            find(text)
            seconds.append(time.perf_counter() - start)
        print(f"| {name} | {seconds[0]:.2f} | {seconds[1]:.2f} |")


if __name__ == "__main__":
    main()
