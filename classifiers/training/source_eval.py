"""Figures on sources the model never trained on (issue 15), as the router sees them.

The shipped `SignalEngine` (windows, paragraphs, calibrated heads, model spans merged with the
validated patterns, names and addresses checked by the PII second opinion, as `serve` runs it)
reads the *dev* rows of `sources.py`: whole attack algorithms, document
collections, benign corpora, harmful benchmarks, request data sets and phone regions that no
training or calibration step read. Runs in the router's venv:

    .venv/bin/python -m classifiers.training.source_eval [--model-dir DIR] [--segments]
        [--no-pii-second-opinion]

Writes `source_split` into the model directory's metrics.json and, for the accurate profile, the
block between the SOURCE-SPLIT markers of MODEL_CARD.md. 95% intervals: percentile bootstrap over
rows (1,000 resamples, seed 7); the mean over sources resamples each source's rows on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.calibration import expected_calibration_error
from classifiers.engine import SignalEngine

from . import sources
from .common import (
    DOMAIN_LABELS,
    add_model_dir,
    add_second_opinion,
    format_mc,
    model_dir_of,
    write_card_section,
)
from .data import load_all
from .metrics import bootstrap_ci, roc_auc, threshold_at_fpr, token_labels

MARK_BEGIN = "<!-- SOURCE-SPLIT:BEGIN (written by classifiers.training.source_eval) -->"
MARK_END = "<!-- SOURCE-SPLIT:END -->"
CHUNK = 64


# ---------------------------------------------------------------- reading


def read(engine: SignalEngine, texts: list[str]) -> dict[str, Any]:
    """The engine's signals for each text, as arrays."""
    out: dict[str, list] = defaultdict(list)
    for i in range(0, len(texts), CHUNK):
        for s in engine.classify_batch(texts[i : i + CHUNK]):
            out["attack"].append(s.prompt_attack.score)
            harm = getattr(s, "harmful", None)
            out["harmful"].append(np.nan if harm is None else harm.score)
            out["domain"].append(DOMAIN_LABELS.index(s.domain.label))
            out["confidence"].append(
                getattr(s.domain, "confidence", s.domain.scores[s.domain.label])
            )
            out["difficulty"].append(s.difficulty.score)
            out["pii"].append([(e.type, e.start, e.end) for e in s.pii])
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in out.items() if k != "pii"}
    arrays["pii"] = out["pii"]
    return arrays


def ci(fn: Callable[[np.ndarray], float], n: int) -> list[float]:
    return [round(x, 4) for x in bootstrap_ci(fn, n)] if n else [float("nan")] * 2


def rate(flags: np.ndarray) -> dict[str, Any]:
    flags = np.asarray(flags, dtype=float)
    return {
        "n": len(flags),
        "rate": round(float(flags.mean()), 4) if len(flags) else None,
        "ci95": ci(lambda i: float(flags[i].mean()), len(flags)),
    }


# ---------------------------------------------------------------- attack and harm


def guard_sets(s: dict, d: dict) -> dict[str, list[dict]]:
    """Dev slices, each a list of {text, kind}: positives and negatives kept apart."""
    ind = s["indirect_dev"]["dev"]
    benign_old = [r for r in d["attack_dev"] if r["kind"] == "benign"]
    return {
        "indirect_attacks": [r for r in ind if r["label"] == "attack"],
        "other_attacks": s["more_attacks"]["dev"],
        "indirect_clean": [r for r in ind if r["label"] == "benign"],
        "hard_benign": s["hard_benign"]["dev"],
        "benign": benign_old,
        "harmful": s["harmful"]["dev"],
    }


