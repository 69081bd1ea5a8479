"""The profiles side by side: the distilled student against its teacher on every dev metric.

python -m classifiers.training.compare      # after evaluate.py and runtime_eval.py ran for both

Reads the `metrics.json` of `classifiers/models/` (accurate) and `classifiers/models/fast/`
(fast), writes the "Profiles" section of MODEL_CARD.md and `fast/comparison.json`. The rule a
student must meet to be the default: it loses at most one point (0.01) on every headline metric
below, where "loses" means lower for a higher-is-better metric and higher for a rate of false
positives or a cost.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import MODELS_DIR, write_card_section

BEGIN = "<!-- profiles:begin -->"
END = "<!-- profiles:end -->"
MAX_LOSS = 0.01

# (path in metrics.json, what it is, higher is better)
HEADLINE: list[tuple[str, str, bool]] = [
    ("domain.canonical.macro_f1", "domain macro-F1, questions", True),
    ("domain.canonical.accuracy", "domain accuracy, questions", True),
    ("domain.request_style.macro_f1", "domain macro-F1, request-style", True),
    ("domain.request_style.accuracy", "domain accuracy, request-style", True),
    ("runtime.domain_question_only.accuracy", "runtime domain accuracy, question only", True),
    ("runtime.domain_requests_probe.accuracy", "runtime domain accuracy, request probe", True),
    ("difficulty.apgr", "difficulty APGR", True),
    ("difficulty.cpt50", "difficulty CPT(50%) (share of strong calls)", False),
    ("prompt_attack.vs_benign_prompts.roc_auc", "attack ROC-AUC vs benign", True),
    ("prompt_attack.vs_benign_prompts.recall_at_1pct_fpr", "attack recall @1% FPR vs benign", True),
    ("prompt_attack.vs_all_negatives.roc_auc", "attack ROC-AUC vs all negatives", True),
    (
        "prompt_attack.vs_all_negatives.recall_at_1pct_fpr",
        "attack recall @1% FPR vs all negatives",
        True,
    ),
    ("prompt_attack.at_shipped_threshold.all_positive_recall", "attack recall at threshold", True),
    ("prompt_attack.at_shipped_threshold.benign_fpr", "attack FPR at threshold, benign", False),
    ("prompt_attack.at_shipped_threshold.mmlu_fpr", "attack FPR at threshold, MMLU", False),
    (
        "prompt_attack.at_shipped_threshold.hard_negative_fpr",
        "attack FPR at threshold, hard negatives",
        False,
    ),
    ("runtime.prompt_attack.roc_auc", "runtime attack ROC-AUC", True),
    ("runtime.prompt_attack.recall_at_shipped_threshold", "runtime attack recall", True),
    (
        "runtime.prompt_attack.benign_flagged_at_shipped_threshold",
        "runtime attack FPR, benign",
        False,
    ),
    ("runtime_benign_creative.false_positive_rate", "runtime attack FPR, creative requests", False),
    ("pii.entity_f1", "PII entity F1, model only", True),
    ("pii.entity_f1_presidio", "PII entity F1, model only, presidio", True),
    ("pii.entity_f1_faker", "PII entity F1, model only, chat templates", True),
    ("runtime.pii.entity_f1", "runtime PII entity F1 (model + validators)", True),
    ("runtime.pii.pattern_types_f1", "runtime PII F1, pattern types", True),
]


def get(m: dict[str, Any], path: str) -> float | None:
    node: Any = m
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def compare(teacher: dict[str, Any], student: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for path, what, higher in HEADLINE:
        t, s = get(teacher, path), get(student, path)
        loss = None if t is None or s is None else (t - s if higher else s - t)
        rows.append(
            {
                "metric": path,
                "what": what,
                "higher_is_better": higher,
                "accurate": t,
                "fast": s,
                "loss": None if loss is None else round(loss, 4),
                "within_one_point": None if loss is None else loss <= MAX_LOSS + 1e-9,
            }
        )
    per_type = []
    t_types = teacher.get("runtime", {}).get("pii", {}).get("per_type_f1", {})
    s_types = student.get("runtime", {}).get("pii", {}).get("per_type_f1", {})
    for typ in sorted(t_types):
        per_type.append({"type": typ, "accurate": t_types[typ], "fast": s_types.get(typ)})
    measured = [r for r in rows if r["loss"] is not None]
    return {
        "rule": f"the student loses at most {MAX_LOSS} on every headline metric",
        "rows": rows,
        "runtime_pii_per_type_f1": per_type,
        "missing": [r["metric"] for r in rows if r["loss"] is None],
        "met": bool(measured)
        and all(r["within_one_point"] for r in measured)
        and len(measured) == len(rows),
        "worst": max(measured, key=lambda r: r["loss"]) if measured else None,
    }


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def render(result: dict[str, Any], t_ver: str, s_ver: str, notes: str = "") -> str:
    lines = [
        BEGIN,
        "## Profiles: `fast` (distilled student) against `accurate` (this model)",
        "",
        f"`accurate` is `{t_ver}` (`classifiers/models/`), `fast` is `{s_ver}` "
        "(`classifiers/models/fast/`, its own `signals.json`, `metrics.json` and thresholds). "
        "Select one with `meritorder serve --classifier-profile fast|accurate` (also `classify`, "
        "`route`, `explain`, `eval`). The student was trained by `python -m "
        "classifiers.training.distill` (recipe in its docstring and `fast/train_summary.json`) "
        "on the teacher's outputs over the teacher's own training mix; its thresholds are "
        "calibrated on the calibration splits by the teacher's rules; the figures below are "
        "the same dev splits through the same `evaluate.py` / `runtime_eval.py`.",
        "",
        f"Rule for the default: the student loses at most {MAX_LOSS:.2f} (one point) on every "
        "row. **Result: "
        + ("met" if result["met"] else "not met")
        + "**"
        + (
            f" (worst: {result['worst']['what']}, {result['worst']['loss']:+.4f})."
            if result["worst"]
            else "."
        ),
        "",
        "| metric | accurate | fast | loss | within 1 pt |",
        "|---|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        ok = (
            "-" if r["within_one_point"] is None else ("yes" if r["within_one_point"] else "**no**")
        )
        loss = "-" if r["loss"] is None else f"{r['loss']:+.4f}"
        arrow = "" if r["higher_is_better"] else " (lower is better)"
        lines.append(
            f"| {r['what']}{arrow} | {_fmt(r['accurate'])} | {_fmt(r['fast'])} | {loss} | {ok} |"
        )
    if result["runtime_pii_per_type_f1"]:
        lines += [
            "",
            "Runtime PII F1 by type (small samples per type; informative, not in the rule):",
            "",
            "| type | accurate | fast |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {r['type']} | {_fmt(r['accurate'])} | {_fmt(r['fast'])} |"
            for r in result["runtime_pii_per_type_f1"]
        ]
    lines += [
        "",
        *([notes, ""] if notes else []),
        "Not in the rule: the subject-split figures (a separate domain-only run of the teacher's "
        "recipe, not a property of either shipped graph) and the held-out sources of "
        "*Source-split figures* (each profile's `metrics.json` `source_split`; compared in the "
        "notes above).",
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", type=Path, default=MODELS_DIR / "fast")
    args = ap.parse_args(argv)
    teacher = json.loads((MODELS_DIR / "metrics.json").read_text())
    student = json.loads((args.fast / "metrics.json").read_text())
    result = compare(teacher, student)
    (args.fast / "comparison.json").write_text(json.dumps(result, indent=1) + "\n")
    versions = [
        json.loads((d / "signals.json").read_text())["version"] for d in (MODELS_DIR, args.fast)
    ]
    notes = (
        (args.fast / "NOTES.md").read_text().strip() if (args.fast / "NOTES.md").exists() else ""
    )
    write_card_section(render(result, *versions, notes), BEGIN, END)
    print(json.dumps({"met": result["met"], "worst": result["worst"]}, indent=1))


if __name__ == "__main__":
    main()
