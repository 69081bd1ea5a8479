"""Source splits for the data that teaches the model to generalize (issue 15).

Every row of the newer data files is assigned to train, calib or dev by its *source*: a whole
attack algorithm, document collection, benign corpus, request data set or phone region is held
out, never a random row of it, because production meets sources the model never saw. Where a
source is one big collection with no finer provenance (awesome-chatgpt-prompts, TAT-QA...), the
split falls back to a stable hash of the row inside it, and the split file says so.

`prepare()` writes `splits/sources.json` (row ids per task and split, with the rules); `load()`
returns the rows by task and split for training and evaluation. Nothing here is tuned on dev:
the rules were fixed before any model read the rows.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable

from .common import DATA_DIR, PII_TYPES, SPLIT_DIR, read_jsonl, stable_bucket, write_json

SPLIT_FILE = SPLIT_DIR / "sources.json"

# ---------------------------------------------------------------- guard: attacks, benign, harmful

# more_attacks.jsonl: whole attack algorithms / collections held out.
ATTACK_DEV_KINDS = {"PAIR"}
ATTACK_DEV_SRCS = {"latent-jailbreak/composition_based", "bastioncorpus/tool_output"}
ATTACK_CALIB_KINDS = {"DSN"}

# hard_benign.jsonl: whole sources held out; big single sources are hashed by row inside them.
HARD_BENIGN_DEV_SRCS = {"medquad-answer", "self-instruct", "bastioncorpus/tool_output"}
TOOL_OUTPUT_DEV_KINDS = {"tool-output/6", "tool-output/7"}
TOOL_OUTPUT_CALIB_KINDS = {"tool-output/5"}

# harmful_requests.jsonl: whole benchmarks held out.
HARMFUL_DEV_PREFIXES = ("strongreject", "jbb-behaviors")
HARMFUL_CALIB_PREFIXES = ("tdc2023", "harmbench/contextual")

# ---------------------------------------------------------------- domain requests

DOMAIN_DEV_SRCS = {
    "agieval/sat-math",
    "agieval/aqua-rat",
    "pubmedqa/ori_pqal",
    "agieval/lsat-lr",
    "human-eval",
    "agieval/gaokao-history",
}
DOMAIN_CALIB_SRCS = {"agieval/lsat-rc"}
# Collections of many small sources (a LegalBench task, a counsel-chat topic): hashed by source.
DOMAIN_HASHED_FAMILIES = ("legalbench", "counsel-chat")


def domain_source(src: str) -> str:
    """The source a domain request row is held out by (a request data set, or for LegalBench and
    counsel-chat their family: leave-one-source-out groups them)."""
    family = src.split("/")[0]
    return family if family in DOMAIN_HASHED_FAMILIES else src


# ---------------------------------------------------------------- PII phones

PHONE_DEV_SHARE, PHONE_CALIB_SHARE = 0.25, 0.10


def calling_codes(text: str, entities: list[dict]) -> list[str]:
    """The country calling code of each international-format phone number in a row ('+33 ...',
    '0033 ...'); national-format numbers have none that the text alone can tell."""
    import phonenumbers

    codes = []
    for e in entities:
        if e["type"] != "PHONE_NUMBER":
            continue
        raw = text[e["start"] : e["end"]].strip()
        digits = re.sub(r"\D", "", raw)
        if raw.startswith("+"):
            pass
        elif raw.startswith("00"):
            digits = digits[2:]
        else:
            continue
        for n in (1, 2, 3):
            if phonenumbers.region_code_for_country_code(int(digits[:n] or 0)) != "ZZ":
                codes.append(digits[:n])
                break
    return codes


def _three(key: str, salt: str, dev: float, calib: float) -> str:
    u = stable_bucket(key, salt)
    return "dev" if u < dev else ("calib" if u < dev + calib else "train")


# ---------------------------------------------------------------- rules per file


def _indirect(row: dict) -> str:
    # Both twins of a document go the same way (pair_id); the dev file is another source.
    return "calib" if stable_bucket(row["pair_id"], "indirect") < 0.15 else "train"


def _more_attacks(row: dict) -> str:
    if row["kind"] in ATTACK_DEV_KINDS or row["src"] in ATTACK_DEV_SRCS:
        return "dev"
    return "calib" if row["kind"] in ATTACK_CALIB_KINDS else "train"


def _hard_benign(row: dict) -> str:
    src, kind = row["src"], row["kind"]
    if src in HARD_BENIGN_DEV_SRCS:
        return "dev"
    if src == "synthetic-tool-output":
        if kind in TOOL_OUTPUT_DEV_KINDS:
            return "dev"
        return "calib" if kind in TOOL_OUTPUT_CALIB_KINDS else "train"
    if src.startswith("starlette:"):
        return _three(src, "starlette-docs", 0.30, 0.15)
    return _three(row["id"], "hard-benign:" + src, 0.20, 0.10)  # one big source: by row


def _harmful(row: dict) -> str:
    if row["src"].startswith(HARMFUL_DEV_PREFIXES):
        return "dev"
    return "calib" if row["src"].startswith(HARMFUL_CALIB_PREFIXES) else "train"


def _domain(row: dict) -> str:
    src = row["src"]
    if src in DOMAIN_DEV_SRCS:
        return "dev"
    if src in DOMAIN_CALIB_SRCS:
        return "calib"
    if src.split("/")[0] in DOMAIN_HASHED_FAMILIES:
        return _three(src, "domain-family", 0.25, 0.10)
    return "train"


def _phones(row: dict, code_split: Callable[[str], str]) -> str:
    codes = calling_codes(row["text"], row["entities"])
    if codes:
        splits = {code_split(c) for c in codes}
        return "dev" if "dev" in splits else ("calib" if "calib" in splits else "train")
    return _three(row["template_id"], "phones-template", 0.20, 0.10)


FILES: dict[str, str] = {
    "indirect": "guard/indirect_injections.jsonl",
    "indirect_dev": "guard/indirect_injections_dev.jsonl",
    "more_attacks": "guard/more_attacks.jsonl",
    "hard_benign": "guard/hard_benign.jsonl",
    "harmful": "guard/harmful_requests.jsonl",
    "domain_requests": "domain/requests_more.jsonl",
    "phones": "pii/phones_and_identities.jsonl",
}


def prepare(verbose: bool = True) -> dict:
    rows = {name: read_jsonl(DATA_DIR / path) for name, path in FILES.items()}
    codes = sorted(
        {c for r in rows["phones"] for c in calling_codes(r["text"], r["entities"])}, key=int
    )
    code_of = {c: _three(c, "phone-region", PHONE_DEV_SHARE, PHONE_CALIB_SHARE) for c in codes}
    rules: dict[str, Callable[[dict], str]] = {
        "indirect": _indirect,
        "indirect_dev": lambda r: "dev",
        "more_attacks": _more_attacks,
        "hard_benign": _hard_benign,
        "harmful": _harmful,
        "domain_requests": _domain,
        "phones": lambda r: _phones(r, code_of.__getitem__),
    }
    out: dict = {
        "method": {
            "indirect": "guard/indirect_injections.jsonl by pair_id (15% calib, rest train); "
            "guard/indirect_injections_dev.jsonl is dev (other e-mails, attacks, code, tables)",
            "more_attacks": f"dev: kinds {sorted(ATTACK_DEV_KINDS)} and sources "
            f"{sorted(ATTACK_DEV_SRCS)}; calib: kinds {sorted(ATTACK_CALIB_KINDS)}; rest train",
            "hard_benign": f"dev: sources {sorted(HARD_BENIGN_DEV_SRCS)}, tool outputs "
            f"{sorted(TOOL_OUTPUT_DEV_KINDS)} (calib {sorted(TOOL_OUTPUT_CALIB_KINDS)}), 30% of the "
            "starlette doc files (15% calib); awesome-chatgpt-prompts and bastioncorpus/user_input "
            "by row hash inside the source (20% dev, 10% calib): a row split, not a source split",
            "harmful": f"dev: {list(HARMFUL_DEV_PREFIXES)}; calib: {list(HARMFUL_CALIB_PREFIXES)}; "
            "rest train",
            "domain_requests": f"dev: {sorted(DOMAIN_DEV_SRCS)} and 25% of the LegalBench tasks and "
            f"counsel-chat topics (by source hash); calib: {sorted(DOMAIN_CALIB_SRCS)} and 10% of "
            "those; rest train",
            "phones": "by country calling code of the row's international-format numbers "
            f"({PHONE_DEV_SHARE:.0%} of the codes dev, {PHONE_CALIB_SHARE:.0%} calib, by hash; a row "
            "with any held-out code is held out); rows without one by template_id hash",
        },
        "phone_code_split": code_of,
    }
    for name, rule in rules.items():
        split: dict[str, list[str]] = {"train": [], "calib": [], "dev": []}
        for r in rows[name]:
            split[rule(r)].append(r["id"])
        out[name] = {k: sorted(v) for k, v in split.items()}
    write_json(SPLIT_FILE, out)
    if verbose:
        for name in rules:
            print(name, {k: len(v) for k, v in out[name].items()})
    return out


def load() -> dict[str, dict[str, list[dict]]]:
    """Rows by task then split: `{"indirect": {"train": [...], "calib": [...], "dev": [...]}, ...}`."""
    split = json.loads(SPLIT_FILE.read_text(encoding="utf-8"))
    out: dict[str, dict[str, list[dict]]] = {}
    for name, path in FILES.items():
        by_id = {r["id"]: r for r in read_jsonl(DATA_DIR / path)}
        if name == "phones":  # the tagger's types only: cities and the rest read as O
            for r in by_id.values():
                r["entities"] = [e for e in r["entities"] if e["type"] in PII_TYPES]
        out[name] = {k: [by_id[i] for i in split[name][k]] for k in ("train", "calib", "dev")}
    return out


def summary(d: dict[str, dict[str, list[dict]]]) -> dict:
    return {
        name: {k: dict(Counter(r.get("label", "-") for r in rows)) for k, rows in splits.items()}
        for name, splits in d.items()
    }


if __name__ == "__main__":
    prepare()