def attack_and_harm(
    engine: SignalEngine, sets: dict[str, list[dict]], got: dict[str, dict], domain_read: dict
) -> dict[str, Any]:
    """`got`: the engine's reads of each slice of `sets` (`guard_sets`)."""
    t_att = engine.spec.thresholds.prompt_attack
    out: dict[str, Any] = {"threshold": t_att}
    neg = np.concatenate([got["hard_benign"]["attack"], got["benign"]["attack"]])
    pos = got["indirect_attacks"]["attack"]
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    sc = np.r_[pos, neg]
    t_dev = threshold_at_fpr(neg, 0.01)

    def recall_at_1pct(i: np.ndarray) -> float:
        yy, ss = y[i], sc[i]
        if yy.all() or not yy.any():
            return float("nan")
        t = threshold_at_fpr(ss[yy == 0], 0.01)
        return float(np.mean(ss[yy == 1] >= t))

    out["indirect_vs_benign"] = {
        "roc_auc": round(roc_auc(y, sc), 4),
        "roc_auc_ci95": ci(lambda i: roc_auc(y[i], sc[i]), len(y)),
        "recall_at_1pct_fpr": round(float(np.mean(pos >= t_dev)), 4),
        "recall_at_1pct_fpr_ci95": ci(recall_at_1pct, len(y)),
        "n_pos": len(pos),
        "n_neg": len(neg),
    }
    out["at_threshold"] = {
        f"recall_{k}": rate(got[k]["attack"] >= t_att)
        for k in ("indirect_attacks", "other_attacks")
    } | {
        f"fpr_{k}": rate(got[k]["attack"] >= t_att)
        for k in ("indirect_clean", "hard_benign", "benign", "harmful")
    }
    out["at_threshold"]["fpr_domain_requests"] = rate(domain_read["attack"] >= t_att)
    out["by_kind"] = {}
    for k in ("indirect_attacks", "other_attacks", "hard_benign"):
        by: dict[str, list[float]] = defaultdict(list)
        key = "kind" if k != "hard_benign" else "src"
        for r, v in zip(sets[k], got[k]["attack"], strict=True):
            by[r[key] if not r[key].startswith("starlette:") else "starlette docs"].append(v)
        out["by_kind"][k] = {
            kind: {"n": len(v), "flagged": round(float(np.mean(np.asarray(v) >= t_att)), 4)}
            for kind, v in sorted(by.items())
        }
    harm_t = getattr(engine.spec.thresholds, "harmful", None)
    if harm_t is not None and not np.isnan(got["harmful"]["harmful"]).any():
        hp = got["harmful"]["harmful"]
        negs = {k: got[k]["harmful"] for k in ("benign", "hard_benign", "indirect_clean")}
        negs["domain_requests"] = domain_read["harmful"]
        hn = np.concatenate(list(negs.values()))
        yh = np.r_[np.ones(len(hp)), np.zeros(len(hn))]
        sh = np.r_[hp, hn]
        out["harmful"] = {
            "threshold": harm_t,
            "roc_auc": round(roc_auc(yh, sh), 4),
            "roc_auc_ci95": ci(lambda i: roc_auc(yh[i], sh[i]), len(yh)),
            "recall": rate(hp >= harm_t),
            **{f"fpr_{k}": rate(v >= harm_t) for k, v in negs.items()},
            "flagged_attacks": rate(
                np.r_[got["indirect_attacks"]["harmful"], got["other_attacks"]["harmful"]] >= harm_t
            ),
        }
        out["ece_harmful"] = round(expected_calibration_error(sh, yh), 4)
    ya = np.r_[np.ones(len(pos) + len(got["other_attacks"]["attack"])), np.zeros(len(neg))]
    sa = np.r_[pos, got["other_attacks"]["attack"], neg]
    out["ece_attack"] = round(expected_calibration_error(sa, ya), 4)
    return out


# ---------------------------------------------------------------- domain


def domain(rows: list[dict], got: dict) -> dict[str, Any]:
    y = np.array([DOMAIN_LABELS.index(r["label"]) for r in rows])
    hit = got["domain"] == y
    by: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by[sources.domain_source(r["src"])].append(i)
    per = {
        src: {
            "n": len(idx),
            "label": rows[idx[0]]["label"],
            "accuracy": round(float(hit[idx].mean()), 4),
        }
        for src, idx in sorted(by.items())
    }
    groups = [np.asarray(v) for v in by.values()]
    rng = np.random.default_rng(7)
    means = [
        float(np.mean([hit[rng.choice(g, len(g))].mean() for g in groups])) for _ in range(1000)
    ]
    return {
        "per_source": per,
        "mean_over_sources": round(float(np.mean([hit[g].mean() for g in groups])), 4),
        "mean_over_sources_ci95": [round(float(np.percentile(means, q)), 4) for q in (2.5, 97.5)],
        "pooled_accuracy": round(float(hit.mean()), 4),
        "ece": round(expected_calibration_error(got["confidence"], hit), 4),
    }


# ---------------------------------------------------------------- PII


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def phones_found(row: dict, text: str, pred: list[tuple[str, int, int]]) -> list[bool]:
    """Per gold phone number of `row`: whether its digits lie inside a predicted phone span of
    `text` (the row's text, or a perturbation of it: boundaries and offsets aside)."""
    spans = [_digits(text[a:b]) for t, a, b in pred if t == "PHONE_NUMBER"]
    out = []
    for e in row["entities"]:
        if e["type"] == "PHONE_NUMBER":
            digits = _digits(row["text"][e["start"] : e["end"]])
            out.append(any(digits and digits in sp for sp in spans))
    return out


