"""Does anything predict per-model success? (issue 15, item 5)

The shipped `difficulty` head is one scalar (will Llama-3.1-70B beat 8B on this MMLU question) and
is barely better than chance. This study asks the broader question on per-model correctness data:
given a prompt, which models of the pool get it right? Features are the base all-MiniLM-L6-v2
sentence embeddings (mean pooled, normalized); predictors are a cosine kNN, a logistic regression
per model and a low-rank (RouteLLM-style) matrix factorization, all in numpy. They are measured
the way production meets data, by SOURCE:

- LLMRouter (9 open models, 10 tasks): leave one task out, per task and pooled;
- MMLU-Pro (13 models): whole MMLU subjects held out (5 folds of subjects), Llama-3.1-8B vs 70B;
- transfer: trained on all of LLMRouter, tested on MMLU-Pro (the models overlap only in
  llama-3.1-8b-instruct) and on RouterArena (no model overlap: a generic difficulty score).

Baselines: random (APGR 0.5) and a prior: each prompt scored by the mean success difference of its
task (nearest training task by embedding centroid where the true task is held out) or its category.

    .venv-train/bin/python -m classifiers.training.routing_study

writes classifiers/models/routing_study.json and the ROUTING-STUDY section of MODEL_CARD.md.
Embeddings are cached under classifiers/training/out/ (about 11k texts; minutes on one thread).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from .common import (
    DATA_DIR,
    MODELS_DIR,
    OUT_DIR,
    STRONG_MODEL,
    TRAIN_LENGTH,
    WEAK_MODEL,
    format_mc,
    read_jsonl,
    write_card_section,
    write_json,
)
from .metrics import apgr, cpt

ROUTING_DIR = DATA_DIR / "routing"
BEGIN = "<!-- ROUTING-STUDY:BEGIN -->"
END = "<!-- ROUTING-STUDY:END -->"

SEED = 7
REPS = 1000
# Below this strong-minus-weak accuracy gap a task's PGR divides by almost nothing (and flips sign
# below zero), so its APGR is reported but left out of the per-task mean.
MIN_GAP = 0.03
# The issue's rule: per-model success is useful only if it beats BOTH baselines by this much.
MARGIN = 0.05
KNN_KS = (5, 10, 20, 50, 100, 200, 500, 1000)
LOGISTIC_LAMBDAS = (0.01, 0.1, 1.0, 10.0, 100.0)
MF_RANK = 4
THRESHOLDS = (0.5, 0.6, 0.7, 0.8)
RANDOM_APGR = 0.5

Array = np.ndarray


# --------------------------------------------------------------------------- data


@dataclass
class Table:
    """Prompts and each pool model's score on them (0/1 or graded), with the source of each row."""

    name: str
    ids: list[str]
    texts: list[str]
    groups: np.ndarray  # the source (task, subject) of each row
    models: list[str]
    scores: Array  # rows x models
    prices: dict[str, float] = field(default_factory=dict)
    categories: np.ndarray | None = None  # a coarser label a router could know (MMLU-Pro category)

    def column(self, model: str) -> Array:
        return self.scores[:, self.models.index(model)]


def _prices(path, column: str) -> dict[str, float]:
    with open(path, encoding="utf-8") as fh:
        return {r["model"]: float(r[column]) for r in csv.DictReader(fh)}


def _scored(name: str, rows: list[dict], prices: dict[str, float]) -> Table:
    models = sorted(set.intersection(*(set(r["correct"]) for r in rows)))
    return Table(
        name=name,
        ids=[r["id"] for r in rows],
        texts=[r["text"] for r in rows],
        groups=np.array([r["task"] for r in rows]),
        models=models,
        scores=np.array([[float(r["correct"][m]) for m in models] for r in rows]),
        prices={m: prices[m] for m in models if m in prices},
    )


def load_llmrouter() -> Table:
    rows = read_jsonl(ROUTING_DIR / "llmrouter_correctness.jsonl")
    return _scored(
        "llmrouter", rows, _prices(ROUTING_DIR / "llmrouter_models.csv", "input_price_per_m")
    )


def load_routerarena() -> Table:
    rows = read_jsonl(ROUTING_DIR / "routerarena_correctness.jsonl")
    # the 5 RouterArena sub-tasks of one dataset (Ethics_*, MMLU_*) are one source
    for r in rows:
        r["task"] = r["task"].split("_")[0]
    return _scored(
        "routerarena", rows, _prices(ROUTING_DIR / "routerarena_models.csv", "output_price_per_m")
    )


def load_mmlu_pro() -> Table:
    """MMLU-Pro questions (formatted as the classifier reads them) with 13 models' correctness."""
    questions = {
        r["id"]: r for r in read_jsonl(DATA_DIR / "domain" / "mmlu_pro_mmlu_sourced.jsonl")
    }
    rows = read_jsonl(ROUTING_DIR / "mmlu_pro_mmlu_sourced_correctness.jsonl")
    # three models lack a few rows; keep the models every row has (the 8B/70B pair among them)
    models = [m for m in rows[0]["correct"] if all(m in r["correct"] for r in rows)]
    return Table(
        name="mmlu_pro",
        ids=[r["id"] for r in rows],
        texts=[format_mc(questions[r["id"]]["text"], questions[r["id"]]["options"]) for r in rows],
        groups=np.array([r["src"] for r in rows]),
        models=models,
        scores=np.array([[float(r["correct"][m]) for m in models] for r in rows]),
        categories=np.array([r["category"] for r in rows]),
    )


# --------------------------------------------------------------------------- embeddings


