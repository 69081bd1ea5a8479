"""Distil the fused teacher into a smaller student: the `fast` profile.

python -m classifiers.training.distill --layers 3          # -> classifiers/models/fast/
python -m classifiers.training.distill --layers 2 --out classifiers/training/out/student-l2

The teacher is the shipped graph (`classifiers/models/signals.int8.onnx`, the `accurate`
profile), read through onnxruntime exactly as the router reads it. The student is the same
architecture with the encoder's bottom `--layers` layers (initialised from all-MiniLM-L6-v2) and
fresh heads. Its training signal is the teacher's outputs on every training text, for every head
(domain distribution, attack and difficulty probabilities, the PII tag distribution of every
token), plus the gold labels where a text has them (`hard_weight`). The texts are the teacher's
own training mix (`train.build_epoch`: the same sources, augmentation and PII templates), drawn
afresh for each epoch. Checkpoints are selected, and thresholds calibrated, on the calibration
splits with the teacher's rules (`train.calib_report`, `train.calibrate_thresholds`); dev is
never read here (`evaluate.py --model-dir` does that).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import pickle
import random
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from torch import nn

from . import data as data_mod
from . import sources
from .common import MODELS_DIR, OUT_DIR, PII_TAGS, SEED, load_tokenizer, seed_everything
from .infer import OnnxRunner
from .model import SignalModel
from .train import (
    build_epoch,
    calib_report,
    calibrate_thresholds,
    collate,
    compute_loss,
    export_onnx,
    make_batches,
    optimizer_for,
    run_epoch,
    run_stage3,
    tokenize_examples,
    torch_predict,
    write_spec,
)

TEACHER = MODELS_DIR / "signals.int8.onnx"
FAST_DIR = MODELS_DIR / "fast"
EPS = 1e-6


def teacher_labels(ex: list[dict], runner: OnnxRunner, log) -> None:
    """Attach the teacher's outputs to every example (`t_*`), each distinct token row run once."""
    distinct: dict[tuple[int, ...], int] = {}
    rows: list[list[int]] = []
    for e in ex:
        key = tuple(e["ids"])
        if key not in distinct:
            distinct[key] = len(rows)
            rows.append(e["ids"])
    t0 = time.time()
    out = runner.run_ids(rows, batch=32)
    log({"teacher_rows": len(rows), "examples": len(ex), "seconds": round(time.time() - t0, 1)})
    for e in ex:
        i = distinct[tuple(e["ids"])]
        e["t_domain"] = out["domain"][i].astype(np.float32)
        e["t_attack"] = float(out["attack"][i])
        e["t_difficulty"] = float(out["difficulty"][i])
        e["t_pii"] = out["pii"][i].astype(np.float16)


def collate_soft(batch: list[dict]) -> dict:
    b = collate(batch)
    n, L = b["ids"].shape
    t_pii = torch.zeros((n, L, len(PII_TAGS)))
    for i, e in enumerate(batch):
        t_pii[i, : len(e["ids"])] = torch.from_numpy(e["t_pii"].astype(np.float32))
    b["t_domain"] = torch.from_numpy(np.stack([e["t_domain"] for e in batch]))
    b["t_attack"] = torch.tensor([e["t_attack"] for e in batch])
    b["t_difficulty"] = torch.tensor([e["t_difficulty"] for e in batch])
    b["t_pii"] = t_pii
    return b


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(EPS, 1 - EPS)
    return torch.log(p) - torch.log1p(-p)


def distill_loss(out: dict, b: dict, cfg: dict) -> tuple[torch.Tensor, dict]:
    """The teacher's outputs on every row for every head, plus the gold labels where present.

    Domain: KL divergence at temperature T. Attack and difficulty: BCE against the teacher's
    probability plus a small MSE between logits, which keeps the teacher's ranking among rows the
    teacher is already sure of (the low-FPR region the attack threshold is calibrated in). PII:
    cross-entropy against the teacher's tag distribution of every attended token."""
    w, T = cfg["loss_weights"], cfg["temperature"]
    parts = {}
    s_log = nn.functional.log_softmax(out["domain"] / T, -1)
    t_p = nn.functional.softmax(torch.log(b["t_domain"] + EPS) / T, -1)
    l_dom = nn.functional.kl_div(s_log, t_p, reduction="batchmean") * T * T
    total = w["domain"] * l_dom
    parts["kd_domain"] = float(l_dom)
    for k in ("attack", "difficulty"):
        t = b[f"t_{k}"]
        l_k = nn.functional.binary_cross_entropy_with_logits(out[k], t)
        l_k = l_k + cfg["logit_mse"] * nn.functional.mse_loss(
            out[k].clamp(-8, 8), _logit(t).clamp(-8, 8)
        )
        total = total + w[k] * l_k
        parts[f"kd_{k}"] = float(l_k)
    mask = b["mask"].bool()
    logp = nn.functional.log_softmax(out["pii"], -1)
    l_pii = -(b["t_pii"] * logp).sum(-1)[mask].mean()
    total = total + w["pii"] * l_pii
    parts["kd_pii"] = float(l_pii)
    hard, hard_parts = compute_loss(out, b, w)
    total = total + cfg["hard_weight"] * hard
    parts.update(hard_parts)
    return total, parts