def phones(rows: list[dict], got: dict) -> dict[str, Any]:
    """Phone recall on held-out regions: exact span and, robust to boundaries, a predicted phone
    span holding the gold number's digits; entity F1 over every type of the rows."""
    exact, found, per_row = [], [], []
    tp = fp = fn = 0
    for r, pred in zip(rows, got["pii"], strict=True):
        gold = {(e["type"], e["start"], e["end"]) for e in r["entities"]}
        p = set(pred)
        tp, fp, fn = tp + len(gold & p), fp + len(p - gold), fn + len(gold - p)
        per_row.append((len(gold & p), len(p - gold), len(gold - p)))
        exact += [
            ("PHONE_NUMBER", e["start"], e["end"]) in p
            for e in r["entities"]
            if e["type"] == "PHONE_NUMBER"
        ]
        found += phones_found(r, r["text"], pred)
    counts = np.asarray(per_row, dtype=float)

    def f1(i: np.ndarray) -> float:
        a, b, c = counts[i].sum(0)
        return float(2 * a / (2 * a + b + c)) if a + b + c else float("nan")

    return {
        "phone_recall_exact": rate(np.asarray(exact)),
        "phone_recall_digits": rate(np.asarray(found)),
        "entity_f1": round(f1(np.arange(len(rows))), 4),
        "entity_f1_ci95": ci(f1, len(rows)),
    }


def pii_token_ece(engine: SignalEngine, rows: list[dict]) -> float:
    """ECE of the PII head's top tag per token (calibrated, as the engine reads it), each text
    read alone in one row of at most 126 tokens."""
    enc = engine.tokenizer.encode([r["text"] for r in rows])
    conf, hit = [], []
    for i in range(0, len(rows), CHUNK):
        part = enc[i : i + CHUNK]
        got = engine._forward([engine.tokenizer.wrap(e.ids[:126]) for e in part])
        for r, e, probs in zip(rows[i : i + CHUNK], part, got.pii, strict=True):
            offsets = e.encoding.offsets[: len(probs)]
            gold = np.asarray(token_labels(offsets, r["entities"], len(probs)))
            keep = gold != -100
            conf.append(probs[keep].max(1))
            hit.append(probs[keep].argmax(1) == gold[keep])
    return round(expected_calibration_error(np.concatenate(conf), np.concatenate(hit)), 4)


def pii_free(named: dict[str, dict]) -> dict[str, Any]:
    """Share of prompts with no PII (by their source) that get any PII entity."""
    return {k: rate(np.asarray([len(p) > 0 for p in g["pii"]])) for k, g in named.items()}


# ---------------------------------------------------------------- robustness

FILLER = (
    "Some background first. Our team has been reorganizing the quarterly planning documents, "
    "and the notes below were copied from several meetings, so they are a bit repetitive. "
)


def perturbations(rng: random.Random) -> dict[str, Callable[[str], str]]:
    return {
        "as is": lambda t: t,
        "UPPER CASE": str.upper,
        "whitespace collapsed": lambda t: " ".join(t.split()),
        "whitespace doubled": lambda t: t.replace(" ", "  ").replace("\n", "\n\n"),
        "markdown": lambda t: "## Request\n\n> " + t.replace("\n", "\n> ") + "\n\n**Thanks!**",
        "in a code fence": lambda t: "Here is the text:\n```text\n" + t + "\n```",
        "middle of a long prompt": lambda t: FILLER * 12 + "\n\n" + t + "\n\n" + FILLER * 12,
    }


