"""`meritorder explain`'s classifier lines: the domain with its confidence, the harm score with
its threshold, or why there is none."""

from __future__ import annotations

import re
from pathlib import Path

from classifiers.engine import SignalEngine
from meritorder.batch import explain
from meritorder.classify import EngineClassifier
from meritorder.config import parse_config
from meritorder.router import Router

POLICY = """
models:
  - {name: small, cluster: a, upstream_model: s, cost: 0.1}
  - {name: safe, cluster: b, upstream_model: g, cost: 0.2}
default_model: small
signals:
  - {name: harm, type: harmful}
  - {name: unsure, type: domain_confidence, below: 0.99}
decisions:
  - {name: to-safe, priority: 10, when: harm, route: [safe]}
"""


async def explained(model_dir: Path, text: str) -> str:
    classifier = EngineClassifier(SignalEngine.load(model_dir, force_cpu=True))
    try:
        return await explain(Router(parse_config(POLICY), classifier), text, {}, None)
    finally:
        classifier.close()


async def test_explain_shows_the_domains_confidence_and_the_harm_score_with_its_threshold(
    harm_model_dir: Path,
) -> None:
    out = await explained(harm_model_dir, "hello mat")
    assert re.search(r"\n  domain +\w+ 0\.\d\d, .* \(confidence 0\.\d\d\)\n", out), out
    assert re.search(r"\n  harmful +0\.\d{3} \(threshold 0\.500\)\n", out), out
    assert re.search(r"\n  harm +harmful +fired", out), out
    assert re.search(r"\n  unsure +domain_confidence +fired", out), out
    assert "result: route to safe" in out


async def test_explain_says_the_harm_score_is_unavailable_without_a_harm_head(
    model_dir: Path,
) -> None:
    out = await explained(model_dir, "hello mat")
    assert "\n  harmful       unavailable (the model has no harm head)\n" in out
    assert "classifier=not_in_model" in out and "unavailable=harm" in out
