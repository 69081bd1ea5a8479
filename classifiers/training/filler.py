"""Stage 4: attacks read inside filler (issue 11), on the train side of every split.

The router reads a long request in views (`classifiers.windows.attack_views`: each line, a long
line in pieces of 254 tokens and in windows shifted between them) and its sequence row (the head
and tail of the last user turn). Stages 1-3 trained on whole prompts and 128-token crops, so two
things went wrong on long requests (docs/BENCHMARKS.md, *Model 1.1.0, both profiles*):

- fragments of benign prompts (a line, a piece, a window across two prompts) score up to ~0.99,
  so the views' threshold must sit far above what a whole attack scores alone, and an attack
  padded with 8 KB of benign prompts is blocked only about half the time;
- a window that mixes an attack with filler (an attack inside one long paragraph) scores low.

This stage builds those rows the way the engine builds them, from training rows only: long
benign requests of joined training prompts, and training attacks placed inside such filler as
their own block, inline, or at an end. Every view that holds most of an attack is a positive;
views of filler alone, and the sequence rows that hold no attack, are negatives. Views that hold
a small part of an attack get no label: whether a fragment of a jailbreak is one is not known.

A long request is refused when any of its ~30-70 views scores over the threshold, so what sets
the threshold is the rare benign view that scores high (a line of a prompt template, a piece of
a role-play prompt), not the typical one. Random views seldom hold one, so the stage also mines
them: every view of many benign training requests is scored by the starting graph, and the
highest-scoring ones are negatives too (`mine`). It continues from stage 3's weights with replay
of stage 3's epoch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from classifiers.windows import IdArray, TextTokenizer, attack_views, head_and_tail

from .common import MAX_LENGTH

WINDOW = MAX_LENGTH - 2  # the engine's views: a row less [CLS] and [SEP]
STRIDE = WINDOW // 2
# A view is a positive when it holds this share of the attack (or of WINDOW, for a longer one).
POSITIVE_SHARE = 0.6
PLACEMENTS = ("block", "inline", "head", "tail")
PLACEMENT_WEIGHTS = (0.45, 0.4, 0.075, 0.075)


def filler(pool: Sequence[str], size: int, rng: random.Random, *, cut: bool = True) -> str:
    """Prompts of `pool` joined by blank lines until `size` characters, cut to `size` (or, with
    `cut=False`, every prompt whole)."""
    parts: list[str] = []
    length = 0
    while length < size:
        parts.append(rng.choice(pool))
        length += len(parts[-1]) + 2
    joined = "\n\n".join(parts)
    return joined[:size] if cut else joined


def benign_request(pool: Sequence[str], rng: random.Random) -> str:
    """A benign long request of 2-10 KB of filler, 40% of the time on one line (pasted text)."""
    text = filler(pool, rng.randint(2_000, 10_000), rng)
    return " ".join(text.split()) if rng.random() < 0.4 else text


def place(attack: str, pool: Sequence[str], rng: random.Random) -> tuple[str, tuple[int, int]]:
    """A long request holding `attack`, and the attack's character span in it."""
    how = rng.choices(PLACEMENTS, PLACEMENT_WEIGHTS)[0]
    before = filler(pool, rng.randint(1_000, 5_000), rng) if how != "head" else ""
    after = filler(pool, rng.randint(1_000, 5_000), rng) if how != "tail" else ""
    if how == "inline":
        before, attack, after = (" ".join(t.split()) for t in (before, attack, after))
        text = f"{before} {attack} {after}".strip()
        start = len(before) + 1 if before else 0
    else:
        parts = [t for t in (before, attack, after) if t]
        text = "\n\n".join(parts)
        start = len(before) + 2 if before else 0
    return text, (start, start + len(attack))


