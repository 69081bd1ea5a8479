"""Data prep + multi-task training + ONNX export + int8 quantization + threshold calibration.

python -m classifiers.training.train            # full, deterministic run
python -m classifiers.training.train --max-steps 20 --subject-max-steps 5   # pipeline smoke test
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from torch import nn

from . import data as data_mod
from . import sources
from .common import (
    DOMAIN_LABELS,
    MAX_LENGTH,
    MODELS_DIR,
    ONNX_INPUTS,
    ONNX_OUTPUTS,
    OUT_DIR,
    PII_TAGS,
    SEED,
    STRONG_MODEL,
    TRAIN_LENGTH,
    VERSION,
    WEAK_MODEL,
    base_model_dir,
    format_mc,
    load_tokenizer,
    seed_everything,
    write_json,
)
from .metrics import (
    apgr,
    decode_pred_spans,
    decode_spans,
    f1_from_counts,
    macro_f1,
    pii_counts,
    pii_gold,
    pii_predict_tags,
    roc_auc,
    token_labels,
)
from .model import ExportWrapper, SignalModel

DOM2ID = {d: i for i, d in enumerate(DOMAIN_LABELS)}

REQUEST_WRAPS = [
    "Can you help me with this: {q}",
    "Explain {q}",
    "I'm studying for an exam. {q}",
    "Quick question: {q}",
    "{q} Please explain your reasoning.",
    "Help me understand this problem: {q}",
    "My professor asked: {q} How would you answer?",
    "Here's a question from my homework:\n{q}\nWhat is the answer?",
    "Answer the following question.\n\n{q}",
    "Could you walk me through this? {q}",
    "{q}\nThanks!",
    "I'm confused about this one. {q}",
    "Can you explain the answer to: {q}",
    "hey so {q}",
    "I got this wrong on a quiz, why? {q}",
    "Please solve: {q}",
    "ELI5: {q}",
    "Write a short explanation for the following.\n{q}",
    "I need a detailed answer. {q}",
]


def augment_question(q: str, options: list[str], rng: random.Random) -> str:
    """Mirror real traffic: requests instead of bare MCQs, options often dropped, casing and truncation."""
    r = rng.random()
    if r < 0.3:
        text = format_mc(q, options)
    elif r < 0.5:
        text = q
    elif r < 0.85:
        body = format_mc(q, options) if rng.random() < 0.35 else q
        text = rng.choice(REQUEST_WRAPS).format(q=body)
    else:
        words = q.split()
        k = rng.randint(min(8, len(words)), max(min(8, len(words)), min(30, len(words))))
        text = " ".join(words[:k])
        if rng.random() < 0.5:
            text = rng.choice(REQUEST_WRAPS).format(q=text)
    if rng.random() < 0.15:
        text = text.lower()
    return text


def resample(rows: list, frac: float, rng: random.Random) -> list:
    whole = int(math.floor(frac))
    out = rows * whole
    rest = frac - whole
    if rest > 0:
        out += rng.sample(rows, int(round(rest * len(rows))))
    return out


def build_epoch(
    d: dict, rng: random.Random, cfg: dict, domain_only: bool = False, subject: dict | None = None
) -> list[dict]:
    ex = []
    if subject is None:
        pro_rows, extra_rows = d["domain_train"], d["domain_extra_train"]
    else:
        pro_rows = [d["domain_pro"][i] for i in subject["train_pro"]]
        extra_rows = [d["domain_extra"][i] for i in subject["train_extra"]]
    for r in resample(pro_rows, cfg["pro_frac"], rng):
        e = {"text": augment_question(r["text"], r["options"], rng), "domain": DOM2ID[r["label"]]}
        if not domain_only:
            e["attack"] = 0.0
            if "weak" in r and subject is None:
                e["difficulty"] = (
                    r["strong"] - r["weak"] + 1
                ) / 2.0  # soft target: expected gain of the strong model
        ex.append(e)
    for r in resample(extra_rows, cfg["extra_frac"], rng):
        e = {"text": augment_question(r["text"], r["options"], rng), "domain": DOM2ID[r["label"]]}
        if not domain_only:
            e["attack"] = 0.0
        ex.append(e)
    if cfg.get("request_frac"):  # stage 2: requests about each subject, as people ask them
        for r in resample(d["domain_requests_train"], cfg["request_frac"], rng):
            ex.append({"text": r["text"], "domain": DOM2ID[r["label"]], "attack": 0.0})
    if not domain_only:
        for r in resample(d["attack_train"], cfg["attack_frac"], rng):
            text = r["text"].lower() if rng.random() < 0.1 else r["text"]
            ex.append({"text": text, "attack": float(r["attack"])})
        for r in resample(d[cfg.get("pii_key", "pii_train")], cfg["pii_frac"], rng):
            ex.append({"text": r["text"], "entities": r["entities"], "attack": 0.0})
    rng.shuffle(ex)
    return ex


def tokenize_examples(tok, ex: list[dict]) -> None:
    """Token ids (and PII tags) for every example given as text; rows built as token ids
    (stage 4's views of long requests) are kept as they are."""
    ex = [e for e in ex if "ids" not in e]
    enc = tok(
        [e["text"] for e in ex],
        truncation=True,
        max_length=TRAIN_LENGTH,
        return_offsets_mapping=True,
    )
    for e, ids, offs in zip(ex, enc["input_ids"], enc["offset_mapping"]):
        e["ids"] = ids
        if "entities" in e:
            e["pii"] = token_labels(offs, e["entities"], len(ids))


def make_batches(ex: list[dict], bs: int, rng: random.Random) -> list[list[dict]]:
    """Length-bucketed batches (sort within chunks of 50 batches), batch order shuffled."""
    batches = []
    chunk = bs * 50
    for c in range(0, len(ex), chunk):
        part = sorted(ex[c : c + chunk], key=lambda e: len(e["ids"]))
        batches += [part[i : i + bs] for i in range(0, len(part), bs)]
    rng.shuffle(batches)
    return batches


def collate(batch: list[dict]) -> dict:
    L = max(len(e["ids"]) for e in batch)
    n = len(batch)
    ids = torch.zeros((n, L), dtype=torch.long)
    mask = torch.zeros((n, L), dtype=torch.long)
    dom = torch.full((n,), -100, dtype=torch.long)
    att = torch.full((n,), float("nan"))
    harm = torch.full((n,), float("nan"))
    dif = torch.full((n,), float("nan"))
    pii = torch.full((n, L), -100, dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, : len(e["ids"])] = torch.tensor(e["ids"])
        mask[i, : len(e["ids"])] = 1
        if "domain" in e:
            dom[i] = e["domain"]
        if "attack" in e:
            att[i] = e["attack"]
        if "difficulty" in e:
            dif[i] = e["difficulty"]
        if "harmful" in e:
            harm[i] = e["harmful"]
        if "pii" in e:
            pii[i, : len(e["pii"])] = torch.tensor(e["pii"])
    return {
        "ids": ids,
        "mask": mask,
        "domain": dom,
        "attack": att,
        "harmful": harm,
        "difficulty": dif,
        "pii": pii,
    }


def compute_loss(out: dict, b: dict, w: dict) -> tuple[torch.Tensor, dict]:
    total = torch.zeros(())
    parts = {}
    if (b["domain"] >= 0).any():
        l = nn.functional.cross_entropy(
            out["domain"], b["domain"], ignore_index=-100, label_smoothing=0.05
        )
        total = total + w["domain"] * l
        parts["domain"] = float(l)
    for k in ("attack", "harmful", "difficulty"):
        if k not in w:
            continue
        m = ~torch.isnan(b[k])
        if m.any():
            l = nn.functional.binary_cross_entropy_with_logits(out[k][m], b[k][m])
            total = total + w[k] * l
            parts[k] = float(l)
    if (b["pii"] >= 0).any():
        l = nn.functional.cross_entropy(
            out["pii"].reshape(-1, len(PII_TAGS)), b["pii"].reshape(-1), ignore_index=-100
        )
        total = total + w["pii"] * l
        parts["pii"] = float(l)
    return total, parts


@torch.no_grad()
def torch_predict(model: SignalModel, tok, texts: list[str], bs: int = 64) -> dict:
    model.eval()
    enc = tok(texts, truncation=True, max_length=TRAIN_LENGTH)["input_ids"]
    order = np.argsort([len(x) for x in enc], kind="stable")
    res = {
        "domain": [None] * len(texts),
        "attack": np.zeros(len(texts)),
        "difficulty": np.zeros(len(texts)),
        "harmful": np.zeros(len(texts)),
        "pii": [None] * len(texts),
    }
    for s in range(0, len(order), bs):
        idx = order[s : s + bs]
        b = collate([{"ids": enc[i]} for i in idx])
        out = model(b["ids"], b["mask"])
        dp = torch.softmax(out["domain"], -1).numpy()
        pp = torch.softmax(out["pii"], -1).numpy()
        for r, i in enumerate(idx):
            res["domain"][i] = dp[r]
            res["attack"][i] = float(torch.sigmoid(out["attack"][r]))
            res["difficulty"][i] = float(torch.sigmoid(out["difficulty"][r]))
            res["harmful"][i] = float(torch.sigmoid(out["harmful"][r]))
            res["pii"][i] = pp[r, : len(enc[i])]
    model.train()
    res["domain"] = np.stack(res["domain"]) if texts else np.zeros((0, len(DOMAIN_LABELS)))
    return res


def pii_f1(
    gold: list[list[int]], probs: list[np.ndarray], threshold: float, runs: bool = False
) -> float:
    """Exact-span entity F1. runs=True: the shipped run-based decoding; False: token-argmax BIO decoding
    (used, unchanged, for checkpoint selection in both training stages)."""
    if runs:
        g_sp = [decode_spans(g) for g in gold]
        p_sp = [
            decode_pred_spans(p, [x != -100 for x in g], threshold) for g, p in zip(gold, probs)
        ]
        return f1_from_counts(pii_counts(g_sp, p_sp))
    g_sp, p_sp = [], []
    for g, p in zip(gold, probs):
        pred = pii_predict_tags(p, threshold).tolist()
        pred = [-100 if gg == -100 else t for gg, t in zip(g, pred)]
        g_sp.append(decode_spans(g))
        p_sp.append(decode_spans(pred))
    return f1_from_counts(pii_counts(g_sp, p_sp))


def calib_report(pred_fn, tok, d: dict, pii_key: str = "pii_calib") -> dict:
    """Calibration-split metrics (never dev) used for checkpoint selection."""
    dom = d["domain_calib"]
    p = pred_fn([format_mc(r["text"], r["options"]) for r in dom])
    y = np.array([DOM2ID[r["label"]] for r in dom])
    rep = {
        "domain_macro_f1": macro_f1(y, p["domain"].argmax(1), len(DOMAIN_LABELS)),
        "domain_acc": float(np.mean(p["domain"].argmax(1) == y)),
        "apgr": apgr(p["difficulty"], [r["weak"] for r in dom], [r["strong"] for r in dom]),
    }
    att = d["attack_calib"]
    pa = pred_fn([r["text"] for r in att])
    ya = np.array([r["attack"] for r in att] + [0] * len(dom))
    sa = np.concatenate([pa["attack"], p["attack"]])
    rep["attack_auc"] = roc_auc(ya, sa)
    _, gold = pii_gold(tok, d[pii_key], TRAIN_LENGTH)
    pp = pred_fn([r["text"] for r in d[pii_key]])
    rep["pii_f1"] = pii_f1(gold, pp["pii"], 0.5)
    rep["score"] = rep["domain_macro_f1"] + rep["attack_auc"] + rep["pii_f1"] + (rep["apgr"] - 0.5)
    return rep


def source_report(pred_fn, tok, d: dict, s: dict) -> dict:
    """`calib_report` plus the source-split calibration rows (`sources.py`): held-out attack
    families and benign sources, harmful benchmarks, request data sets and phone regions."""
    from .calibrate import calibration_sets

    rep = calib_report(pred_fn, tok, d)
    sets = calibration_sets(d, s)
    n_old = len(d["attack_calib"])
    pa = pred_fn(sets["attack_texts"][n_old:])
    rep["src_attack_auc"] = roc_auc(np.asarray(sets["attack_y"][n_old:]), pa["attack"])
    ph = pred_fn(sets["harm_texts"])
    rep["src_harm_auc"] = roc_auc(np.asarray(sets["harm_y"]), ph["harmful"])
    req = s["domain_requests"]["calib"]
    pd = pred_fn([r["text"] for r in req])
    y = np.array([DOM2ID[r["label"]] for r in req])
    rep["src_domain_acc"] = float(np.mean(pd["domain"].argmax(1) == y))
    _, gold = pii_gold(tok, s["phones"]["calib"], TRAIN_LENGTH)
    pp = pred_fn([r["text"] for r in s["phones"]["calib"]])
    rep["src_pii_f1"] = pii_f1(gold, pp["pii"], 0.5)
    rep["score"] += (
        rep["src_attack_auc"] + rep["src_harm_auc"] + rep["src_domain_acc"] + rep["src_pii_f1"]
    )
    return rep


def optimizer_for(model: SignalModel, cfg: dict, total: int):
    """AdamW with the encoder's and the heads' learning rates, 6% warm-up then linear decay."""
    head = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    enc = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
    opt = torch.optim.AdamW(
        [{"params": enc, "lr": cfg["lr"]}, {"params": head, "lr": cfg["head_lr"]}],
        weight_decay=0.01,
    )
    warm = max(1, int(0.06 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    return opt, sched


def run_epoch(model: SignalModel, batches, loss_of, optimizer, position, log) -> int:
    """One epoch of optimizer steps over collated `batches` (`loss_of(out, batch)` -> (loss,
    parts)), stopping at the total; logs smoothed losses every 50 steps. `position` is (step,
    total, epoch, t0); returns the step reached."""
    opt, sched = optimizer
    step, total, epoch, t0 = position
    run: dict[str, float] = {}
    for b in batches:
        if step >= total:
            break
        out = model(b["ids"], b["mask"])
        loss, parts = loss_of(out, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        for k, v in parts.items():
            run[k] = 0.98 * run.get(k, v) + 0.02 * v
        if step % 50 == 0 or step == total:
            log(
                {
                    "step": step,
                    "of": total,
                    "epoch": epoch,
                    "elapsed_s": round(time.time() - t0, 1),
                    **{f"loss_{k}": round(v, 4) for k, v in run.items()},
                }
            )
    return step


def train_model(
    d: dict,
    tok,
    cfg: dict,
    log,
    domain_only: bool = False,
    subject: dict | None = None,
    init_state: dict | None = None,
    epoch_of=None,
    report=None,
) -> tuple[dict, dict]:
    """`epoch_of(rng)`: the examples of one epoch (default: stages 1-2's `build_epoch`);
    `report(predict)`: the calibration report whose `score` selects the checkpoint."""
    seed_everything(cfg["seed"], cfg["threads"])
    rng = random.Random(cfg["seed"])
    if epoch_of is None:
        epoch_of = lambda r: build_epoch(d, r, cfg, domain_only, subject)  # noqa: E731
    if report is None:
        pii_key = "pii_calib_v1" if cfg.get("pii_key") == "pii_train_v1" else "pii_calib"
        report = lambda predict: calib_report(predict, tok, d, pii_key)  # noqa: E731
    model = SignalModel(layers=cfg.get("layers"))
    if init_state is not None:
        model.load_weights(init_state)
    model.train()
    n_per_epoch = len(epoch_of(random.Random(0)))
    total = cfg["epochs"] * math.ceil(n_per_epoch / cfg["batch_size"])
    if cfg.get("max_steps"):
        total = min(total, cfg["max_steps"])
    opt, sched = optimizer_for(model, cfg, total)
    step, t0 = 0, time.time()
    best, best_state, history = cfg.get("baseline_score", -1e9), init_state, []
    for epoch in range(cfg["epochs"]):
        ex = epoch_of(rng)
        tokenize_examples(tok, ex)
        batches = make_batches(ex, cfg["batch_size"], rng)
        step = run_epoch(
            model,
            (collate(batch) for batch in batches),
            lambda out, b: compute_loss(out, b, cfg["loss_weights"]),
            (opt, sched),
            (step, total, epoch, t0),
            log,
        )
        if domain_only:
            rep = {"epoch": epoch}
            best_state = copy.deepcopy(model.state_dict())
        else:
            rep = report(lambda texts: torch_predict(model, tok, texts))
            rep["epoch"] = epoch
            if rep["score"] > best:
                best, best_state = rep["score"], copy.deepcopy(model.state_dict())
                rep["selected"] = True
        rep["elapsed_s"] = round(time.time() - t0, 1)
        history.append(rep)
        log({"calib": rep})
        if step >= total:
            break
    return best_state, {
        "steps": step,
        "train_seconds": round(time.time() - t0, 1),
        "history": history,
        "examples_per_epoch": n_per_epoch,
    }


def export_fp32(model: SignalModel, tok, fp32_path) -> tuple[ExportWrapper, tuple]:
    """The fp32 graph of `model` (opset 17, dynamic batch and sequence axes), and the wrapper and
    sample inputs it was traced with."""
    wrapper = ExportWrapper(model.eval()).eval()
    enc = tok(["hello world, this is a test", "short"], padding=True, return_tensors="pt")
    sample = (enc["input_ids"].long(), enc["attention_mask"].long())
    fp32_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            sample,
            str(fp32_path),
            input_names=ONNX_INPUTS,
            output_names=ONNX_OUTPUTS,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "domain_probs": {0: "batch"},
                "attack_prob": {0: "batch"},
                "difficulty_prob": {0: "batch"},
                "pii_probs": {0: "batch", 1: "seq"},
                "harmful_prob": {0: "batch"},
            },
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    return wrapper, sample


def add_token_states(path) -> None:
    """Give the graph at `path` a `token_states` output: the encoder's last hidden state, the one
    the sentence heads pool (the first input of the pooling's `/model/Mul`), which the segment
    head (`classifiers/segments.py`) pools over each line. Idempotent."""
    import onnx

    from classifiers.segments import HIDDEN_OUTPUT

    graph = onnx.load(str(path))
    if any(o.name == HIDDEN_OUTPUT for o in graph.graph.output):
        return
    (pool,) = [n for n in graph.graph.node if n.name == "/model/Mul"]
    graph.graph.node.append(onnx.helper.make_node("Identity", [pool.input[0]], [HIDDEN_OUTPUT]))
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info(
            HIDDEN_OUTPUT, onnx.TensorProto.FLOAT, ["batch", "sequence", 384]
        )
    )
    onnx.save(graph, str(path))


def export_onnx(state: dict, tok, fp32_path, int8_path, layers: int | None = None) -> dict:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = SignalModel(attn_implementation="eager", layers=layers)
    model.load_weights(state)
    wrapper, (ids, mask) = export_fp32(model, tok, fp32_path)
    with torch.no_grad():
        ref = [t.numpy() for t in wrapper(ids, mask)]
    onnx.checker.check_model(str(fp32_path))
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True)
    add_token_states(int8_path)
    from .infer import OnnxRunner

    check = {}
    for name, path in (("fp32", fp32_path), ("int8", int8_path)):
        sess = OnnxRunner(path, temperatures={}).session
        got = sess.run(ONNX_OUTPUTS, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        check[name] = {o: float(np.max(np.abs(g - r))) for o, g, r in zip(ONNX_OUTPUTS, got, ref)}
    check["fp32_mb"] = round(fp32_path.stat().st_size / 2**20, 2)
    check["int8_mb"] = round(int8_path.stat().st_size / 2**20, 2)
    return check


def calibrate_thresholds(int8_path, tok, d: dict, s: dict | None = None) -> dict:
    """Temperatures and thresholds from the calibration rows (`calibrate.py`); `s`: the
    source-split rows (`sources.load()`), None for the stages 1-2 calibration splits alone."""
    from .calibrate import calibrate

    return calibrate(int8_path, tok, d, s, pii_f1)


def write_spec(model_dir, version: str, base_model: str, cal: dict) -> None:
    """`signals.json`: the contract the runtime reads next to the graph (`classifiers/spec.py`)."""
    write_json(
        model_dir / "signals.json",
        {
            "version": version,
            "max_length": MAX_LENGTH,
            "train_length": TRAIN_LENGTH,
            "base_model": base_model,
            "domain_labels": DOMAIN_LABELS,
            "pii_tags": PII_TAGS,
            "thresholds": cal["thresholds"],
            "temperatures": cal.get("temperatures", {}),
            "difficulty_pair": {"weak": WEAK_MODEL, "strong": STRONG_MODEL},
            "pooling": "masked mean over last hidden state",
            "pii_decoding": "a token is an entity token when 1 - P(O) >= thresholds.pii_token (special tokens "
            "never); each maximal run of consecutive entity tokens is one span; its type is the entity type with "
            "the largest summed B+I probability over the run",
            "inputs": [
                {"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]},
                {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "seq"]},
            ],
            "outputs": [
                {
                    "name": "domain_probs",
                    "dtype": "float32",
                    "shape": ["batch", len(DOMAIN_LABELS)],
                },
                {"name": "attack_prob", "dtype": "float32", "shape": ["batch"]},
                {"name": "difficulty_prob", "dtype": "float32", "shape": ["batch"]},
                {
                    "name": "pii_probs",
                    "dtype": "float32",
                    "shape": ["batch", "seq", len(PII_TAGS)],
                },
                *(
                    [{"name": "harmful_prob", "dtype": "float32", "shape": ["batch"]}]
                    if "harmful" in cal["thresholds"]
                    else []
                ),
            ],
            "calibration": cal["calibration"],
        },
    )


def stage1_info_from_log(path) -> dict:
    """Rebuild the stage-1 summary from out/train_log.jsonl when stage 2 is resumed in a new process."""
    hist, steps = [], 0
    for line in open(path, encoding="utf-8"):
        obj = json.loads(line)
        if "calib" in obj and "domain_macro_f1" in obj["calib"]:
            hist.append(obj["calib"])
        if "step" in obj and "loss_pii" in obj:
            steps = max(steps, obj["step"])
        if "export" in obj:
            break
    return {
        "steps": steps,
        "train_seconds": hist[-1]["elapsed_s"] if hist else None,
        "history": hist,
        "source": "reconstructed from out/train_log.jsonl",
    }


def stage3_config(cfg2: dict, max_steps: int) -> dict:
    """Stage 3: one epoch from stage 2's weights on the source-split train rows, with replay."""
    return dict(
        cfg2,
        seed=SEED + 3,
        epochs=1,
        max_steps=max_steps,
        lr=3e-5,
        head_lr=5e-4,
        # replay of stages 1-2
        pro_frac=0.25,
        extra_frac=0.1,
        request_frac=0.5,
        attack_frac=0.6,
        pii_frac=0.5,
        pii_key="pii_train",
        # new sources (stage3.py)
        indirect_frac=1.0,
        more_attacks_frac=1.0,
        hard_benign_frac=1.5,
        harmful_frac=1.5,
        domain_cap=300,
        phones_frac=1.0,
        loss_weights={"domain": 1.0, "attack": 1.0, "harmful": 1.0, "difficulty": 0.5, "pii": 1.0},
    )


def run_stage3(d, s, tok, cfg2, state, summary, log, max_steps, save_to=None) -> dict:
    """Stage 3 from `state` (a teacher's stage 2, or a distilled student when `cfg2` has
    `layers`); the result is saved to `save_to` (default out/model.pt) and returned."""
    from . import stage3

    cfg3 = stage3_config(cfg2, max_steps)
    summary["config_stage3"] = cfg3
    state3, summary["stage3"] = continue_training(
        "stage3", d, s, tok, cfg3, state, log, lambda rng: stage3.build_epoch(d, s, rng, cfg3)
    )
    torch.save(state3, save_to or OUT_DIR / "model.pt")
    return state3


def continue_training(name, d, s, tok, cfg, state, log, epoch_of) -> tuple[dict, dict]:
    """A continuation stage from `state`, its checkpoint chosen by the source-split calibration
    report (`source_report`), which is also logged before it starts."""
    report = lambda predict: source_report(predict, tok, d, s)  # noqa: E731
    model = SignalModel(layers=cfg.get("layers"))
    model.load_weights(state)
    before = report(lambda texts: torch_predict(model, tok, texts))
    log({f"calib_before_{name}": before})
    new_state, info = train_model(
        d, tok, cfg, log, init_state=state, epoch_of=epoch_of, report=report
    )
    info["calib_before"] = before
    return new_state, info


def stage4_config(cfg2: dict, max_steps: int) -> dict:
    """Stage 4: one short epoch from stage 3's weights on views of long requests, with replay."""
    return dict(
        stage3_config(cfg2, max_steps),
        seed=SEED + 4,
        lr=2e-5,
        head_lr=2e-4,
        replay_frac=0.35,  # of stage 3's epoch
        attack_requests=1_400,
        benign_requests=420,
        negatives_per_request=4,
        mine_requests=1_000,
        mined_negatives=3_000,
    )


def run_stage4(d, s, tok, cfg2, state, summary, log, max_steps, save_to=None, graph=None) -> dict:
    """Stage 4 (`filler.py`) from `state`; saved to `save_to` (default out/model.pt). Its hard
    negatives are mined with `graph`, the int8 export of `state` (exported when None)."""
    from classifiers.windows import TextTokenizer

    from . import filler
    from .infer import OnnxRunner

    cfg4 = stage4_config(cfg2, max_steps)
    summary["config_stage4"] = cfg4
    views = TextTokenizer.from_file(base_model_dir() / "tokenizer.json")
    if graph is None:
        graph = OUT_DIR / "stage3.int8.onnx"
        export_onnx(state, tok, OUT_DIR / "stage3.fp32.onnx", graph)
    runner = OnnxRunner(graph, threads=cfg4["threads"], temperatures={})
    _, pool = filler.pools(d, s)
    mined, mining = filler.mine(
        lambda rows: runner.run_ids(rows)["attack"],
        views,
        pool,
        random.Random(cfg4["seed"]),
        requests=cfg4["mine_requests"],
        keep=cfg4["mined_negatives"],
    )
    log({"stage4_mining": mining})
    state4, info4 = continue_training(
        "stage4",
        d,
        s,
        tok,
        cfg4,
        state,
        log,
        lambda rng: filler.build_epoch(d, s, views, rng, cfg4, mined),
    )
    info4["mining"] = mining
    summary["stage4"] = info4
    torch.save(state4, save_to or OUT_DIR / "model.pt")
    return state4


def resume_from_shipped_int8(stage: int, summary: dict, prev_summary) -> dict:
    """The dequantized weights of the shipped int8 graph, to run `stage` from when the fp32
    checkpoint of the stages before it was not kept; their summaries are carried over from
    `prev_summary` (the shipped train_summary.json)."""
    from .recover import state_from_int8_onnx

    old = json.loads(prev_summary.read_text()) if prev_summary.exists() else {}
    for key in ("main", "stage2"):
        summary[key] = old.get(key)
    for earlier in range(3, stage):
        for key in (f"stage{earlier}_resumed_from", f"config_stage{earlier}", f"stage{earlier}"):
            summary[key] = old.get(key)
    summary[f"stage{stage}_resumed_from"] = (
        "the dequantized weights of the shipped classifiers/models/signals.int8.onnx "
        f"({old.get('version', '?')}: stages 1-{stage - 1}; their fp32 checkpoint was not kept)"
    )
    return state_from_int8_onnx(MODELS_DIR / "signals.int8.onnx")


def export_and_log(state, tok, summary, log) -> None:
    fp32, int8 = OUT_DIR / "signals.fp32.onnx", MODELS_DIR / "signals.int8.onnx"
    summary["export_check"] = export_onnx(state, tok, fp32, int8)
    log({"export": summary["export_check"]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0, help="cap optimizer steps (smoke tests)")
    ap.add_argument("--subject-epochs", type=int, default=1)
    ap.add_argument("--subject-max-steps", type=int, default=150)
    ap.add_argument("--skip-subject", action="store_true")
    ap.add_argument("--subject-only", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--calibrate-only",
        action="store_true",
        help="only re-derive thresholds and signals.json from the int8 artifact",
    )
    ap.add_argument(
        "--stage3-from-int8",
        action="store_true",
        help="start stage 3 from the shipped int8 graph's dequantized weights (when the stage-2 "
        "checkpoint was not kept) instead of running stages 1-2",
    )
    ap.add_argument(
        "--stage4-from-int8",
        action="store_true",
        help="run only stage 4 (attacks inside filler), from the shipped int8 graph's "
        "dequantized weights (stages 1-3)",
    )
    ap.add_argument(
        "--resume-stage2",
        action="store_true",
        help="load out/model_stage1.pt instead of re-running stage 1",
    )
    args = ap.parse_args()

    wall0 = time.time()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = OUT_DIR / "train_log.jsonl"
    logf = open(log_path, "a", encoding="utf-8")

    def log(obj):
        line = json.dumps(obj)
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    data_mod.prepare(verbose=False)
    d = data_mod.load_all()
    log({"data": data_mod.summary(d)})
    tok = load_tokenizer()
    cfg = {
        "seed": SEED,
        "threads": args.threads,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "batch_size": 32,
        "lr": 6e-5,
        "head_lr": 5e-4,
        "pro_frac": 1.0,
        "extra_frac": 0.45,
        "attack_frac": 1.5,
        "pii_frac": 1.3,
        "pii_key": "pii_train_v1",
        "loss_weights": {"domain": 1.0, "attack": 1.0, "difficulty": 0.5, "pii": 1.0},
    }
    # stage 2: PII-focused continuation with replay of the other tasks (merged presidio address spans and the
    # training-only extra PII templates); kept only if the calibration composite improves
    cfg2 = dict(
        cfg,
        seed=SEED + 2,
        epochs=1,
        max_steps=args.max_steps,
        lr=3e-5,
        head_lr=3e-4,
        pro_frac=0.25,
        extra_frac=0.1,
        attack_frac=0.6,
        pii_frac=1.5,
        pii_key="pii_train",
        request_frac=0.5,
    )
    summary = {"version": VERSION, "torch": torch.__version__, "config": cfg, "config_stage2": cfg2}
    prev_summary = MODELS_DIR / "train_summary.json"
    if args.calibrate_only:
        args.skip_subject = True
    # Stage 3 (issue 15) and the calibration read the source split in every run.
    sources.prepare(verbose=False)
    s = sources.load()
    log({"sources": sources.summary(s)})
    if args.stage4_from_int8 and not args.subject_only and not args.calibrate_only:
        state = resume_from_shipped_int8(4, summary, prev_summary)
        graph = MODELS_DIR / "signals.int8.onnx"
        state = run_stage4(d, s, tok, cfg2, state, summary, log, args.max_steps, graph=graph)
        export_and_log(state, tok, summary, log)
    elif args.stage3_from_int8 and not args.subject_only and not args.calibrate_only:
        state = resume_from_shipped_int8(3, summary, prev_summary)
        state = run_stage3(d, s, tok, cfg2, state, summary, log, args.max_steps)
        export_and_log(state, tok, summary, log)
    elif not args.subject_only and not args.calibrate_only:
        if args.resume_stage2:
            state = torch.load(OUT_DIR / "model_stage1.pt")
            old = json.loads(prev_summary.read_text()) if prev_summary.exists() else {}
            summary["main"] = stage1_info_from_log(log_path)
            summary["main"]["resumed_from"] = "out/model_stage1.pt"
        else:
            state, info = train_model(d, tok, cfg, log)
            summary["main"] = info
            torch.save(state, OUT_DIR / "model_stage1.pt")
        model = SignalModel()
        model.load_state_dict(state)
        base = calib_report(lambda texts: torch_predict(model, tok, texts), tok, d)
        log({"calib_stage1_v2_labels": base})
        del model
        state2, info2 = train_model(
            d, tok, dict(cfg2, baseline_score=base["score"]), log, init_state=state
        )
        info2["stage1_calib"] = base
        info2["kept_stage2"] = state2 is not state
        summary["stage2"] = info2
        state = state2
        torch.save(state, OUT_DIR / "model_stage2.pt")
        state = run_stage3(d, s, tok, cfg2, state, summary, log, args.max_steps)
        state = run_stage4(d, s, tok, cfg2, state, summary, log, args.max_steps)
        export_and_log(state, tok, summary, log)
    if not args.subject_only:
        int8 = MODELS_DIR / "signals.int8.onnx"
        cal = calibrate_thresholds(int8, tok, d, s)
        log({"thresholds": cal["thresholds"]})
        shutil.copyfile(base_model_dir() / "tokenizer.json", MODELS_DIR / "tokenizer.json")
        write_spec(
            MODELS_DIR,
            VERSION,
            "sentence-transformers/all-MiniLM-L6-v2 (BertModel, 6 layers, hidden 384, uncased)",
            cal,
        )
    if not args.skip_subject:
        subj = d["subject"]
        scfg = dict(
            cfg,
            epochs=args.subject_epochs,
            max_steps=args.subject_max_steps,
            pro_frac=1.0,
            extra_frac=0.35,
        )
        state, info = train_model(d, tok, scfg, log, domain_only=True, subject=subj)
        summary["subject_run"] = info
        summary["subject_export_check"] = export_onnx(
            state, tok, OUT_DIR / "subject_split.fp32.onnx", OUT_DIR / "subject_split.int8.onnx"
        )
    summary["total_wall_seconds"] = round(time.time() - wall0, 1)
    prev = prev_summary
    if args.calibrate_only and prev.exists():
        old = json.loads(prev.read_text())
        old["thresholds_recalibrated_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        summary = old
    if args.subject_only and prev.exists():
        old = json.loads(prev.read_text())
        old.update({k: v for k, v in summary.items() if k.startswith("subject")})
        summary = old
    write_json(MODELS_DIR / "train_summary.json", summary)
    log({"done": summary.get("total_wall_seconds")})


if __name__ == "__main__":
    main()
