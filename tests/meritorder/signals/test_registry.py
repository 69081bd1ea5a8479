"""The signal registry: the config accepts exactly the registered types."""

from __future__ import annotations

import pytest

from meritorder.config import ConfigError, parse_config
from meritorder.signals import BY_TAG, CLASSIFIER_TYPES, SIGNAL_TYPES, type_tag

MODELS = """
models: [{name: a, cluster: a, upstream_model: a, cost: 1}]
default_model: a
"""


def test_every_registered_type_has_its_own_tag() -> None:
    assert [type_tag(t) for t in SIGNAL_TYPES] == list(BY_TAG)
    assert len(BY_TAG) == len(SIGNAL_TYPES) == 11
    assert {
        "domain", "prompt_attack", "harmful", "pii", "difficulty", "domain_confidence"
    } == CLASSIFIER_TYPES  # fmt: skip


@pytest.mark.parametrize(
    ("signal", "problem"),
    [
        (
            "{name: s, type: domian, domains: [math]}",
            "signals[0].type: unknown signal type 'domian'; did you mean 'domain'?",
        ),
        (
            "{name: s, type: sentiment}",
            "signals[0].type: unknown signal type 'sentiment'; known types: keyword, domain",
        ),
    ],
)
def test_a_type_missing_from_the_registry_fails_at_load_time(signal: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MODELS + f"signals: [{signal}]")
    assert caught.value.problems[0].startswith(problem)


def test_a_signal_without_a_type_is_a_keyword_signal() -> None:
    config = parse_config(MODELS + "signals: [{name: s, keywords: [x]}]")
    assert config.signals[0].type == "keyword" and not config.uses_classifier()


def test_only_required_classifier_signals_must_be_computed() -> None:
    config = parse_config(
        MODELS
        + """signals:
  - {name: k, keywords: [x]}
  - {name: d, type: difficulty, threshold: 0.5}
  - {name: p, type: pii, required: true}
"""
    )
    assert config.uses_classifier() and config.required_signals(virtual=True) == ["p"]
