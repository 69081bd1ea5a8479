"""A decision's cheaper tier (`under_pressure`): used only when every `route` candidate is
saturated, and only through every filter, so pressure never breaks a boundary or a budget."""

from __future__ import annotations

import pytest

from meritorder.config import ConfigError, parse_config
from meritorder.policy import Note, Observation, PoolState, Routed, decide
from meritorder.pool import ModelLoad
from tests.helpers import Pii, chat_view, signals_of

POLICY = """
models:
  - {name: big-a, cluster: a, upstream_model: a, cost: 4, metrics_url: http://a/metrics,
     saturation: {queue: 2}}
  - {name: big-b, cluster: b, upstream_model: b, cost: 4, metrics_url: http://b/metrics,
     saturation: {queue: 2}}
  - {name: small, cluster: s, upstream_model: s, cost: 1, metrics_url: http://s/metrics,
     saturation: {queue: 2}}
  - {name: outside, cluster: o, upstream_model: o, cost: 0.5, boundary: external}
default_model: small
signals:
  - {name: hi, keywords: [hello]}
decisions:
  - {name: chat, when: hi, route: [big-a, big-b], under_pressure: [outside, small]}
boundaries:
  - {name: keep-pii-inside, pii_types: [EMAIL_ADDRESS]}
"""
CONFIG = parse_config(POLICY)


def load(**waiting: float) -> dict[str, ModelLoad]:
    return {
        name.replace("_", "-"): ModelLoad(replicas=1, reachable=1, waiting=n, age_s=0.1)
        for name, n in waiting.items()
    }


def route(text: str, **waiting: float) -> Routed:
    email = text.find("jane@example.com")
    found = (Pii("EMAIL_ADDRESS", email, email + 16),) if email >= 0 else ()
    obs = Observation(chat_view(text), classified=signals_of(pii=found))
    decision = decide(CONFIG, obs, PoolState(load=load(**waiting)))
    assert isinstance(decision, Routed)
    return decision


def test_the_cheaper_tier_is_not_used_while_a_route_candidate_has_room() -> None:
    decision = route("hello", big_a=5, big_b=0, small=0)
    assert decision.model.name == "big-b"
    assert Note("stepped_down", "pressure") not in decision.notes


def test_when_every_route_candidate_is_saturated_the_decision_steps_down() -> None:
    decision = route("hello", big_a=5, big_b=3, small=0)
    assert decision.model.name == "outside"  # the tier's first model that passes every filter
    assert Note("stepped_down", "pressure") in decision.notes
    assert Note("all_candidates_saturated") not in decision.notes
    assert {r.model for r in decision.rejected} >= {"big-a", "big-b"}


def test_stepping_down_never_crosses_a_boundary() -> None:
    decision = route("hello, mail jane@example.com", big_a=5, big_b=3, small=0)
    assert decision.model.name == "small"  # outside is external, and the prompt holds PII
    assert Note("stepped_down", "pressure") in decision.notes


def test_a_saturated_tier_leaves_the_least_loaded_route_candidate() -> None:
    decision = route("hello, mail jane@example.com", big_a=5, big_b=3, small=9)
    assert decision.model.name == "big-b"
    assert Note("all_candidates_saturated") in decision.notes
    assert Note("stepped_down", "pressure") not in decision.notes


def test_an_unknown_model_under_pressure_is_named_with_a_fix() -> None:
    with pytest.raises(
        ConfigError,
        match=r"decisions\[0\]\.under_pressure\[1\]: unknown model 'smal'; did you mean 'small'",
    ):
        parse_config(POLICY.replace("[outside, small]", "[outside, smal]"))
