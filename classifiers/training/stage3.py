"""Stage 3: what the model needs to generalize (issue 15), on the train side of `sources.py`.

One epoch that continues from stage 2's weights with:
- attacks from other families and places: indirect injections planted in e-mails, tables and code
  (with their clean twins as negatives), optimised and latent jailbreaks, tool-output injections;
- negatives that look like attacks: role-play and "act as" prompts, instructions with an input,
  pasted documentation and tool outputs that contain benign instructions;
- plain harmful requests: positives of the new `harmful` head and negatives of `attack`;
- request-style domain questions from data sets other than MMLU;
- phone numbers of many regions and formats, with number-like negatives;
and replay of stages 1-2's data so that nothing already learned is forgotten.

Long documents are cropped to what the runtime's attack windows read (`CROP_CHARS`), around the
planted instruction when there is one (located by diffing with the clean twin), anywhere in the
clean twin: the label must come from the instruction, not from where the crop sits.
"""

from __future__ import annotations

import random
from collections import defaultdict

from .common import DOMAIN_LABELS

DOM2ID = {d: i for i, d in enumerate(DOMAIN_LABELS)}
CROP_CHARS = 480  # ~110-130 WordPiece tokens of prose: one training row of 128 tokens


def injected_span(text: str, clean: str) -> tuple[int, int]:
    """Where `text` differs from its clean twin: [start, end) in `text`."""
    a = 0
    while a < min(len(text), len(clean)) and text[a] == clean[a]:
        a += 1
    b = 0
    while b < min(len(text), len(clean)) - a and text[-1 - b] == clean[-1 - b]:
        b += 1
    return a, len(text) - b


def crop(text: str, rng: random.Random, span: tuple[int, int] | None = None) -> str:
    """A CROP_CHARS window of a long text: one containing `span` (or as much of it as fits, its
    start first), else anywhere. The request that opens the row is kept: it says what the user
    asked for, which is what makes a planted instruction off-task."""
    if len(text) <= CROP_CHARS:
        return text
    head_end = text.find("\n\n")
    head = text[: head_end + 2] if 0 < head_end < 200 else ""
    body_start = len(head)
    room = CROP_CHARS - len(head)
    if span is None:
        start = rng.randint(body_start, max(body_start, len(text) - room))
    else:
        a, b = max(span[0], body_start), span[1]
        lo = max(body_start, min(a, b - room))
        hi = max(lo, min(a, len(text) - room))
        start = rng.randint(lo, hi)
    return head + text[start : start + room]


def document_view(row: dict, clean: dict[str, str], rng: random.Random) -> str:
    """What a training row reads of a guard row: an attack with a clean twin cropped around the
    planted instruction, another attack around its whole text, anything else anywhere."""
    if row["label"] == "attack":
        twin = clean.get(row.get("pair_id", ""))
        span = injected_span(row["text"], twin) if twin is not None else (0, len(row["text"]))
        return crop(row["text"], rng, span)
    return crop(row["text"], rng)


def twins(rows: list[dict]) -> dict[str, str]:
    """pair_id -> the clean document's text."""
    return {r["pair_id"]: r["text"] for r in rows if r["label"] == "benign"}


def _capped(rows: list[dict], key, cap: int, rng: random.Random) -> list[dict]:
    """At most `cap` rows per `key(row)`: one big source must not drown the others."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[key(r)].append(r)
    out: list[dict] = []
    for k in sorted(by):
        group = by[k]
        out += group if len(group) <= cap else rng.sample(group, cap)
    return out


def guard_examples(s: dict, cfg: dict, rng: random.Random) -> list[dict]:
    """Attack and harm examples from the source-split train rows `s` (`sources.load()`)."""
    from .train import resample

    ex: list[dict] = []
    clean = twins(s["indirect"]["train"])
    for r in resample(s["indirect"]["train"], cfg["indirect_frac"], rng):
        if r["label"] == "attack":
            ex.append({"text": document_view(r, clean, rng), "attack": 1.0})
        else:
            ex.append({"text": document_view(r, clean, rng), "attack": 0.0, "harmful": 0.0})
    for r in resample(s["more_attacks"]["train"], cfg["more_attacks_frac"], rng):
        ex.append({"text": document_view(r, clean, rng), "attack": 1.0})
    for r in resample(s["hard_benign"]["train"], cfg["hard_benign_frac"], rng):
        ex.append({"text": document_view(r, clean, rng), "attack": 0.0, "harmful": 0.0})
    for r in resample(s["harmful"]["train"], cfg["harmful_frac"], rng):
        ex.append({"text": r["text"], "attack": 0.0, "harmful": 1.0})
    return ex


def domain_examples(s: dict, cfg: dict, rng: random.Random) -> list[dict]:
    rows = _capped(s["domain_requests"]["train"], lambda r: r["label"], cfg["domain_cap"], rng)
    return [
        {
            "text": crop(r["text"], rng, (0, len(r["text"]))),
            "domain": DOM2ID[r["label"]],
            "attack": 0.0,
            "harmful": 0.0,
        }
        for r in rows
    ]


def pii_examples(s: dict, cfg: dict, rng: random.Random) -> list[dict]:
    from .train import resample

    return [
        {"text": r["text"], "entities": r["entities"], "attack": 0.0, "harmful": 0.0}
        for r in resample(s["phones"]["train"], cfg["phones_frac"], rng)
    ]


def build_epoch(d: dict, s: dict, rng: random.Random, cfg: dict) -> list[dict]:
    """Stage 3's epoch: the new sources plus replay of stages 1-2 (`train.build_epoch`)."""
    from .train import build_epoch as replay

    ex = replay(d, rng, cfg)  # pro/extra/request/attack/pii fractions from cfg: the replay
    for e in ex:
        if e.get("attack") == 0.0 and "harmful" not in e:
            e["harmful"] = 0.0  # MMLU, PII sentences, benign prompts: not harmful
        elif e.get("attack") == 1.0:
            e.pop("harmful", None)  # a jailbreak usually carries a harmful ask: unknown
    ex += guard_examples(s, cfg, rng) + domain_examples(s, cfg, rng) + pii_examples(s, cfg, rng)
    rng.shuffle(ex)
    return ex
