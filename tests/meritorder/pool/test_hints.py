"""Hints to the pool's endpoint picker: the decision's objective, the verified tenant, a digest
of the session and the output cap, set by the router alone."""

from __future__ import annotations

import pytest

from meritorder.config import ConfigError, parse_config
from meritorder.policy import Routed
from meritorder.pool.hints import PoolHintsConfig, pool_hints
from meritorder.router import Router
from tests.helpers import chat_view

POLICY = """
models:
  - {name: a, cluster: a, upstream_model: a, cost: 1}
  - {name: b, cluster: b, upstream_model: b, cost: 2}
default_model: a
signals:
  - {name: hi, keywords: [hello]}
decisions:
  - {name: chat, when: hi, route: [b], objective: interactive, max_tokens: 100}
sessions: {key: ["header:x-session-id"]}
pool_hints: {default_objective: batch}
"""


def test_a_session_leaves_only_as_a_digest_and_the_same_one_each_time() -> None:
    config = PoolHintsConfig()
    one = pool_hints(config, objective=None, tenant=None, session="acme|s1", max_output_tokens=None)
    again = pool_hints(
        config, objective=None, tenant=None, session="acme|s1", max_output_tokens=None
    )
    other = pool_hints(
        config, objective=None, tenant=None, session="acme|s2", max_output_tokens=None
    )
    digest = one["x-meritorder-pool-session"]
    assert digest == again["x-meritorder-pool-session"] != other["x-meritorder-pool-session"]
    assert "acme" not in digest and "s1" not in digest


def test_a_header_set_to_null_is_neither_sent_nor_protected() -> None:
    config = PoolHintsConfig(fairness_header=None, default_objective="standard")
    hints = pool_hints(config, objective=None, tenant="acme", session=None, max_output_tokens=8)
    assert hints == {
        "x-gateway-inference-objective": "standard",
        "x-meritorder-max-output-tokens": "8",
    }
    assert "x-gateway-inference-fairness-id" not in config.protected()


async def test_a_routed_request_carries_its_decisions_objective_tenant_and_cap() -> None:
    router = Router(parse_config(POLICY))
    headers = {"x-meritorder-tenant": "ACME", "x-session-id": "s-1"}
    decision = await router.route(chat_view("hello", max_tokens=500), headers)
    assert isinstance(decision, Routed)
    hints = dict(decision.steps.headers)
    assert hints["x-gateway-inference-objective"] == "interactive"
    assert hints["x-gateway-inference-fairness-id"] == "acme"  # the normalized tenant
    assert hints["x-meritorder-max-output-tokens"] == "100"  # the decision's cap, not the ask
    assert len(hints["x-meritorder-pool-session"]) == 32


async def test_an_unverified_request_gets_the_default_objective_and_no_fairness_queue() -> None:
    router = Router(parse_config(POLICY))
    decision = await router.route(chat_view("what time is it", model="a", max_tokens=7))
    hints = dict(decision.steps.headers)
    assert hints["x-gateway-inference-objective"] == "batch"
    assert "x-gateway-inference-fairness-id" not in hints
    assert "x-meritorder-pool-session" not in hints  # no session header
    assert hints["x-meritorder-max-output-tokens"] == "7"


def test_the_router_protects_every_hint_header_from_clients() -> None:
    router = Router(parse_config(POLICY))
    assert router.protected_headers == {
        "x-gateway-inference-objective",
        "x-gateway-inference-fairness-id",
        "x-meritorder-pool-session",
        "x-meritorder-max-output-tokens",
    }
    plain = POLICY.replace("pool_hints: {default_objective: batch}\n", "").replace(
        ", objective: interactive", ""
    )
    assert Router(parse_config(plain)).protected_headers == frozenset()


def test_an_objective_without_pool_hints_names_the_field_and_the_fix() -> None:
    without = POLICY.replace("pool_hints: {default_objective: batch}\n", "")
    with pytest.raises(
        ConfigError, match=r"decisions\[0\]\.objective: 'interactive'.*add a pool_hints"
    ):
        parse_config(without)
