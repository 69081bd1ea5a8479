"""What the router actually sees: the runtime (`SignalEngine`: windows, span decoding, model spans
merged with the checksum-validated patterns, names and addresses checked by the PII second
opinion, as `serve` runs it) on the same dev splits as `evaluate.py`.

Runs in the router's venv (it needs the runtime, not torch):

    .venv/bin/python -m classifiers.training.runtime_eval
    .venv/bin/python -m classifiers.training.runtime_eval --benign-creative   # that set only
    .venv/bin/python -m classifiers.training.runtime_eval --no-pii-second-opinion  # without it

Writes `runtime` (without the second opinion: `runtime_no_second_opinion`, dev splits only, no
card) into classifiers/models/metrics.json and the block between the RUNTIME markers of
MODEL_CARD.md (and `runtime_benign_creative`, between the BENIGN-CREATIVE markers). Span matching
is exact on character offsets, as in `evaluate.py`.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.engine import SignalEngine

from .common import add_model_dir, add_second_opinion, model_dir_of, write_card_section
from .data import load_all
from .metrics import bootstrap_ci, f1_from_counts, pii_counts

PATTERN_TYPES = (
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "EMAIL_ADDRESS",
    "IP_ADDRESS",
    "PHONE_NUMBER",
)
PROBE = Path(__file__).parent / "data" / "probe" / "domain_requests.jsonl"
CREATIVE = Path(__file__).parent / "data" / "probe" / "benign_creative_requests.jsonl"
MARK_BEGIN = "<!-- RUNTIME:BEGIN (written by classifiers.training.runtime_eval) -->"
MARK_END = "<!-- RUNTIME:END -->"
CREATIVE_BEGIN = "<!-- BENIGN-CREATIVE:BEGIN (written by classifiers.training.runtime_eval --benign-creative) -->"
CREATIVE_END = "<!-- BENIGN-CREATIVE:END -->"


def pii(engine: SignalEngine, rows: list[dict[str, Any]]) -> dict[str, Any]:
    signals = engine.classify_batch([r["text"] for r in rows])
    gold = [{(e["type"], e["start"], e["end"]) for e in r["entities"]} for r in rows]
    pred = [{(e.type, e.start, e.end) for e in s.pii} for s in signals]
    counts = pii_counts(gold, pred)
    types = sorted({t for g in gold for t, _, _ in g})

    def f1(typ: str | None = None, idx: Any = None) -> float:
        chosen = counts if idx is None else [counts[i] for i in idx]
        return f1_from_counts(chosen, typ)

    return {
        "n": len(rows),
        "entity_f1": round(f1(), 4),
        "entity_f1_ci95": [round(x, 4) for x in bootstrap_ci(lambda i: f1(None, i), len(rows))],
        "pattern_types_f1": round(_f1_types(counts, PATTERN_TYPES), 4),
        "pattern_types_f1_ci95": [
            round(x, 4)
            for x in bootstrap_ci(
                lambda i: _f1_types([counts[j] for j in i], PATTERN_TYPES), len(rows)
            )
        ],
        "per_type_f1": {t: round(f1(t), 4) for t in types},
        "per_type_support": dict(sorted(Counter(t for g in gold for t, _, _ in g).items())),
    }


def _f1_types(counts: list[Counter], types: tuple[str, ...]) -> float:
    tp = fp = fn = 0
    for c in counts:
        for (t, k), v in c.items():
            if t not in types:
                continue
            tp += v if k == "tp" else 0
            fp += v if k == "fp" else 0
            fn += v if k == "fn" else 0
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else float("nan")


def attack(engine: SignalEngine, rows: list[dict[str, Any]]) -> dict[str, Any]:
    signals = engine.classify_batch([r["text"] for r in rows])
    y = np.array([int(r["attack"]) for r in rows])
    s = np.array([x.prompt_attack.score for x in signals])
    flagged = np.array([x.prompt_attack.flagged for x in signals])
    benign = y == 0
    return {
        "n": len(rows),
        "roc_auc": round(float(roc_auc(y, s)), 4),
        "recall_at_shipped_threshold": round(float(flagged[y == 1].mean()), 4),
        "benign_flagged_at_shipped_threshold": round(float(flagged[benign].mean()), 4),
    }


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney ROC-AUC with average ranks for ties (no scipy in the router's venv)."""
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def domain(engine: SignalEngine, rows: list[dict[str, Any]]) -> dict[str, Any]:
    signals = engine.classify_batch([r["text"] for r in rows])
    hits = [s.domain.label == r["label"] for s, r in zip(signals, rows, strict=True)]
    return {"n": len(rows), "accuracy": round(float(np.mean(hits)), 4)}


