"""Temperatures and thresholds from calibration rows only (never dev, never training rows).

1. Run the int8 graph raw over every head's calibration rows: the calibration splits of stages
   1-2 (`data.py`) and the source-split calibration rows of `sources.py` (held-out attack
   families, benign sources, harmful benchmarks, request data sets, phone regions).
2. Fit one temperature per head by minimizing the negative log-likelihood (`classifiers/
   calibration.py` applies it at runtime): domain and PII tokens as softmaxes, attack, harm and
   difficulty as sigmoids (difficulty against its soft target).
3. Derive every threshold on the calibrated scale with the rules of the model card.
"""

from __future__ import annotations

import random

import numpy as np

from classifiers import calibration
from classifiers.pii import VALIDATED_TYPES

from .common import DOMAIN_LABELS, TRAIN_LENGTH, format_mc
from .metrics import apgr, cpt, decode_pred_spans, pii_gold, threshold_at_fpr
from .stage3 import document_view, twins

DOM2ID = {d: i for i, d in enumerate(DOMAIN_LABELS)}
MAX_FPR = 0.01
MAX_PII_FREE = 0.02


def pii_free_flagged(probs: list[np.ndarray], t: float) -> float:
    """Share of texts with at least one model span the runtime would keep at threshold `t`."""
    hits = 0
    for p in probs:
        valid = [True] * len(p)
        valid[0] = valid[-1] = False  # [CLS], [SEP]
        # Model spans of the types the validators own are dropped at runtime: they never flag.
        if any(typ not in VALIDATED_TYPES for typ, _, _ in decode_pred_spans(p, valid, t)):
            hits += 1
    return hits / max(1, len(probs))


def guard_views(rows: list[dict], clean: dict[str, str], seed: int) -> list[str]:
    """Texts as a training row reads them (`stage3.document_view`), with a fixed seed."""
    rng = random.Random(seed)
    return [document_view(r, clean, rng) for r in rows]


def calibration_sets(d: dict, s: dict | None) -> dict:
    """Texts and labels per head, from the calibration splits only."""
    dom = d["domain_calib"]
    out: dict = {
        "domain_texts": [format_mc(r["text"], r["options"]) for r in dom],
        "domain_y": [DOM2ID[r["label"]] for r in dom],
        "difficulty": ([r["weak"] for r in dom], [r["strong"] for r in dom]),
        "attack_texts": [r["text"] for r in d["attack_calib"]],
        "attack_y": [int(r["attack"]) for r in d["attack_calib"]],
        "harm_texts": [r["text"] for r in d["attack_calib"] if not r["attack"]],
        "harm_y": [0 for r in d["attack_calib"] if not r["attack"]],
        "pii_rows": list(d["pii_calib"]),
    }
    if s is not None:
        req = s["domain_requests"]["calib"]
        out["domain_texts"] += [r["text"] for r in req]
        out["domain_y"] += [DOM2ID[r["label"]] for r in req]
        clean = twins(s["indirect"]["train"] + s["indirect"]["calib"])
        for name, attack in (("indirect", None), ("more_attacks", 1), ("hard_benign", 0)):
            rows = s[name]["calib"]
            out["attack_texts"] += guard_views(rows, clean, seed=11)
            out["attack_y"] += [
                int(r["label"] == "attack") if attack is None else attack for r in rows
            ]
        harmful = [r["text"] for r in s["harmful"]["calib"]]
        out["attack_texts"] += harmful  # harmful requests are not attacks
        out["attack_y"] += [0] * len(harmful)
        benign = [r for r in s["indirect"]["calib"] if r["label"] == "benign"]
        benign += s["hard_benign"]["calib"]
        out["harm_texts"] += harmful + guard_views(benign, {}, seed=12) + [r["text"] for r in req]
        out["harm_y"] += [1] * len(harmful) + [0] * (len(benign) + len(req))
        out["pii_rows"] += s["phones"]["calib"]
        # Prompts without PII, for the PII threshold's false-positive bound.
        out["pii_free_texts"] = (
            [r["text"] for r in d["attack_calib"] if r["kind"] == "benign"]
            + guard_views(s["hard_benign"]["calib"], {}, seed=13)
            + guard_views(
                [r for r in s["indirect"]["calib"] if r["label"] == "benign"], {}, seed=14
            )
            + [r["text"] for r in req]
            + [r["text"] for r in s["phones"]["calib"] if not r["entities"]]
        )
    return out