def train_student(d: dict, tok, cfg: dict, log) -> tuple[dict, dict]:
    seed_everything(cfg["seed"], cfg["threads"])
    rng = random.Random(cfg["seed"])
    runner = OnnxRunner(TEACHER, threads=cfg["threads"])
    # The teacher's labels, kept for a rerun; keyed by the teacher's bytes, so a retrained
    # teacher never lends its predecessor's labels.
    teacher = hashlib.sha256(TEACHER.read_bytes()).hexdigest()[:12]
    cache = OUT_DIR / f"distill_epochs_{cfg['seed']}_{cfg['epochs']}_{teacher}.pkl"
    if cache.exists():
        epochs = pickle.loads(cache.read_bytes())
        log({"teacher_labels": str(cache)})
    else:
        epochs = []
        for _ in range(cfg["epochs"]):
            ex = build_epoch(d, rng, cfg)
            tokenize_examples(tok, ex)
            teacher_labels(ex, runner, log)
            epochs.append(ex)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(epochs))
    del runner
    model = SignalModel(layers=cfg["layers"])
    model.train()
    total = sum(math.ceil(len(ex) / cfg["batch_size"]) for ex in epochs)
    if cfg.get("max_steps"):
        total = min(total, cfg["max_steps"])
    opt, sched = optimizer_for(model, cfg, total)
    step, t0 = 0, time.time()
    best, best_state, history = -1e9, None, []
    for epoch, ex in enumerate(epochs):
        step = run_epoch(
            model,
            (collate_soft(batch) for batch in make_batches(ex, cfg["batch_size"], rng)),
            lambda out, b: distill_loss(out, b, cfg),
            (opt, sched),
            (step, total, epoch, t0),
            log,
        )
        rep = calib_report(lambda texts: torch_predict(model, tok, texts), tok, d)
        rep["epoch"] = epoch
        if rep["score"] > best:
            best, best_state = rep["score"], copy.deepcopy(model.state_dict())
            rep["selected"] = True
        rep["elapsed_s"] = round(time.time() - t0, 1)
        history.append(rep)
        log({"calib": rep})
        if step >= total:
            break
    assert best_state is not None
    return best_state, {
        "steps": step,
        "train_seconds": round(time.time() - t0, 1),
        "history": history,
        "examples_per_epoch": [len(ex) for ex in epochs],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=3, help="encoder layers the student keeps")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=0, help="cap optimizer steps (smoke tests)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=FAST_DIR, help="the student's model directory")
    ap.add_argument(
        "--resume",
        type=Path,
        help="a distilled student's state (out/student-lN/model.pt): skip distillation and run "
        "only stage 3 from it",
    )
    args = ap.parse_args()
    wall0 = time.time()
    out_dir: Path = args.out.resolve()
    work = OUT_DIR / f"student-l{args.layers}"
    work.mkdir(parents=True, exist_ok=True)
    logf = open(work / "distill_log.jsonl", "a", encoding="utf-8")

    def log(obj):
        line = json.dumps(obj)
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    data_mod.prepare(verbose=False)
    d = data_mod.load_all()
    tok = load_tokenizer()
    cfg = {
        "seed": SEED + 16,
        "threads": args.threads,
        "layers": args.layers,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "batch_size": 32,
        "lr": 1e-4,
        "head_lr": 1e-3,
        # the teacher's final data mix: stage 1's proportions, stage 2's PII labels and requests
        "pro_frac": 1.0,
        "extra_frac": 0.45,
        "attack_frac": 1.5,
        "pii_frac": 1.3,
        "pii_key": "pii_train",
        "request_frac": 0.5,
        "loss_weights": {"domain": 1.0, "attack": 1.0, "difficulty": 0.5, "pii": 1.0},
        "temperature": 2.0,
        "logit_mse": 0.05,
        "hard_weight": 0.5,
    }
    log({"config": cfg})
    summary: dict = {}
    if args.resume:
        state, info = torch.load(args.resume), {"resumed_from": str(args.resume)}
    else:
        state, info = train_student(d, tok, cfg, log)
        torch.save(state, work / "model.pt")
    # Stage 3 as for the teacher (train.run_stage3): the source-split data and the harm head,
    # from gold labels (the teacher's stage-3 outputs are not distilled).
    sources.prepare(verbose=False)
    s = sources.load()
    state = run_stage3(
        d, s, tok, dict(cfg, lr=3e-5), state, summary, log, args.max_steps, work / "model_stage3.pt"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    int8 = out_dir / "signals.int8.onnx"
    check = export_onnx(state, tok, work / "signals.fp32.onnx", int8, layers=args.layers)
    log({"export": check})
    cal = calibrate_thresholds(int8, tok, d, s)
    log({"thresholds": cal["thresholds"]})
    version = f"signals-minilm-l{args.layers}-distilled-1.1.0"
    base = (
        f"distilled from signals-minilm-l6-mt-1.0.0: the bottom {args.layers} layers of "
        "sentence-transformers/all-MiniLM-L6-v2 (BertModel, hidden 384, uncased), then stage 3"
    )
    write_spec(out_dir, version, base, cal)
    shutil.copyfile(MODELS_DIR / "tokenizer.json", out_dir / "tokenizer.json")
    summary = {
        **summary,
        "version": version,
        "teacher": "classifiers/models/signals.int8.onnx",
        "torch": torch.__version__,
        "config": cfg,
        "distill": info,
        "export_check": check,
        "total_wall_seconds": round(time.time() - wall0, 1),
    }
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    log({"done": summary["total_wall_seconds"]})


if __name__ == "__main__":
    main()
