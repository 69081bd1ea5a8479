"""The policy file's domain and PII-type names are every shipped classifier profile's labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meritorder.signals.labels import DOMAINS, PII_TYPES

MODELS = Path(__file__).resolve().parents[3] / "classifiers" / "models"
SPECS = [MODELS / "signals.json", MODELS / "fast" / "signals.json"]


@pytest.mark.parametrize("spec", SPECS, ids=["accurate", "fast"])
def test_the_domains_are_the_models_domain_labels(spec: Path) -> None:
    assert set(DOMAINS) == set(json.loads(spec.read_text())["domain_labels"])


@pytest.mark.parametrize("spec", SPECS, ids=["accurate", "fast"])
def test_the_pii_types_are_the_models_entity_types(spec: Path) -> None:
    tags = json.loads(spec.read_text())["pii_tags"]
    assert set(PII_TYPES) == {t.split("-", 1)[1] for t in tags if t != "O"}