def fit_temperature(nll, lo: float = -2.5, hi: float = 2.5, steps: int = 60) -> float:
    """The temperature minimizing `nll(T)`: golden-section search over log T in [lo, hi] (the
    NLL of a temperature-scaled head is unimodal in log T)."""
    g = (np.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(float(np.exp(c))), nll(float(np.exp(d)))
    for _ in range(steps):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(float(np.exp(c)))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(float(np.exp(d)))
    return round(float(np.exp((a + b) / 2)), 4)


def _binary_nll(p: np.ndarray, y: np.ndarray):
    def nll(t: float) -> float:
        q = np.clip(calibration.sigmoid_scaled(p, t).astype(np.float64), 1e-7, 1 - 1e-7)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    return nll


def _softmax_nll(p: np.ndarray, y: np.ndarray):
    def nll(t: float) -> float:
        q = calibration.softmax_scaled(p, t).astype(np.float64)
        return float(-np.mean(np.log(np.clip(q[np.arange(len(y)), y], 1e-7, 1.0))))

    return nll


def token_arrays(tok, rows: list[dict], probs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every labelled token's probabilities and gold tag, flat."""
    _, gold = pii_gold(tok, rows, TRAIN_LENGTH)
    ps, ys = [], []
    for g, p in zip(gold, probs):
        g = np.asarray(g)
        keep = g != -100
        ps.append(p[: len(g)][keep])
        ys.append(g[keep])
    return np.concatenate(ps), np.concatenate(ys)


def ece_report(heads: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Per head: ECE of (confidence, correct) pairs (see `calibration.expected_calibration_error`)."""
    return {
        k: round(calibration.expected_calibration_error(c, y), 4) for k, (c, y) in heads.items()
    }


def reliability_pairs(pred: dict, sets: dict, pii: tuple[np.ndarray, np.ndarray]) -> dict:
    """(confidence, correct) per head for the ECE: the top class for the softmax heads, P(positive)
    against the label for the binary ones, the soft target for difficulty."""
    dom_p, dom_y = pred["domain"], np.asarray(sets["domain_y"])
    weak, strong = (np.asarray(x) for x in sets["difficulty"])
    tok_p, tok_y = pii
    return {
        "domain": (dom_p.max(1), dom_p.argmax(1) == dom_y),
        "prompt_attack": (pred["attack"], np.asarray(sets["attack_y"])),
        "harmful": (pred["harmful"], np.asarray(sets["harm_y"])),
        "difficulty": (pred["difficulty"], (strong - weak + 1) / 2.0),
        "pii": (tok_p.max(1), tok_p.argmax(1) == tok_y),
    }


def calibrate(int8_path, tok, d: dict, s: dict | None, pii_f1) -> dict:
    """`{"temperatures", "thresholds", "calibration"}` for `signals.json`. `pii_f1(gold, probs,
    t, runs=True)` scores the PII threshold grid (train.pii_f1)."""
    from .infer import OnnxRunner

    sets = calibration_sets(d, s)
    runner = OnnxRunner(int8_path, temperatures={})
    run = lambda texts: runner.run_texts(tok, texts, TRAIN_LENGTH)  # noqa: E731
    raw_dom = run(sets["domain_texts"])
    raw_att = run(sets["attack_texts"])
    raw_harm = run(sets["harm_texts"])
    raw_pii = run([r["text"] for r in sets["pii_rows"]])
    has_harm = not np.isnan(raw_harm["harmful"]).any()
    n_mmlu = len(d["domain_calib"])
    weak, strong = (np.asarray(x, dtype=float) for x in sets["difficulty"])
    tok_p, tok_y = token_arrays(tok, sets["pii_rows"], raw_pii["pii"])
    y_dom = np.asarray(sets["domain_y"])
    y_att = np.asarray(sets["attack_y"], dtype=float)
    # The attack head's negatives include every domain question (MMLU and requests).
    att_p = np.concatenate([raw_att["attack"], raw_dom["attack"]])
    att_y = np.concatenate([y_att, np.zeros(len(y_dom))])
    temps = {
        "domain": fit_temperature(_softmax_nll(raw_dom["domain"], y_dom)),
        "prompt_attack": fit_temperature(_binary_nll(att_p, att_y)),
        "difficulty": fit_temperature(
            _binary_nll(raw_dom["difficulty"][:n_mmlu], (strong - weak + 1) / 2.0)
        ),
        "pii": fit_temperature(_softmax_nll(tok_p, tok_y)),
    }
    harm_y = np.asarray(sets["harm_y"], dtype=float)
    if has_harm:
        harm_p = np.concatenate([raw_harm["harmful"], raw_dom["harmful"]])
        harm_y = np.concatenate([harm_y, np.zeros(len(y_dom))])
        temps["harmful"] = fit_temperature(_binary_nll(harm_p, harm_y))

    def cal(head: str, p: np.ndarray) -> np.ndarray:
        return calibration.scaled(head, p, temps.get(head, 1.0))

    dom_p = cal("domain", raw_dom["domain"])
    att_c = cal("prompt_attack", att_p)
    dif_c = cal("difficulty", raw_dom["difficulty"][:n_mmlu])
    neg = att_c[att_y == 0]
    t_att = threshold_at_fpr(neg, MAX_FPR)
    pos = att_c[att_y == 1]
    pii_probs = [cal("pii", p) for p in raw_pii["pii"]]
    _, gold = pii_gold(tok, sets["pii_rows"], TRAIN_LENGTH)
    grid = [round(x, 2) for x in np.arange(0.2, 0.96, 0.05)]
    f1s = {t: pii_f1(gold, pii_probs, t, runs=True) for t in grid}
    free = sets.get("pii_free_texts", [])
    flagged: dict[float, float] = {}
    if free:
        free_probs = [cal("pii", p) for p in run(free)["pii"]]
        flagged = {t: pii_free_flagged(free_probs, t) for t in grid}
    # The best F1 among the thresholds that flag at most MAX_PII_FREE of the PII-free prompts
    # (a boundary keeps every flagged request private). When none does, the model's false
    # positives are confident ones no threshold removes (1.1.0: 20% still flagged at 0.95, at a
    # cost of 13 points of F1), so the best-F1 threshold stays and the bound is reported unmet.
    allowed = [t for t in grid if flagged.get(t, 0.0) <= MAX_PII_FREE] or grid
    t_pii = max(allowed, key=lambda t: (round(f1s[t], 4), -abs(t - 0.5)))
    share = cpt(dif_c, weak, strong, 0.5)
    k = max(1, int(round(share * n_mmlu)))
    t_dif = float(np.sort(dif_c)[::-1][k - 1])
    thresholds = {
        "prompt_attack": round(t_att, 6),
        "pii_token": t_pii,
        "difficulty": round(t_dif, 6),
    }
    report = {
        "prompt_attack": {
            "rule": "lowest threshold with <=1% FPR on the calibration negatives: benign_prompts "
            "calib sources, hard-negative calib templates, MMLU calib rows, and (source split) "
            "the held-out hard-benign and indirect clean-twin calib rows, harmful requests of "
            "the calib benchmarks and the calib request data sets",
            "n_negatives": int(len(neg)),
            "n_positives": int(len(pos)),
            "calib_recall": float(np.mean(pos >= t_att)),
            "calib_fpr": float(np.mean(neg >= t_att)),
        },
        "pii_token": {
            "rule": "token is an entity when 1-P(O) >= t (run-based span decoding); t maximizes "
            "exact-span entity F1 on the PII calibration templates and calib phone regions "
            "(grid 0.20..0.80)",
            "calib_f1_by_threshold": f1s,
            "pii_free_flagged_by_threshold": flagged,
            "bound": f"at most {MAX_PII_FREE:.0%} of the calibration prompts without PII (benign, "
            "hard-benign, clean documents, request data sets, number-like negatives) with a model "
            "span of a type the validators do not own; the best F1 among those thresholds, or "
            "among all when none meets it",
            "bound_met": bool(flagged) and flagged[t_pii] <= MAX_PII_FREE,
        },
        "difficulty": {
            "rule": "score of the last row routed to the strong model at CPT(50%) on the "
            "calibration rows (share of strong calls recovering 50% of the 8B->70B gap)",
            "calib_cpt50": share,
            "calib_apgr": apgr(dif_c, weak, strong),
        },
    }
    raw = {
        "domain": raw_dom["domain"],
        "attack": att_p,
        "difficulty": raw_dom["difficulty"][:n_mmlu],
    }
    calibrated = {"domain": dom_p, "attack": att_c, "difficulty": dif_c}
    if has_harm:
        harm_c = cal("harmful", harm_p)
        hneg = harm_c[harm_y == 0]
        t_harm = threshold_at_fpr(hneg, MAX_FPR)
        thresholds["harmful"] = round(t_harm, 6)
        report["harmful"] = {
            "rule": "lowest threshold with <=1% FPR on the calibration rows that are not harmful "
            "requests (benign and hard-benign calib rows, indirect clean twins, domain questions)",
            "n_negatives": int(len(hneg)),
            "n_positives": int((harm_y == 1).sum()),
            "calib_recall": float(np.mean(harm_c[harm_y == 1] >= t_harm)),
            "calib_fpr": float(np.mean(hneg >= t_harm)),
        }
        raw["harmful"], calibrated["harmful"] = harm_p, harm_c
    else:
        raw["harmful"] = calibrated["harmful"] = np.zeros(0)
        harm_y = np.zeros(0)
    labels = {
        **sets,
        "attack_y": att_y,
        "harm_y": harm_y,
        "domain_y": y_dom,
        "difficulty": (weak, strong),
    }
    report["temperature"] = {
        "rule": "one temperature per head minimizing the negative log-likelihood on the same "
        "calibration rows (softmax heads: domain, PII tokens; sigmoid heads: attack, harmful, "
        "difficulty against its soft target); ECE with 15 equal-width bins",
        "ece_before": ece_report(reliability_pairs(raw, labels, (tok_p, tok_y))),
        "ece_after": ece_report(reliability_pairs(calibrated, labels, (cal("pii", tok_p), tok_y))),
    }
    if not has_harm:
        for k in ("ece_before", "ece_after"):
            report["temperature"][k].pop("harmful")
    return {"temperatures": temps, "thresholds": thresholds, "calibration": report}


def main() -> None:
    """Re-derive temperatures and thresholds for a model directory in place: everything else in
    its signals.json (the paragraph threshold of `bench/classifier_sizes.py`) is kept."""
    import argparse
    import json

    from . import data as data_mod
    from . import sources
    from .common import add_model_dir, load_tokenizer, model_dir_of
    from .train import pii_f1

    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    add_model_dir(ap, "is recalibrated the same way")
    model_dir, _ = model_dir_of(ap.parse_args())
    d, s = data_mod.load_all(), sources.load()
    cal = calibrate(model_dir / "signals.int8.onnx", load_tokenizer(), d, s, pii_f1)
    path = model_dir / "signals.json"
    spec = json.loads(path.read_text())
    spec["thresholds"].update(cal["thresholds"])
    spec["temperatures"] = cal["temperatures"]
    spec.setdefault("calibration", {}).update(cal["calibration"])
    path.write_text(json.dumps(spec, indent=1) + "\n")
    print(json.dumps({"thresholds": cal["thresholds"], "temperatures": cal["temperatures"]}))


if __name__ == "__main__":
    main()