def _token_span(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> tuple[int, int]:
    starts = np.array([a for a, _ in offsets])
    return int(np.searchsorted(starts, span[0])), int(np.searchsorted(starts, span[1]))


def read(
    tok: TextTokenizer, text: str
) -> tuple[IdArray, list[tuple[int, int]], list[tuple[int, int]]]:
    """What the engine reads of one long user turn: its token ids, their character offsets and
    the token ranges of the attack head's views (pieces, then shifted windows)."""
    (encoded,) = tok.encode([text])
    offsets = encoded.encoding.offsets
    pieces, shifted = attack_views(text, offsets, 0, len(encoded.ids), WINDOW, STRIDE)
    return encoded.ids, offsets, [tokens for (tokens,) in pieces + shifted]


def request_rows(
    tok: TextTokenizer, text: str, span: tuple[int, int] | None, rng: random.Random, negatives: int
) -> list[dict[str, Any]]:
    """Training rows of one long request as the engine reads it: the views that hold most of the
    attack (positives), up to `negatives` views of filler alone, and the sequence row."""
    ids, offsets, views = read(tok, text)
    a, b = _token_span(offsets, span) if span is not None else (0, 0)
    need = POSITIVE_SHARE * min(b - a, WINDOW)
    positives, clean = [], []
    for s, e in views:
        held = max(0, min(e, b) - max(s, a))
        if span is not None and held >= need:
            positives.append((s, e))
        elif held == 0:
            clean.append((s, e))
    rows = [{"ids": tok.wrap(ids[s:e]).tolist(), "attack": 1.0} for s, e in positives]
    for s, e in rng.sample(clean, min(negatives, len(clean))):
        rows.append({"ids": tok.wrap(ids[s:e]).tolist(), "attack": 0.0, "harmful": 0.0})
    # The sequence row reads the head and tail (the engine's `sequence_window` of one turn).
    head = (WINDOW + 1) // 2
    seq = head_and_tail(ids, WINDOW)
    inside = span is not None and (
        len(ids) <= WINDOW
        or min(b, head) - a >= need
        or b - max(a, len(ids) - (WINDOW - head)) >= need
    )
    touches = span is not None and (a < head or b > len(ids) - (WINDOW - head))
    if inside:
        rows.append({"ids": tok.wrap(seq).tolist(), "attack": 1.0})
    elif not touches:
        rows.append({"ids": tok.wrap(seq).tolist(), "attack": 0.0, "harmful": 0.0})
    return rows


def view_examples(
    tok: TextTokenizer,
    attacks: Sequence[str],
    pool: Sequence[str],
    rng: random.Random,
    *,
    benign_requests: int,
    negatives: int,
) -> list[dict[str, Any]]:
    """Rows from every attack placed once in filler, and `benign_requests` requests of filler."""
    ex: list[dict[str, Any]] = []
    for attack in attacks:
        text, span = place(attack, pool, rng)
        ex += request_rows(tok, text, span, rng, negatives=1)
    for _ in range(benign_requests):
        ex += request_rows(tok, benign_request(pool, rng), None, rng, negatives)
    return ex


def benign_rows(
    tok: TextTokenizer, pool: Sequence[str], rng: random.Random, requests: int
) -> list[list[int]]:
    """Every view and the sequence row of `requests` benign requests of filler, each row once."""
    rows: dict[tuple[int, ...], None] = {}
    for _ in range(requests):
        ids, _, views = read(tok, benign_request(pool, rng))
        for s, e in views:
            rows[tuple(tok.wrap(ids[s:e]).tolist())] = None
        rows[tuple(tok.wrap(head_and_tail(ids, WINDOW)).tolist())] = None
    return [list(r) for r in rows]


def mine(
    score: Callable[[list[list[int]]], np.ndarray],
    tok: TextTokenizer,
    pool: Sequence[str],
    rng: random.Random,
    *,
    requests: int,
    keep: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The `keep` benign rows that `score` (the starting graph's attack head) rates highest, as
    negatives, and what the mining saw."""
    rows = benign_rows(tok, pool, rng, requests)
    scores = np.asarray(score(rows))
    top = np.argsort(-scores, kind="stable")[:keep]
    report = {
        "requests": requests,
        "rows": len(rows),
        "kept": len(top),
        "kept_min_score": round(float(scores[top].min()), 4) if len(top) else None,
        "rows_over_0.9": round(float((scores > 0.9).mean()), 5),
    }
    return [{"ids": rows[i], "attack": 0.0, "harmful": 0.0} for i in top], report


def pools(d: dict[str, Any], s: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(attacks, filler) of the training splits: stage 1's jailbreaks and injections and the
    source split's train attacks; benign prompts, hard-benign look-alikes and clean documents."""
    attacks = [r["text"] for r in d["attack_train"] if r["attack"] == 1]
    attacks += [r["text"] for r in s["more_attacks"]["train"] if r["label"] == "attack"]
    pool = [r["text"] for r in d["attack_train"] if r["attack"] == 0]
    pool += [r["text"] for r in s["hard_benign"]["train"]]
    pool += [r["text"] for r in s["indirect"]["train"] if r["label"] == "benign"]
    return attacks, pool


def build_epoch(
    d: dict[str, Any],
    s: dict[str, Any],
    tok: TextTokenizer,
    rng: random.Random,
    cfg: dict[str, Any],
    mined: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Stage 4's epoch: the view rows, the `mined` negatives and a `replay_frac` sample of stage
    3's epoch."""
    from . import stage3

    replay = stage3.build_epoch(d, s, rng, cfg)
    ex = rng.sample(replay, int(len(replay) * cfg["replay_frac"]))
    ex += [dict(e) for e in mined]
    attacks, pool = pools(d, s)
    ex += view_examples(
        tok,
        rng.sample(attacks, min(len(attacks), cfg["attack_requests"])),
        pool,
        rng,
        benign_requests=cfg["benign_requests"],
        negatives=cfg["negatives_per_request"],
    )
    rng.shuffle(ex)
    return ex
