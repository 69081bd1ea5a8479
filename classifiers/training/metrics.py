"""Metric definitions shared by threshold calibration (train) and evaluation."""

from __future__ import annotations

from collections import Counter

import numpy as np

from .common import PII_TAGS, TAG2ID, TRAIN_LENGTH

# --------------------------------------------------------------------------- classification


def macro_f1(y: np.ndarray, p: np.ndarray, n: int) -> float:
    f1s = []
    for c in range(n):
        tp = np.sum((p == c) & (y == c))
        fp = np.sum((p == c) & (y != c))
        fn = np.sum((p != c) & (y == c))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank (scipy's `rankdata`, in numpy: the
    router's venv, where the evaluators also run, has no scipy)."""
    s = np.asarray(s, dtype=float)
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    ranks = np.empty(len(s))
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + 1 + b) / 2.0
    return ranks


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = y.sum(), (~y).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = average_ranks(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def threshold_at_fpr(neg_scores: np.ndarray, max_fpr: float) -> float:
    """Smallest threshold t (score >= t flags) with FPR(t) <= max_fpr on the given negatives."""
    s = np.sort(np.asarray(neg_scores))[::-1]
    k = int(np.floor(max_fpr * len(s)))  # at most k negatives may score >= t
    if k >= len(s):
        return 0.0
    return float(np.nextafter(s[k], np.inf))


def recall_at_fpr(y: np.ndarray, s: np.ndarray, max_fpr: float) -> tuple[float, float]:
    y = np.asarray(y).astype(bool)
    t = threshold_at_fpr(s[~y], max_fpr)
    return float(np.mean(s[y] >= t)), t


# --------------------------------------------------------------------------- routing


def pgr_curve(score: np.ndarray, weak: np.ndarray, strong: np.ndarray):
    """Route the top-k rows by score to the strong model, k = 0..n.

    Returns (share of strong calls, performance gap recovered). Ties are broken by a stable sort.
    PGR(k) = (acc(k) - acc_weak) / (acc_strong - acc_weak) with acc(k) the accuracy of the mixed policy.
    """
    weak = np.asarray(weak, float)
    strong = np.asarray(strong, float)
    order = np.argsort(-np.asarray(score), kind="stable")
    n = len(weak)
    acc = (weak.sum() + np.concatenate([[0.0], np.cumsum((strong - weak)[order])])) / n
    gap = strong.mean() - weak.mean()
    return np.arange(n + 1) / n, (acc - weak.mean()) / gap


def apgr(score, weak, strong) -> float:
    x, y = pgr_curve(score, weak, strong)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x) / 2))


def cpt(score, weak, strong, target: float = 0.5) -> float:
    """Smallest share of strong calls whose PGR reaches `target`."""
    x, y = pgr_curve(score, weak, strong)
    idx = np.nonzero(y >= target)[0]
    return float(x[idx[0]]) if len(idx) else 1.0


# --------------------------------------------------------------------------- PII


def token_labels(offsets, entities, n_tokens: int) -> list[int]:
    """BIO tag ids per token from character spans; -100 on special tokens."""
    labels = []
    started = set()
    for s, e in offsets[:n_tokens]:
        if s == e:
            labels.append(-100)
            continue
        tag = 0
        for k, ent in enumerate(entities):
            if s < ent["end"] and e > ent["start"]:
                prefix = "I" if k in started else "B"
                started.add(k)
                tag = TAG2ID[f"{prefix}-{ent['type']}"]
                break
        labels.append(tag)
    return labels


def pii_gold(tok, rows: list[dict], max_length: int, key: str = "entities"):
    """Token ids (truncated to `max_length`) and gold BIO tag ids from each row's `key` spans."""
    enc = tok(
        [r["text"] for r in rows],
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
    )
    gold = [
        token_labels(o, r[key], len(i))
        for r, o, i in zip(rows, enc["offset_mapping"], enc["input_ids"])
    ]
    return enc["input_ids"], gold


def decode_spans(tags: list[int]) -> set[tuple[str, int, int]]:
    """BIO tag ids -> {(type, first_token, last_token)}; -100 positions are skipped; I- after O opens a span."""
    spans, cur = set(), None
    for i, t in enumerate(tags):
        if t == -100:
            continue
        name = PII_TAGS[t]
        if name == "O":
            if cur:
                spans.add(tuple(cur))
            cur = None
            continue
        prefix, typ = name.split("-", 1)
        if cur and prefix == "I" and cur[0] == typ:
            cur[2] = i
        else:
            if cur:
                spans.add(tuple(cur))
            cur = [typ, i, i]
    if cur:
        spans.add(tuple(cur))
    return spans


def pii_predict_tags(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Token tag ids: the best non-O tag where 1 - P(O) >= threshold, else O."""
    non_o = 1.0 - probs[:, 0]
    best = 1 + np.argmax(probs[:, 1:], axis=1)
    return np.where(non_o >= threshold, best, 0)


def pii_counts(gold_spans: list[set], pred_spans: list[set]) -> dict[str, Counter]:
    """Per-sentence tp/fp/fn counters by entity type (exact span match)."""
    out = []
    for g, p in zip(gold_spans, pred_spans):
        c = Counter()
        for s in p:
            c[(s[0], "tp" if s in g else "fp")] += 1
        for s in g:
            if s not in p:
                c[(s[0], "fn")] += 1
        out.append(c)
    return out


def f1_from_counts(counts: list[Counter], typ: str | None = None) -> float:
    tp = fp = fn = 0
    for c in counts:
        for (t, k), v in c.items():
            if typ is not None and t != typ:
                continue
            if k == "tp":
                tp += v
            elif k == "fp":
                fp += v
            else:
                fn += v
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else float("nan")


def bootstrap_ci(fn, n: int, reps: int = 1000, seed: int = 7) -> tuple[float, float]:
    """95% percentile bootstrap over row indices; fn(idx) -> metric."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(reps):
        v = fn(rng.integers(0, n, n))
        if v == v:  # drop NaN
            vals.append(v)
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


__all__ = ["TRAIN_LENGTH"]


def decode_pred_spans(
    probs: np.ndarray, valid: list[bool], threshold: float
) -> set[tuple[str, int, int]]:
    """Run-based decoding used at runtime.

    A token is an entity token when 1 - P(O) >= threshold (special tokens never are). Each maximal run of
    consecutive entity tokens becomes one span; its type is the entity type with the largest summed B+I
    probability over the run. This keeps a span's type consistent (token-wise argmax can flip an address's
    digits to PHONE_NUMBER mid-span) and ignores spurious B tags inside a run.
    """
    n_types = (probs.shape[1] - 1) // 2
    is_ent = (1.0 - probs[:, 0] >= threshold) & np.asarray(valid, bool)
    spans, i, n = set(), 0, len(is_ent)
    while i < n:
        if not is_ent[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and is_ent[j + 1]:
            j += 1
        mass = probs[i : j + 1, 1:].reshape(j - i + 1, n_types, 2).sum(axis=(0, 2))
        spans.add((PII_TAGS[1 + 2 * int(np.argmax(mass))][2:], i, j))
        i = j + 1
    return spans
