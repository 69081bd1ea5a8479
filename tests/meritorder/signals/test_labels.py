"""The policy file's domain and PII-type names are the shipped classifier model's labels."""

from __future__ import annotations

import json
from pathlib import Path

from meritorder.signals.labels import DOMAINS, PII_TYPES

SPEC = Path(__file__).resolve().parents[3] / "classifiers" / "models" / "signals.json"


def test_the_domains_are_the_models_domain_labels() -> None:
    assert set(DOMAINS) == set(json.loads(SPEC.read_text())["domain_labels"])


def test_the_pii_types_are_the_models_entity_types() -> None:
    tags = json.loads(SPEC.read_text())["pii_tags"]
    assert set(PII_TYPES) == {t.split("-", 1)[1] for t in tags if t != "O"}