def embed(texts: Sequence[str], cache_name: str, batch: int = 32) -> Array:
    """Mean-pooled, L2-normalized all-MiniLM-L6-v2 embeddings (128 tokens), cached by content."""
    key = hashlib.sha1(("\x00".join(texts) + f"|{TRAIN_LENGTH}").encode()).hexdigest()[:12]
    path = OUT_DIR / f"routing_study_emb_{cache_name}_{key}.npy"
    if path.exists():
        return np.load(path)
    import torch
    from transformers import AutoModel

    from .common import base_model_dir, load_tokenizer

    torch.set_num_threads(1)  # the study must not crowd out a training run on a small machine
    tok = load_tokenizer()
    model = AutoModel.from_pretrained(str(base_model_dir())).eval()
    # sorting by length cuts the padding, hence the time, of each batch
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    started = time.monotonic()
    with torch.inference_mode():
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            enc = tok(
                [texts[i] for i in idx],
                truncation=True,
                max_length=TRAIN_LENGTH,
                padding=True,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.numpy()
    print(f"embedded {len(texts)} {cache_name} texts in {time.monotonic() - started:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


# --------------------------------------------------------------------------- source splits


def leave_one_group_out(groups: Array) -> Iterator[tuple[str, Array, Array]]:
    """(held-out group, train rows, test rows) for each group: no row of the group trains."""
    for g in sorted(set(groups.tolist())):
        test = np.flatnonzero(groups == g)
        train = np.flatnonzero(groups != g)
        yield g, train, test


def group_folds(
    groups: Array, k: int, seed: int = SEED
) -> Iterator[tuple[list[str], Array, Array]]:
    """k folds of whole groups (shuffled with `seed`, dealt round robin): a group is in one fold."""
    names = sorted(set(groups.tolist()))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    for f in range(k):
        held = sorted(names[f::k])
        mask = np.isin(groups, held)
        yield held, np.flatnonzero(~mask), np.flatnonzero(mask)


# --------------------------------------------------------------------------- predictors
# Each maps (train embeddings, train scores) to per-model success probabilities on test rows.


def knn_neighbours(x_train: Array, x_test: Array, k_max: int) -> Array:
    """Indices of the k_max most cosine-similar training rows of each test row, nearest first."""
    k_max = min(k_max, len(x_train))
    sim = x_test @ x_train.T
    part = np.argpartition(-sim, k_max - 1, axis=1)[:, :k_max]
    order = np.argsort(-np.take_along_axis(sim, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def knn_from_neighbours(nbrs: Array, y_train: Array, k: int, alpha: float = 1.0) -> Array:
    """Mean score of the k nearest rows, shrunk toward the training mean by `alpha` pseudo-rows."""
    prior = y_train.mean(axis=0)
    k = min(k, nbrs.shape[1])  # a small training set has fewer rows than k
    return (y_train[nbrs[:, :k]].sum(axis=1) + alpha * prior) / (k + alpha)


def brier(p: Array, y: Array) -> float:
    return float(np.mean((p - y) ** 2))


def tune_knn_k(x: Array, y: Array, groups: Array, ks: Sequence[int] = KNN_KS) -> int:
    """The k with the lowest Brier score over leave-one-group-out folds of the TRAINING rows only."""
    loss = np.zeros(len(ks))
    for _, tr, te in leave_one_group_out(groups):
        nbrs = knn_neighbours(x[tr], x[te], max(ks))
        for j, k in enumerate(ks):
            loss[j] += brier(knn_from_neighbours(nbrs, y[tr], k), y[te]) * len(te)
    return int(ks[int(np.argmin(loss))])


def _sigmoid(z: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass
class Standardizer:
    mean: Array
    std: Array

    @classmethod
    def fit(cls, x: Array) -> Standardizer:
        return cls(x.mean(axis=0), x.std(axis=0) + 1e-6)

    def __call__(self, x: Array) -> Array:
        return (x - self.mean) / self.std


def fit_logistic(x: Array, y: Array, lam: float, iters: int = 8) -> tuple[Array, Array]:
    """One L2 logistic regression per column of y (soft targets allowed), by Newton steps.

    Minimises mean cross-entropy + lam/2 |w|^2 (the bias unpenalised); x should be standardized.
    """
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    reg = np.full(d + 1, lam)
    reg[-1] = 0.0
    w = np.zeros((d + 1, y.shape[1]))
    for m in range(y.shape[1]):
        wm = np.zeros(d + 1)
        ym = np.clip(y[:, m], 0.0, 1.0)
        for _ in range(iters):
            p = _sigmoid(xb @ wm)
            grad = xb.T @ (p - ym) / n + reg * wm
            hess = (xb * (p * (1 - p))[:, None]).T @ xb / n + np.diag(reg) + 1e-9 * np.eye(d + 1)
            step = np.linalg.solve(hess, grad)
            wm -= step
            if np.max(np.abs(step)) < 1e-6:
                break
        w[:, m] = wm
    return w[:-1], w[-1]


def predict_logistic(x: Array, params: tuple[Array, Array]) -> Array:
    w, b = params
    return _sigmoid(x @ w + b)


def tune_logistic(
    x: Array, y: Array, groups: Array, lams: Sequence[float] = LOGISTIC_LAMBDAS, folds: int = 3
) -> float:
    """The L2 strength with the lowest Brier score over `folds` group folds of the TRAINING rows."""
    loss = np.zeros(len(lams))
    for _, tr, te in group_folds(groups, folds):
        std = Standardizer.fit(x[tr])
        for j, lam in enumerate(lams):
            p = predict_logistic(std(x[te]), fit_logistic(std(x[tr]), y[tr], lam))
            loss[j] += brier(p, y[te]) * len(te)
    return float(lams[int(np.argmin(loss))])


def fit_mf(
    x: Array, y: Array, rank: int = MF_RANK, lam: float = 1e-3, steps: int = 400, seed: int = SEED
) -> tuple[Array, Array, Array]:
    """RouteLLM-style matrix factorization for success: logit(m, q) = v_m . (P x_q) + b_m.

    The prompt embedding is projected to `rank` dimensions shared by every model and dotted with a
    learned model embedding; full-batch Adam on mean cross-entropy + lam/2 (|P|^2 + |V|^2).
    """
    rng = np.random.default_rng(seed)
    n, d = x.shape
    proj = rng.normal(0, 1 / np.sqrt(d), (rank, d))
    vecs = rng.normal(0, 1 / np.sqrt(rank), (y.shape[1], rank))
    bias = np.log(np.clip(y.mean(0), 0.01, 0.99) / np.clip(1 - y.mean(0), 0.01, 0.99))
    params = [proj, vecs, bias]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    lr, b1, b2 = 0.01, 0.9, 0.999
    yc = np.clip(y, 0.0, 1.0)
    for t in range(1, steps + 1):
        z = x @ proj.T
        g = (_sigmoid(z @ vecs.T + bias) - yc) / n
        grads = [(g @ vecs).T @ x + lam * proj, g.T @ z + lam * vecs, g.sum(0)]
        for i, (p, gr) in enumerate(zip(params, grads)):
            m1[i] = b1 * m1[i] + (1 - b1) * gr
            m2[i] = b2 * m2[i] + (1 - b2) * gr**2
            p -= lr * (m1[i] / (1 - b1**t)) / (np.sqrt(m2[i] / (1 - b2**t)) + 1e-8)
    return proj, vecs, bias


def predict_mf(x: Array, params: tuple[Array, Array, Array]) -> Array:
    proj, vecs, bias = params
    return _sigmoid((x @ proj.T) @ vecs.T + bias)


def group_prior(y: Array, groups: Array) -> dict[str, Array]:
    """Each group's mean score per model."""
    return {g: y[groups == g].mean(axis=0) for g in sorted(set(groups.tolist()))}


def nearest_group(x_train: Array, groups: Array, x_test: Array) -> Array:
    """The training group whose embedding centroid is most cosine-similar to each test row."""
    names = sorted(set(groups.tolist()))
    cents = np.stack([x_train[groups == g].mean(axis=0) for g in names])
    cents /= np.linalg.norm(cents, axis=1, keepdims=True) + 1e-12
    return np.array(names)[np.argmax(x_test @ cents.T, axis=1)]


def prior_predict(
    x_train: Array, y_train: Array, groups_train: Array, x_test: Array, known: Array | None = None
) -> Array:
    """The task/domain prior: each test row gets its group's mean training score per model.

    `known` gives each test row's group where a router could know it (a category seen in
    training); otherwise the group is predicted as the nearest training-group centroid.
    """
    prior = group_prior(y_train, groups_train)
    names = known if known is not None else nearest_group(x_train, groups_train, x_test)
    fallback = y_train.mean(axis=0)
    return np.stack([prior.get(g, fallback) for g in names.tolist()])


# --------------------------------------------------------------------------- routing metrics


def tie_averaged(score: Array, weak: Array, strong: Array) -> Array:
    """`strong` with each tie group's strong-minus-weak gain spread evenly over the group.

    metrics.pgr_curve breaks ties by row order; with this the curve is the expectation over random
    tie-breaking, so a constant score (a task prior within its task) scores exactly 0.5.
    """
    _, inv = np.unique(np.asarray(score), return_inverse=True)
    diff = np.asarray(strong, float) - np.asarray(weak, float)
    mean_gain = np.bincount(inv, diff) / np.bincount(inv)
    return np.asarray(weak, float) + mean_gain[inv]


def pair_apgr(score: Array, weak: Array, strong: Array) -> float:
    """APGR with ties averaged; NaN when the strong model is not better on these rows."""
    if np.mean(strong) - np.mean(weak) <= 0:
        return float("nan")
    return apgr(score, weak, tie_averaged(score, weak, strong))


def pair_cpt(score: Array, weak: Array, strong: Array, target: float = 0.5) -> float:
    if np.mean(strong) - np.mean(weak) <= 0:
        return float("nan")
    return cpt(score, weak, tie_averaged(score, weak, strong), target)


def percentile_ci(values: Sequence[float]) -> list[float]:
    v = np.asarray([x for x in values if x == x])
    if not len(v):
        return [float("nan"), float("nan")]
    return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]


def per_group_mean_ci(
    scores: dict[str, Array],
    weak: Array,
    strong: Array,
    groups: Array,
    eligible: Sequence[str],
    reps: int = REPS,
    seed: int = SEED,
) -> dict[str, dict]:
    """Mean over `eligible` groups of per-group APGR for each scorer, with 95% CIs from a
    bootstrap that resamples rows within each group (paired: one resample serves every scorer).

    Also the CI of each scorer's difference from every other, to read a margin honestly."""
    rng = np.random.default_rng(seed)
    idx_of = {g: np.flatnonzero(groups == g) for g in eligible}
    names = list(scores)

    def means(pick: Callable[[Array], Array]) -> dict[str, float]:
        out = {}
        for s in names:
            vals = []
            for g in eligible:
                i = pick(idx_of[g])
                vals.append(pair_apgr(scores[s][i], weak[i], strong[i]))
            out[s] = float(np.nanmean(vals)) if vals else float("nan")
        return out

    point = means(lambda i: i)
    boots = [means(lambda i: i[rng.integers(0, len(i), len(i))]) for _ in range(reps)]
    res: dict[str, dict] = {}
    for s in names:
        res[s] = {
            "mean_apgr": point[s],
            "ci": percentile_ci([b[s] for b in boots]),
            "minus": {
                o: {
                    "diff": point[s] - point[o],
                    "ci": percentile_ci([b[s] - b[o] for b in boots]),
                }
                for o in names
                if o != s
            },
        }
    return res


def pooled_ci(
    scores: dict[str, Array], weak: Array, strong: Array, reps: int = REPS, seed: int = SEED
) -> dict[str, dict]:
    """APGR and CPT(50%) over all rows for each scorer, with paired row-bootstrap 95% CIs."""
    rng = np.random.default_rng(seed)
    n = len(weak)
    boots = []
    for _ in range(reps):
        i = rng.integers(0, n, n)
        boots.append({s: pair_apgr(v[i], weak[i], strong[i]) for s, v in scores.items()})
    out = {}
    for s, v in scores.items():
        out[s] = {
            "apgr": pair_apgr(v, weak, strong),
            "ci": percentile_ci([b[s] for b in boots]),
            "cpt50": pair_cpt(v, weak, strong),
            "minus": {
                o: {
                    "diff": pair_apgr(v, weak, strong) - pair_apgr(scores[o], weak, strong),
                    "ci": percentile_ci([b[s] - b[o] for b in boots]),
                }
                for o in scores
                if o != s
            },
        }
    return out


def cheapest_confident(probs: Array, order: Sequence[int], threshold: float) -> Array:
    """Per row, the first model in `order` (cheapest first) with P(success) >= threshold, else
    the model with the highest P(success)."""
    probs = np.asarray(probs)
    chosen = np.argmax(probs, axis=1)
    decided = np.zeros(len(probs), dtype=bool)
    for m in order:
        hit = (probs[:, m] >= threshold) & ~decided
        chosen[hit] = m
        decided |= hit
    return chosen


def route_quality_cost(chosen: Array, scores: Array, prices: Array) -> dict[str, float]:
    rows = np.arange(len(chosen))
    return {
        "quality": float(scores[rows, chosen].mean()),
        "cost": float(prices[chosen].mean()),
    }


def mix_line(cost: float, cheap: dict[str, float], best: dict[str, float]) -> float:
    """Quality of randomly mixing the cheapest and the best model at the same mean cost."""
    if best["cost"] == cheap["cost"]:
        return best["quality"]
    share = (cost - cheap["cost"]) / (best["cost"] - cheap["cost"])
    share = min(max(share, 0.0), 1.0)
    return cheap["quality"] + share * (best["quality"] - cheap["quality"])


# --------------------------------------------------------------------------- experiments


def _pair_scores(probs: dict[str, Array], wi: int, si: int) -> dict[str, Array]:
    """Routing score per predictor: P(strong right) - P(weak right)."""
    return {name: p[:, si] - p[:, wi] for name, p in probs.items()}


def _fit_predict_all(
    x: Array,
    y: Array,
    tune_groups: Array,
    prior_groups: Array,
    tr: Array,
    te: Array,
    known: Array | None = None,
) -> tuple[dict[str, Array], dict]:
    """Every predictor trained on rows `tr` and tuned on folds of `tune_groups` within them,
    predicting rows `te`. The prior averages over `prior_groups`; `known` gives the test rows'
    prior group where a router could know it (else the nearest training group is taken)."""
    k = tune_knn_k(x[tr], y[tr], tune_groups[tr])
    lam = tune_logistic(x[tr], y[tr], tune_groups[tr])
    std = Standardizer.fit(x[tr])
    probs = {
        "knn": knn_from_neighbours(knn_neighbours(x[tr], x[te], k), y[tr], k),
        "logistic": predict_logistic(std(x[te]), fit_logistic(std(x[tr]), y[tr], lam)),
        "mf": predict_mf(x[te], fit_mf(x[tr], y[tr])),
        "prior": prior_predict(x[tr], y[tr], prior_groups[tr], x[te], known),
    }
    return probs, {"knn_k": k, "logistic_lambda": lam}


def _held_out(
    x: Array,
    y: Array,
    splits: Iterator[tuple[object, Array, Array]],
    tune_groups: Array,
    prior_groups: Array,
    prior_known: bool,
) -> tuple[dict[str, Array], list[dict]]:
    """Each row's success probabilities from the predictors of the split that held it out."""
    held = {name: np.zeros(y.shape) for name in ("knn", "logistic", "mf", "prior")}
    tuned = []
    for label, tr, te in splits:
        started = time.monotonic()
        known = prior_groups[te] if prior_known else None
        probs, params = _fit_predict_all(x, y, tune_groups, prior_groups, tr, te, known)
        for name, p in probs.items():
            held[name][te] = p
        tuned.append({"held_out": label, **params})
        print(f"  held out {label}: {params} ({time.monotonic() - started:.0f} s)")
    return held, tuned


def _pair_report(
    table: Table, held: dict[str, Array], pairs: list[tuple[str, str]], reps: int
) -> dict:
    """Per-group and pooled APGR / CPT(50%) of each predictor for each (weak, strong) pair."""
    y = table.scores
    tasks = sorted(set(table.groups.tolist()))
    out = {}
    for weak_name, strong_name in pairs:
        wi, si = table.models.index(weak_name), table.models.index(strong_name)
        weak, strong = y[:, wi], y[:, si]
        scores = _pair_scores(held, wi, si)
        per_task = {}
        for t in tasks:
            i = table.groups == t
            per_task[t] = {
                "n": int(i.sum()),
                "weak_acc": float(weak[i].mean()),
                "strong_acc": float(strong[i].mean()),
                "gap": float(strong[i].mean() - weak[i].mean()),
                "apgr": {s: pair_apgr(v[i], weak[i], strong[i]) for s, v in scores.items()},
                "cpt50": {s: pair_cpt(v[i], weak[i], strong[i]) for s, v in scores.items()},
            }
        eligible = [t for t in tasks if per_task[t]["gap"] >= MIN_GAP]
        out[f"{weak_name} -> {strong_name}"] = {
            "weak": weak_name,
            "strong": strong_name,
            "per_task": per_task,
            "eligible_tasks": eligible,
            "mean_over_tasks": per_group_mean_ci(
                scores, weak, strong, table.groups, eligible, reps=reps
            ),
            "pooled": pooled_ci(scores, weak, strong, reps=reps),
        }
    return out


def study_llmrouter(table: Table, x: Array, pairs: list[tuple[str, str]], reps: int) -> dict:
    """Leave one task out on LLMRouter: per-task and pooled pair metrics, AUCs and the cascade.
    Tuning folds are tasks too, and the held-out task's prior is its nearest training task's."""
    held, tuned = _held_out(
        x, table.scores, leave_one_group_out(table.groups), table.groups, table.groups, False
    )
    return {
        "tuned": tuned,
        "pairs": _pair_report(table, held, pairs, reps),
        "auc_per_model": _auc_per_model(held, table.scores, table.models),
        "cascade": cascade(table, held),
    }


def study_row_split(
    table: Table, x: Array, pairs: list[tuple[str, str]], reps: int, folds: int = 5
) -> dict:
    """For contrast, the split the issue warns about: random rows, every task seen in training,
    tuning on random row folds, the prior knowing each row's true task."""
    rng = np.random.default_rng(SEED)
    fold = rng.permutation(len(table.ids)) % folds
    tune_groups = np.array([f"r{v}" for v in rng.permutation(len(table.ids)) % 3])
    splits = (
        (f"row fold {f}", np.flatnonzero(fold != f), np.flatnonzero(fold == f))
        for f in range(folds)
    )
    held, tuned = _held_out(x, table.scores, splits, tune_groups, table.groups, True)
    return {
        "folds": folds,
        "tuned": tuned,
        "pairs": _pair_report(table, held, pairs, reps),
        "cascade": cascade(table, held),
    }


def roc_auc(y: Array, s: Array) -> float:
    """Mann-Whitney ROC-AUC with tied scores counted half; numpy only (metrics.roc_auc needs
    scipy, which the router's venv that runs the tests does not have)."""
    y = np.asarray(y, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inv, counts = np.unique(np.asarray(s), return_inverse=True, return_counts=True)
    # average rank of each distinct score: ranks of a tie block are start+1 .. start+count
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ranks = (starts + (counts + 1) / 2.0)[inv]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auc_per_model(probs: dict[str, Array], y: Array, models: list[str]) -> dict:
    out = {}
    for j, mname in enumerate(models):
        binary = y[:, j] >= 0.5
        out[mname] = {name: roc_auc(binary, p[:, j]) for name, p in probs.items()}
    return out


def cascade(table: Table, probs: dict[str, Array]) -> dict:
    """Send each prompt to the cheapest model predicted to succeed, at a few thresholds."""
    y = table.scores
    prices = np.array([table.prices[mm] for mm in table.models])
    means = y.mean(axis=0)
    # cheapest first; among equal prices the better model (by mean score) first
    order = sorted(range(len(table.models)), key=lambda j: (prices[j], -means[j]))
    singles = {
        mm: route_quality_cost(np.full(len(y), j), y, prices) for j, mm in enumerate(table.models)
    }
    cheap = singles[table.models[order[0]]]
    best_name = table.models[int(np.argmax(means))]
    best = singles[best_name]
    top = y.max(axis=1, keepdims=True)
    oracle_choice = np.array(
        [next(j for j in order if y[r, j] == top[r, 0]) for r in range(len(y))]
    )
    routes = {}
    for name, p in probs.items():
        for t in THRESHOLDS:
            qc = route_quality_cost(cheapest_confident(p, order, t), y, prices)
            qc["over_mix_line"] = qc["quality"] - mix_line(qc["cost"], cheap, best)
            routes[f"{name}@{t}"] = qc
    return {
        "order": [table.models[j] for j in order],
        "singles": singles,
        "cheapest": table.models[order[0]],
        "best": best_name,
        "oracle": route_quality_cost(oracle_choice, y, prices),
        "routes": routes,
    }


def study_sensitivity(table: Table, x: Array, pair: tuple[str, str]) -> dict:
    """Leave one task out with each fixed k / L2 strength instead of the tuned one: the best of
    these is chosen on the test tasks, an optimistic bound on what tuning could reach."""
    wi, si = table.models.index(pair[0]), table.models.index(pair[1])
    y = table.scores[:, [wi, si]]
    n = len(y)
    knn = {k: np.zeros((n, 2)) for k in KNN_KS}
    logit = {lam: np.zeros((n, 2)) for lam in LOGISTIC_LAMBDAS}
    for _, tr, te in leave_one_group_out(table.groups):
        nbrs = knn_neighbours(x[tr], x[te], max(KNN_KS))
        for k in KNN_KS:
            knn[k][te] = knn_from_neighbours(nbrs, y[tr], k)
        std = Standardizer.fit(x[tr])
        for lam in LOGISTIC_LAMBDAS:
            logit[lam][te] = predict_logistic(std(x[te]), fit_logistic(std(x[tr]), y[tr], lam))
    weak, strong = y[:, 0], y[:, 1]
    tasks = [
        t
        for t in sorted(set(table.groups.tolist()))
        if strong[table.groups == t].mean() - weak[table.groups == t].mean() >= MIN_GAP
    ]

    def both(p: Array) -> dict[str, float]:
        score = p[:, 1] - p[:, 0]
        per = [
            pair_apgr(score[table.groups == t], weak[table.groups == t], strong[table.groups == t])
            for t in tasks
        ]
        return {"mean_over_tasks": float(np.mean(per)), "pooled": pair_apgr(score, weak, strong)}

    return {
        "pair": f"{pair[0]} -> {pair[1]}",
        "knn_k": {str(k): both(p) for k, p in knn.items()},
        "logistic_lambda": {str(lam): both(p) for lam, p in logit.items()},
    }


def study_mmlu_pro(table: Table, x: Array, reps: int, folds: int = 5) -> dict:
    """Whole MMLU subjects held out, 8B vs 70B. The prior knows each row's category (seen in
    training through the category's other subjects; the router's domain head predicts it), which
    only flatters the baseline."""
    assert table.categories is not None
    cols = [table.models.index(WEAK_MODEL), table.models.index(STRONG_MODEL)]
    y = table.scores[:, cols]
    splits = (
        (f"{len(held)} subjects", tr, te) for held, tr, te in group_folds(table.groups, folds)
    )
    held, tuned = _held_out(x, y, splits, table.groups, table.categories, True)
    scores = _pair_scores(held, 0, 1)
    return {
        "weak": WEAK_MODEL,
        "strong": STRONG_MODEL,
        "folds": folds,
        "tuned": tuned,
        "pooled": pooled_ci(scores, y[:, 0], y[:, 1], reps=reps),
    }


def study_transfer(
    source: Table,
    xs: Array,
    targets: list[tuple[Table, Array, tuple[str, str] | None]],
    reps: int,
) -> dict:
    """Train on all of `source`, score other data sets.

    On every target: the ROC-AUC of a generic success score (the mean predicted success of the
    source pool) against each target model's success. Where a target has a (weak, strong) pair,
    its APGR with difficulty = 1 - that mean, and, if the weak model is in the source pool,
    with 1 - P(weak right)."""
    y = source.scores
    k = tune_knn_k(xs, y, source.groups)
    lam = tune_logistic(xs, y, source.groups)
    std = Standardizer.fit(xs)
    logit = fit_logistic(std(xs), y, lam)
    mf = fit_mf(xs, y)
    out: dict = {"knn_k": k, "logistic_lambda": lam, "targets": {}}
    for table, xt, pair in targets:
        probs = {
            "knn": knn_from_neighbours(knn_neighbours(xs, xt, k), y, k),
            "logistic": predict_logistic(std(xt), logit),
            "mf": predict_mf(xt, mf),
            "prior": prior_predict(xs, y, source.groups, xt),
        }
        res: dict = {
            "n": len(table.ids),
            "success_auc": {
                mm: {n: roc_auc(table.column(mm) >= 0.5, p.mean(axis=1)) for n, p in probs.items()}
                for mm in table.models
            },
        }
        if pair is not None:
            weak_name, strong_name = pair
            weak, strong = table.column(weak_name), table.column(strong_name)
            scores = {f"{n}:difficulty": 1 - p.mean(axis=1) for n, p in probs.items()}
            if weak_name in source.models:
                j = source.models.index(weak_name)
                scores |= {f"{n}:weak_fails": 1 - p[:, j] for n, p in probs.items()}
                res["weak_model_auc"] = {n: roc_auc(weak >= 0.5, p[:, j]) for n, p in probs.items()}
            res |= {"weak": weak_name, "strong": strong_name}
            res["pooled"] = pooled_ci(scores, weak, strong, reps=reps)
        out["targets"][table.name] = res
    return out


# --------------------------------------------------------------------------- report


def best_predictor(view: dict, key: str) -> str:
    cands = [s for s in ("knn", "logistic", "mf") if s in view]
    return max(cands, key=lambda s: view[s][key] if view[s][key] == view[s][key] else -1.0)


def verdict(mean_view: dict, pooled_view: dict) -> dict:
    """Useful only if the best predictor beats random (0.5) and the prior by >= MARGIN APGR, both
    on the mean over held-out tasks and on the pooled held-out rows."""
    checks = {}
    for label, view, key in (
        ("mean_over_tasks", mean_view, "mean_apgr"),
        ("pooled", pooled_view, "apgr"),
    ):
        best = best_predictor(view, key)
        value = view[best][key]
        prior = view["prior"][key]
        checks[label] = {
            "best": best,
            "apgr": value,
            "over_random": value - RANDOM_APGR,
            "over_prior": value - prior,
            "passes": bool(value - RANDOM_APGR >= MARGIN and value - prior >= MARGIN),
        }
    return {"useful": all(c["passes"] for c in checks.values()), "checks": checks}


def _f(v: float, digits: int = 3) -> str:
    return "n/a" if v != v else f"{v:.{digits}f}"


def _ci(v: float, c: Sequence[float]) -> str:
    return f"{_f(v)} [{_f(c[0])}, {_f(c[1])}]"


def render(res: dict) -> str:
    lr = res["llmrouter"]
    lines = [
        BEGIN,
        "",
        "## Per-model success: does anything predict it? (issue 15, item 5)",
        "",
        f"Generated by `python -m classifiers.training.routing_study` on {res['generated']}. "
        "Features: base all-MiniLM-L6-v2 sentence embeddings (mean pooled, normalized, 128 tokens). "
        "Predictors, each a success probability per pool model: `knn` (cosine, k tuned by "
        "leave-one-task-out Brier on the training tasks only), `logistic` (L2 per model on "
        "standardized embeddings, strength tuned on 3 task folds of the training tasks), `mf` "
        f"(RouteLLM-style: the embedding projected to {MF_RANK} dimensions, dotted with a learned "
        "model vector). Routing score = P(strong right) - P(weak right). Baselines: `random` "
        "(APGR 0.5) and `prior`: each prompt scored by its task's mean success per model in the "
        "training folds; the held-out task is unseen, so its prompts take the prior of the nearest "
        "training task (embedding centroid). APGR and CPT(50%) as defined above, ties averaged "
        f"(a constant score gives exactly 0.5). Brackets: 95% bootstrap ({res['reps']} resamples, "
        f"seed {SEED}), paired across scorers.",
        "",
    ]
    v = res["verdict"]
    word = "USEFUL" if v["useful"] else "NOT USEFUL"
    lines += [
        f"**Verdict: {word}.** Rule (issue 15): beat both baselines by >= {MARGIN} APGR on the "
        "source split (here: the mean over held-out LLMRouter tasks and the pooled held-out rows, "
        f"primary pair {res['primary_pair']}).",
        "",
    ]
    for label, c in v["checks"].items():
        lines.append(
            f"- {label}: best predictor `{c['best']}` APGR {_f(c['apgr'])}: "
            f"{c['over_random']:+.3f} over random, {c['over_prior']:+.3f} over the prior "
            f"({'passes' if c['passes'] else 'fails'})."
        )
    if not v["useful"]:
        lines += [
            "",
            "No predictor of per-model success from the prompt embedding beats both baselines "
            "by the margin on unseen tasks. By the issue's rule, a `difficulty` signal (the "
            "shipped head or one built from these predictors) is not useful, and shipped "
            "policies should leave it off.",
        ]
    for pair_name, p in lr["pairs"].items():
        lines += [
            "",
            f"### LLMRouter, leave one task out: {pair_name}",
            "",
            "| held-out task | n | weak / strong acc | gap | APGR knn | logistic | mf | prior | CPT(50%) best |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for t, r in p["per_task"].items():
            mark = "" if t in p["eligible_tasks"] else f" (gap < {MIN_GAP:.2f}, not in mean)"
            a = r["apgr"]
            best = max(("knn", "logistic", "mf"), key=lambda s: a[s] if a[s] == a[s] else -1)
            lines.append(
                f"| {t}{mark} | {r['n']} | {r['weak_acc']:.3f} / {r['strong_acc']:.3f} | "
                f"{r['gap']:+.3f} | {_f(a['knn'])} | {_f(a['logistic'])} | {_f(a['mf'])} | "
                f"{_f(a['prior'])} | {_f(r['cpt50'][best])} ({best}) |"
            )
        mo, po = p["mean_over_tasks"], p["pooled"]
        lines += [
            "",
            "| scorer | mean APGR over tasks [CI] | minus prior [CI] | pooled APGR [CI] | pooled CPT(50%) | pooled minus prior [CI] |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for s in ("knn", "logistic", "mf", "prior"):
            mp = mo[s]["minus"].get("prior", {"diff": 0.0, "ci": [0.0, 0.0]})
            pp = po[s]["minus"].get("prior", {"diff": 0.0, "ci": [0.0, 0.0]})
            lines.append(
                f"| {s} | {_ci(mo[s]['mean_apgr'], mo[s]['ci'])} | {_ci(mp['diff'], mp['ci'])} | "
                f"{_ci(po[s]['apgr'], po[s]['ci'])} | {_f(po[s]['cpt50'])} | {_ci(pp['diff'], pp['ci'])} |"
            )
        lines.append("| random | 0.500 | - | 0.500 | 0.500 | - |")
    rs_ = res["llmrouter_row_split"]
    lines += [
        "",
        f"### For contrast: LLMRouter, random row folds ({rs_['folds']} folds, every task seen)",
        "",
        "The split the issue warns about. The prior here knows each row's true task, so within "
        "a task it varies only between folds, and against the rows it holds out: a fold's own "
        "rows are missing from its mean. Hence its mean over tasks below 0.5; pooled, it ranks "
        "tasks and is the figure to read.",
        "",
        "| pair | scorer | mean APGR over tasks [CI] | pooled APGR [CI] | pooled CPT(50%) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for pair_name, p in rs_["pairs"].items():
        for s in ("knn", "logistic", "mf", "prior"):
            mo, po = p["mean_over_tasks"][s], p["pooled"][s]
            lines.append(
                f"| {pair_name} | {s} | {_ci(mo['mean_apgr'], mo['ci'])} | "
                f"{_ci(po['apgr'], po['ci'])} | {_f(po['cpt50'])} |"
            )
    sen = res["sensitivity"]
    n_f = len(lr["tuned"])
    n_k = sum(t["knn_k"] == max(KNN_KS) for t in lr["tuned"])
    n_l = sum(t["logistic_lambda"] == max(LOGISTIC_LAMBDAS) for t in lr["tuned"])
    lines += [
        "",
        f"### Sensitivity: leave one task out with fixed hyperparameters ({sen['pair']})",
        "",
        f"Tuned on the training tasks, the largest k ({max(KNN_KS)}) won in {n_k} of {n_f} "
        f"held-out folds and the strongest L2 ({max(LOGISTIC_LAMBDAS)}) in {n_l} of {n_f}: the "
        "more a predictor falls back to the mean, the better it does on unseen tasks. Below, "
        "fixed values instead; picking the best of them on the test tasks themselves is an "
        "optimistic bound, not a result.",
        "",
        "| predictor | setting | mean APGR over tasks | pooled APGR |",
        "| --- | --- | --- | --- |",
    ]
    for kind in ("knn_k", "logistic_lambda"):
        for setting, r in sen[kind].items():
            lines.append(
                f"| {kind.split('_')[0]} | {kind.split('_', 1)[1]} = {setting} | "
                f"{_f(r['mean_over_tasks'])} | {_f(r['pooled'])} |"
            )
    cas = lr["cascade"]
    lines += [
        "",
        "### LLMRouter, leave one task out: the cheapest model predicted to succeed",
        "",
        f"Each prompt goes to the first model, cheapest first ({', '.join(cas['order'])}), whose "
        "predicted success >= the threshold, else to the one with the highest predicted success. "
        "Cost is the mean input price per million tokens (LLMRouter's list; output lengths "
        "unknown). `over mix` is the quality above randomly mixing the cheapest "
        f"({cas['cheapest']}) and the best single model ({cas['best']}) at the same cost.",
        "",
        "| route | quality | cost $/M | over mix |",
        "| --- | --- | --- | --- |",
    ]
    for mm in (cas["cheapest"], cas["best"]):
        s = cas["singles"][mm]
        lines.append(f"| always {mm} | {s['quality']:.3f} | {s['cost']:.3f} | - |")
    lines.append(
        f"| oracle (cheapest that scores best) | {cas['oracle']['quality']:.3f} | {cas['oracle']['cost']:.3f} | - |"
    )
    for name, r in cas["routes"].items():
        lines.append(
            f"| {name} | {r['quality']:.3f} | {r['cost']:.3f} | {r['over_mix_line']:+.3f} |"
        )
    auc = lr["auc_per_model"]
    lines += [
        "",
        "Per-model ROC-AUC of the held-out success probabilities (pooled over held-out tasks; "
        "graded scores binarized at 0.5):",
        "",
        "| model | knn | logistic | mf | prior |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mm, a in auc.items():
        lines.append(
            f"| {mm} | {_f(a['knn'])} | {_f(a['logistic'])} | {_f(a['mf'])} | {_f(a['prior'])} |"
        )
    mp = res["mmlu_pro"]["pooled"]
    lines += [
        "",
        f"### MMLU-Pro, whole subjects held out ({res['mmlu_pro']['folds']} folds): "
        f"{WEAK_MODEL} -> {STRONG_MODEL}",
        "",
        "The prior here is each row's MMLU-Pro category (seen in training through other subjects; "
        "the router's domain head predicts it), which flatters the baseline.",
        "",
        "| scorer | APGR [CI] | CPT(50%) | minus prior [CI] |",
        "| --- | --- | --- | --- |",
    ]
    for s in ("knn", "logistic", "mf", "prior"):
        d = mp[s]["minus"].get("prior", {"diff": 0.0, "ci": [0.0, 0.0]})
        lines.append(
            f"| {s} | {_ci(mp[s]['apgr'], mp[s]['ci'])} | {_f(mp[s]['cpt50'])} | {_ci(d['diff'], d['ci'])} |"
        )
    lines.append("| random | 0.500 | 0.500 | - |")
    tr = res["transfer"]
    lines += [
        "",
        "### Transfer: trained on all of LLMRouter, tested elsewhere",
        "",
        "The pools share one model (llama-3.1-8b-instruct, with MMLU-Pro) and none with "
        "RouterArena, so a pair score exists only as `weak_fails` = 1 - P(8B right); `difficulty` "
        "= 1 - the mean predicted success of the LLMRouter pool works anywhere. On RouterArena "
        "the cheaper model (gemini-2.0-flash-001) is also the better one, so there is no pair to "
        f"route; only AUCs. Tuned on all LLMRouter tasks: k = {tr['knn_k']}, "
        f"L2 = {tr['logistic_lambda']}.",
        "",
        "| target (pair) | scorer | APGR [CI] | CPT(50%) |",
        "| --- | --- | --- | --- |",
    ]
    for tname, t in tr["targets"].items():
        for s, r in t.get("pooled", {}).items():
            lines.append(
                f"| {tname} ({t['weak']} -> {t['strong']}, n={t['n']}) | {s} | "
                f"{_ci(r['apgr'], r['ci'])} | {_f(r['cpt50'])} |"
            )
    lines += [
        "",
        "ROC-AUC against each target model's success (graded scores binarized at 0.5) of the "
        "mean predicted success of the LLMRouter pool, and for MMLU-Pro's 8B of its own "
        "predicted success:",
        "",
        "| target | model | knn | logistic | mf | prior |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for tname, t in tr["targets"].items():
        rows_auc = [(mm, a) for mm, a in t["success_auc"].items()]
        if "weak_model_auc" in t:
            rows_auc.append((f"{t['weak']}, its own P(right)", t["weak_model_auc"]))
        for mm, a in rows_auc:
            lines.append(
                f"| {tname} (n={t['n']}) | {mm} | {_f(a['knn'])} | {_f(a['logistic'])} | "
                f"{_f(a['mf'])} | {_f(a['prior'])} |"
            )
    lines += [
        "",
        "Not used: `alpaca_eval_preferences.jsonl` (one source, no task labels to split by, and "
        "win rates against a baseline rather than success).",
        "",
        END,
    ]
    return "\n".join(lines)


def _limit_threads() -> None:
    """One BLAS thread: the study shares a small machine with training runs."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # the variables below only help if set before numpy loads
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")


def run(reps: int = REPS) -> dict:
    _limit_threads()
    llm, pro, arena = load_llmrouter(), load_mmlu_pro(), load_routerarena()
    x_llm = embed(llm.texts, "llmrouter")
    x_pro = embed(pro.texts, "mmlu_pro")
    x_arena = embed(arena.texts, "routerarena")
    means = dict(zip(llm.models, llm.scores.mean(axis=0)))
    cheapest = min(llm.models, key=lambda mm: (llm.prices[mm], -means[mm]))
    best = max(llm.models, key=lambda mm: means[mm])
    primary = (cheapest, best)
    pairs = [primary]
    if WEAK_MODEL in llm.models and cheapest != WEAK_MODEL:
        pairs.append((WEAK_MODEL, best))
    print("LLMRouter, leave one task out")
    lr = study_llmrouter(llm, x_llm, pairs, reps)
    print("LLMRouter, random row folds (for contrast)")
    rows = study_row_split(llm, x_llm, pairs, reps)
    print("LLMRouter, fixed hyperparameters (sensitivity)")
    sens = study_sensitivity(llm, x_llm, primary)
    print("MMLU-Pro, subjects held out")
    mp = study_mmlu_pro(pro, x_pro, reps)
    arena_means = dict(zip(arena.models, arena.scores.mean(axis=0)))
    arena_weak = min(arena.models, key=lambda mm: arena.prices[mm])
    arena_strong = max(arena.models, key=lambda mm: arena_means[mm])
    # on RouterArena the cheaper model is also the better one: no weak/strong pair to route
    arena_pair = (arena_weak, arena_strong) if arena_weak != arena_strong else None
    targets = [(pro, x_pro, (WEAK_MODEL, STRONG_MODEL)), (arena, x_arena, arena_pair)]
    print("Transfer")
    tr = study_transfer(llm, x_llm, targets, reps)
    key = f"{primary[0]} -> {primary[1]}"
    p = lr["pairs"][key]
    return {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "reps": reps,
        "seed": SEED,
        "min_gap": MIN_GAP,
        "margin": MARGIN,
        "primary_pair": key,
        "llmrouter": lr,
        "llmrouter_row_split": rows,
        "sensitivity": sens,
        "mmlu_pro": mp,
        "transfer": tr,
        "verdict": verdict(p["mean_over_tasks"], p["pooled"]),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=REPS, help="bootstrap resamples (default 1000)")
    ap.add_argument(
        "--no-write", action="store_true", help="print the card section, write nothing to models/"
    )
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the card section from classifiers/models/routing_study.json, computing nothing",
    )
    args = ap.parse_args(argv)
    if args.render_only:
        res = json.loads((MODELS_DIR / "routing_study.json").read_text(encoding="utf-8"))
        write_card_section(render(res), BEGIN, END)
        return
    res = run(args.reps)
    section = render(res)
    if args.no_write:
        print(section)
        return
    write_json(MODELS_DIR / "routing_study.json", res)
    write_card_section(section, BEGIN, END)
    print(section)


if __name__ == "__main__":
    main()