def robustness(engine: SignalEngine, s: dict, sets: dict[str, list[dict]]) -> dict[str, Any]:
    """`sets`: `guard_sets`."""
    rng = random.Random(7)
    attacks = rng.sample(sets["indirect_attacks"], 150) + rng.sample(sets["other_attacks"], 100)
    benign = rng.sample(sets["hard_benign"], 150) + rng.sample(sets["benign"], 100)
    requests = rng.sample(
        [r for r in s["domain_requests"]["dev"] if r["src"] != "agieval/gaokao-history"], 300
    )
    phone_rows = rng.sample(
        [r for r in s["phones"]["dev"] if any(e["type"] == "PHONE_NUMBER" for e in r["entities"])],
        200,
    )
    t = engine.spec.thresholds.prompt_attack
    out: dict[str, Any] = {}
    for name, f in perturbations(rng).items():
        ga = read(engine, [f(r["text"]) for r in attacks])
        gb = read(engine, [f(r["text"]) for r in benign])
        gd = read(engine, [f(r["text"]) for r in requests])
        gp = read(engine, [f(r["text"]) for r in phone_rows])
        y = np.array([DOMAIN_LABELS.index(r["label"]) for r in requests])
        found = []
        for r, pred in zip(phone_rows, gp["pii"], strict=True):
            found += phones_found(r, f(r["text"]), pred)
        out[name] = {
            "attack_recall": round(float(np.mean(ga["attack"] >= t)), 4),
            "benign_flagged": round(float(np.mean(gb["attack"] >= t)), 4),
            "domain_accuracy": round(float(np.mean(gd["domain"] == y)), 4),
            "phone_recall_digits": round(float(np.mean(found)), 4),
        }
    zh = s["domain_requests"]["dev"]
    zh = [r for r in zh if r["src"] == "agieval/gaokao-history"]
    gz = read(engine, [r["text"] for r in zh])
    out["_languages"] = {
        "Chinese (gaokao history, held out)": {
            "n": len(zh),
            "domain_accuracy": round(
                float(np.mean(gz["domain"] == DOMAIN_LABELS.index("history"))), 4
            ),
        }
    }
    out["_sizes"] = {
        "attacks": len(attacks),
        "benign": len(benign),
        "requests": len(requests),
        "phone_rows": len(phone_rows),
    }
    return out


# ---------------------------------------------------------------- main


def machine() -> str:
    """The CPU the figures were read on (its model name, family and model), and the date."""
    import datetime
    import platform

    fields: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']} model {fields.get('model', '?')})"
    return f"{name}, {os.cpu_count()} cores, {datetime.date.today().isoformat()}"


def run(engine: SignalEngine) -> dict[str, Any]:
    s = sources.load()
    d = load_all()
    req = s["domain_requests"]["dev"]
    got_req = read(engine, [r["text"] for r in req])
    results: dict[str, Any] = {"model": engine.spec.version, "machine": machine()}
    guard = guard_sets(s, d)
    got_guard = {k: read(engine, [r["text"] for r in rows]) for k, rows in guard.items()}
    results["guard"] = attack_and_harm(engine, guard, got_guard, got_req)
    results["domain"] = domain(req, got_req)
    mmlu = d["domain_dev"]
    got_mmlu = read(engine, [format_mc(r["text"], r["options"]) for r in mmlu])
    weak = np.array([r["weak"] for r in mmlu])
    strong = np.array([r["strong"] for r in mmlu])
    y = np.array([DOMAIN_LABELS.index(r["label"]) for r in mmlu])
    results["domain"]["mmlu_dev_ece"] = round(
        expected_calibration_error(got_mmlu["confidence"], got_mmlu["domain"] == y), 4
    )
    results["difficulty_ece"] = round(
        expected_calibration_error(got_mmlu["difficulty"], (strong - weak + 1) / 2.0), 4
    )
    ph = s["phones"]["dev"]
    got_ph = read(engine, [r["text"] for r in ph])
    results["pii"] = phones(ph, got_ph)
    results["pii"]["token_ece"] = pii_token_ece(engine, ph + d["pii_dev"])
    free = {
        "number-like negatives (held-out templates)": [r for r in ph if not r["entities"]],
    }
    named = {
        k: {"pii": [got_ph["pii"][i] for i, r in enumerate(ph) if not r["entities"]]} for k in free
    }
    for k in ("benign", "hard_benign", "indirect_clean"):
        named[k] = got_guard[k]
    named["domain requests"] = got_req
    results["pii"]["pii_free_flagged"] = pii_free(named)
    results["robustness"] = robustness(engine, s, guard)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_dir(parser, "has its figures written to its own metrics.json only")
    parser.add_argument(
        "--segments",
        action="store_true",
        help="with the opt-in segment head; written as metrics.json source_split_segments, "
        "the card's section is left as it is (it shows the default engine)",
    )
    add_second_opinion(
        parser,
        "written as metrics.json source_split_no_second_opinion, the card's section is left as "
        "it is",
    )
    args = parser.parse_args(argv)
    model_dir, shipped = model_dir_of(args)
    engine = SignalEngine.load(
        model_dir,
        force_cpu=True,
        segments=args.segments,
        pii_second_opinion=args.pii_second_opinion,
    )
    try:
        results = run(engine)
    finally:
        engine.close()
    path = model_dir / "metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {}
    key = "source_split_segments" if args.segments else "source_split"
    if not args.pii_second_opinion:
        key += "_no_second_opinion"
    metrics[key] = results
    path.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=1))
    if shipped and not args.segments and args.pii_second_opinion:
        from .source_card import card

        write_card_section(card(results), MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