def domain_requests(engine: SignalEngine) -> dict[str, Any]:
    """The domain head on hand-written, request-style prompts (not MMLU phrasing, never trained
    on): how it transfers to the way real traffic asks about the same subjects."""
    rows = [json.loads(line) for line in PROBE.open(encoding="utf-8")]
    signals = engine.classify_batch([r["text"] for r in rows])
    hits = np.array([s.domain.label == r["label"] for s, r in zip(signals, rows, strict=True)])
    wrong = Counter(
        f"{r['label']} -> {s.domain.label}"
        for s, r, hit in zip(signals, rows, hits, strict=True)
        if not hit
    )
    return {
        "n": len(rows),
        "accuracy": round(float(hits.mean()), 4),
        "accuracy_ci95": [
            round(x, 4) for x in bootstrap_ci(lambda i: float(hits[i].mean()), len(rows))
        ],
        "confusions": dict(wrong.most_common()),
    }


def benign_creative(engine: SignalEngine) -> dict[str, Any]:
    """The attack head on benign chat requests shaped like real tool traffic: creative asks
    under persona system prompts with a forced tool (`data/probe/benign_creative_requests.jsonl`,
    never trained on). Scored on the messages as the router reads them; tools do not reach the
    attack head, so the rows keep only the forced tool's name."""
    rows = [json.loads(line) for line in CREATIVE.open(encoding="utf-8")]
    # One request at a time, as an idle router scores it: in a padded batch the int8 model's
    # attack score moves (0.852 alone, 0.777 in this set's batch for the image-tool request).
    signals = [engine.classify_batch([r["messages"]])[0] for r in rows]
    flagged = np.array([s.prompt_attack.flagged for s in signals])
    return {
        "n": len(rows),
        "false_positive_rate": round(float(flagged.mean()), 4),
        "false_positive_rate_ci95": [
            round(x, 4) for x in bootstrap_ci(lambda i: float(flagged[i].mean()), len(rows))
        ],
        # Hand-written rows vs rows taken from tests/data/recorded (ids `recorded:<name>`).
        "by_group": {
            group: f"{int(flagged[idx].sum())}/{len(idx)}"
            for group, idx in (
                ("hand-written", [i for i, r in enumerate(rows) if ":" not in r["id"]]),
                ("recorded", [i for i, r in enumerate(rows) if r["id"].startswith("recorded:")]),
            )
        },
        "flagged": {
            r["id"]: round(s.prompt_attack.score, 3)
            for r, s in zip(rows, signals, strict=True)
            if s.prompt_attack.flagged
        },
        "threshold": engine.spec.thresholds.prompt_attack,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate the shipped runtime on the dev sets.")
    parser.add_argument(
        "--benign-creative", action="store_true", help="only the benign creative-request set"
    )
    add_model_dir(parser, "has its figures written to its own metrics.json only")
    add_second_opinion(
        parser,
        "only the dev splits, written as metrics.json runtime_no_second_opinion; the card is "
        "left as it is",
    )
    args = parser.parse_args(argv)
    model_dir, shipped = model_dir_of(args)
    engine = SignalEngine.load(
        model_dir, force_cpu=True, pii_second_opinion=args.pii_second_opinion
    )
    metrics_path = model_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    if not args.pii_second_opinion:
        metrics["runtime_no_second_opinion"] = _dev(engine)
        metrics_path.write_text(json.dumps(metrics, indent=1) + "\n")
        return
    creative = benign_creative(engine)
    metrics["runtime_benign_creative"] = creative
    dev = metrics.get("runtime", {}).get("prompt_attack", {})
    if shipped:
        _write_creative_card(creative, dev.get("benign_flagged_at_shipped_threshold"))
    if args.benign_creative:
        metrics_path.write_text(json.dumps(metrics, indent=1) + "\n")
        print(json.dumps(creative, indent=1))
        return
    results = _dev(engine)
    metrics["runtime"] = results
    metrics_path.write_text(json.dumps(metrics, indent=1) + "\n")
    if shipped:
        _write_card(results)
    print(json.dumps(results, indent=1))


def _dev(engine: SignalEngine) -> dict[str, Any]:
    """The runtime's figures on the dev splits."""
    data = load_all()
    return {
        "what": "SignalEngine (runtime windows, span decoding, model + validated patterns, the PII "
        f"second opinion {'on' if engine.second_opinion is not None else 'off'}), dev splits",
        "pii": pii(engine, data["pii_dev"]),
        "prompt_attack": attack(engine, data["attack_dev"]),
        "domain_question_only": domain(engine, data["domain_dev"]),
        "domain_requests_probe": domain_requests(engine),
    }


def _write_card(results: dict[str, Any]) -> None:
    p = results["pii"]
    a = results["prompt_attack"]
    r = results["domain_requests_probe"]
    lines = [
        MARK_BEGIN,
        "",
        "### Runtime (what the router sees)",
        "",
        "`python -m classifiers.training.runtime_eval` runs the shipped `SignalEngine` (windows, span",
        "decoding as in `signals.json` with runs cut where their type changes, the edges of",
        "addresses repaired (`classifiers/addresses.py`), model spans merged with the",
        "checksum-validated patterns, names and addresses checked by the PII second opinion, as",
        "`serve` runs it) on the same dev rows. 95% bootstrap intervals.",
        "",
        "| signal | figure | target |",
        "| --- | --- | --- |",
        f"| PII entity F1, all types | {p['entity_f1']} {p['entity_f1_ci95']} | >= 0.90 |",
        f"| PII entity F1, pattern types ({', '.join(PATTERN_TYPES)}) | {p['pattern_types_f1']} "
        f"{p['pattern_types_f1_ci95']} | >= 0.97 |",
        "| PII per type | " + ", ".join(f"{t} {v}" for t, v in p["per_type_f1"].items()) + " | |",
        f"| prompt attack ROC-AUC | {a['roc_auc']} | >= 0.98 |",
        f"| prompt attack recall / benign flagged at the shipped threshold | "
        f"{a['recall_at_shipped_threshold']} / {a['benign_flagged_at_shipped_threshold']} | |",
        f"| domain accuracy (question text as the runtime reads it) | "
        f"{results['domain_question_only']['accuracy']} | >= 0.85 |",
        f"| domain accuracy on {r['n']} hand-written request-style prompts, 5 per category "
        f"(`data/probe/domain_requests.jsonl`, never trained on) | {r['accuracy']} "
        f"{r['accuracy_ci95']} | |",
        "",
        "Probe confusions (label -> predicted): "
        + (", ".join(f"{k} ({v})" for k, v in r["confusions"].items()) or "none")
        + ".",
        "",
        MARK_END,
    ]
    write_card_section("\n".join(lines), MARK_BEGIN, MARK_END)


def _write_creative_card(c: dict[str, Any], dev_rate: float | None) -> None:
    flagged = ", ".join(f"`{k}` ({v})" for k, v in c["flagged"].items()) or "none"
    lines = [
        CREATIVE_BEGIN,
        "",
        "### Benign creative requests with forced tools (false positives of the attack head)",
        "",
        "Added for issue 18: replaying recorded provider traffic found benign requests refused as",
        "attacks (`chat-text-to-image-tool` of envoyproxy/ai-gateway's cassettes). "
        f"`data/probe/benign_creative_requests.jsonl` holds {c['n']} benign chat requests like it:",
        "creative asks (images, poems, logos, stories...) under persona system prompts with a",
        "forced tool, hand-written, plus the tool/persona requests of the cassettes and the",
        "replay's own false positives. Evaluation only, never trained on; the shipped model is",
        "not retrained. Scored by `python -m classifiers.training.runtime_eval --benign-creative`",
        "on the messages as the router reads them, one request at a time (in a padded batch the",
        f"scores move by up to ~0.08), at the shipped threshold ({c['threshold']}).",
        "",
        "| set | n | benign flagged (false-positive rate) [95% CI] |",
        "| --- | --- | --- |",
        f"| benign creative requests with forced tools | {c['n']} | {c['false_positive_rate']} "
        f"{c['false_positive_rate_ci95']} |",
        "| of which: hand-written / from the replayed recordings | | "
        + " / ".join(c["by_group"].values())
        + " flagged |",
        f"| for comparison: the benign rows of the attack dev split (above) | | {dev_rate} |",
        "",
        'Persona system prompts ("You are Pixel, a cheerful illustrator bot...") look like the',
        "role-play jailbreaks of the training data, and the head was never shown benign ones; a",
        "retraining with such hard negatives is future work (issue 18).",
        "",
        f"Flagged (id, attack score): {flagged}. With `model: auto` the demo policy refuses these",
        "with 403; tests/e2e/test_recorded_traffic_through_envoy.py asserts that, by name, for",
        "the replayed ones (`KNOWN_FALSE_POSITIVES`).",
        "",
        CREATIVE_END,
    ]
    write_card_section("\n".join(lines), CREATIVE_BEGIN, CREATIVE_END)


if __name__ == "__main__":
    main()
