"""The source split (classifiers/training/sources.py): no held-out source leaks into training."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from classifiers.training import sources
from classifiers.training.common import DATA_DIR, read_jsonl


@pytest.fixture(scope="module")
def split() -> dict:
    return json.loads(sources.SPLIT_FILE.read_text(encoding="utf-8"))


def _rows(name: str) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(DATA_DIR / sources.FILES[name])}


def _split_of(split: dict, name: str) -> dict[str, str]:
    return {i: k for k in ("train", "calib", "dev") for i in split[name][k]}


def test_every_row_is_in_exactly_one_split(split: dict) -> None:
    for name in sources.FILES:
        ids = [i for k in ("train", "calib", "dev") for i in split[name][k]]
        assert len(ids) == len(set(ids)) == len(_rows(name)), name


def test_the_committed_split_is_what_the_rules_give(split: dict) -> None:
    rows = _rows("more_attacks")
    for i, k in _split_of(split, "more_attacks").items():
        assert sources._more_attacks(rows[i]) == k
    rows = _rows("harmful")
    for i, k in _split_of(split, "harmful").items():
        assert sources._harmful(rows[i]) == k


def test_held_out_sources_never_reach_training(split: dict) -> None:
    by = _split_of(split, "domain_requests")
    seen: dict[str, set[str]] = defaultdict(set)
    for i, r in _rows("domain_requests").items():
        seen[r["src"]].add(by[i])
    assert all(len(v) == 1 for v in seen.values())  # a source is never split by row
    for src in sources.DOMAIN_DEV_SRCS:
        assert seen[src] == {"dev"}
    harmful = _rows("harmful")
    train = split["harmful"]["train"]
    assert not any(harmful[i]["src"].startswith(sources.HARMFUL_DEV_PREFIXES) for i in train)


def test_indirect_injection_twins_stay_together(split: dict) -> None:
    by = _split_of(split, "indirect")
    pairs: dict[str, set[str]] = defaultdict(set)
    for i, r in _rows("indirect").items():
        pairs[r["pair_id"]].add(by[i])
    assert all(len(v) == 1 for v in pairs.values())
    assert split["indirect_dev"]["dev"] and not split["indirect_dev"]["train"]


def test_phone_numbers_of_held_out_regions_never_reach_training(split: dict) -> None:
    held = {c for c, k in split["phone_code_split"].items() if k != "train"}
    assert held
    rows = _rows("phones")
    for i in split["phones"]["train"]:
        r = rows[i]
        assert not held & set(sources.calling_codes(r["text"], r["entities"]))


def test_calling_codes_read_international_formats_only() -> None:
    text = "call +33 1 23 45 67 89 or 0049 30 1234567 or (020) 7946 0958"
    ents = [
        {"type": "PHONE_NUMBER", "start": 5, "end": 22},
        {"type": "PHONE_NUMBER", "start": 26, "end": 42},
        {"type": "PHONE_NUMBER", "start": 46, "end": 61},
    ]
    assert sources.calling_codes(text, ents) == ["33", "49"]
