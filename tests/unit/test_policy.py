"""The pure policy: signals, rules, PII steps, boundaries, budgets, health, explanation."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from meritorder.config import RouterConfig, parse_config
from meritorder.endpoints import parse
from meritorder.policy import (
    Classified,
    Decision,
    Note,
    Observation,
    PoolState,
    Rejection,
    Routed,
    decide,
    evaluate_signals,
)
from meritorder.request import RequestView
from tests.conftest import Pii

POLICY = """
models:
  - {name: small, cluster: a, upstream_model: s, cost: 0.1}
  - {name: coder, cluster: b, upstream_model: c, cost: 0.5}
  - {name: large, cluster: c, upstream_model: l, cost: 3, reasoning_family: reasoning_effort}
  - {name: gpt, cluster: d, upstream_model: g, cost: 10, boundary: external}
  - {name: qwen, cluster: e, upstream_model: q, cost: 1,
     reasoning_family: chat_template_kwargs.enable_thinking}
default_model: small
signals:
  - {name: code, keywords: [python, "stack trace"], patterns: ['\\bdef \\w+\\(']}
  - {name: proof, keywords: [prove]}
  - {name: secret, keywords: [password]}
  - {name: math, type: domain, domains: [math, physics], min_score: 0.4}
  - {name: attack, type: prompt_attack}
  - {name: hard, type: difficulty, threshold: 0.6}
  - {name: personal, type: pii, pii_types: [EMAIL_ADDRESS, US_SSN]}
  - {name: long, type: tokens, min: 1000}
  - {name: chatty, type: turns, min: 3}
  - {name: agent, type: tools}
  - {name: vip, type: header, header: X-Group, values: [vip]}
decisions:
  - {name: jailbreak, priority: 300, when: attack, block: {status: 403, message: attack refused}}
  - {name: blocked, priority: 200, when: secret, block: {status: 403, message: no secrets}}
  - {name: code, priority: 100, when: code, route: [coder, large]}
  - {name: math, priority: 60, when: {all: [math, hard]}, route: [qwen],
     reasoning: {enabled: true, effort: high}, system_prompt: {text: Think carefully.}}
  - {name: proofs, priority: 50, when: {all: [proof, {not: code}]}, route: [large], max_tokens: 64}
  - {name: vip, priority: 40, when: vip, route: [gpt, large], headers: {x-tier: gold}}
  - {name: private-pii, priority: 30, when: personal, route: [gpt, coder], pii: private}
  - {name: agents, priority: 20, when: {any: [agent, long, chatty]}, route: [large]}
"""


def classified(
    domain: str = "other",
    attack: float = 0.0,
    difficulty: float = 0.0,
    pii: tuple[Pii, ...] = (),
    tokens: int = 10,
    domain_score: float = 0.9,
) -> Classified:
    return Classified(domain, {domain: domain_score}, attack, 0.5, difficulty, pii, tokens)


@pytest.fixture
def config() -> RouterConfig:
    return parse_config(POLICY)


def chat(text: str, model: str = "auto", **extra: Any) -> RequestView:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)


def run(
    config: RouterConfig,
    text: str,
    model: str = "auto",
    headers: dict[str, str] | None = None,
    signals: Classified | None = None,
    pool: PoolState | None = None,
    **extra: Any,
) -> Decision:
    obs = Observation(chat(text, model, **extra), headers or {}, signals)
    return decide(config, obs, pool or PoolState())


def where(decision: Decision) -> tuple[str, str | None]:
    return decision.rule, decision.chosen.name if decision.chosen else None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello there", ("default", "small")),
        ("Why does my Python script print a stack trace?", ("code", "coder")),
        ("def main():\n  pass", ("code", "coder")),
        ("Prove that there are infinitely many primes", ("proofs", "large")),
        ("prove this python function terminates", ("code", "coder")),  # higher priority wins
        ("what is my password", ("blocked", None)),
    ],
)
def test_the_highest_priority_matching_decision_wins(
    config: RouterConfig, text: str, expected: tuple[str, str | None]
) -> None:
    assert where(run(config, text)) == expected


def test_matched_lists_every_decision_whose_rule_held(config: RouterConfig) -> None:
    assert run(config, "prove it", headers={"x-group": "vip"}).matched == ("proofs", "vip")


def test_keywords_match_whole_words_only_and_ignore_case(config: RouterConfig) -> None:
    assert where(run(config, "I like pythons and improve things")) == ("default", "small")
    assert where(run(config, "PYTHON please")) == ("code", "coder")


def test_signals_read_every_message_not_only_the_last(config: RouterConfig) -> None:
    body = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "You are a python expert."},
            {"role": "user", "content": "help me"},
        ],
    }
    request = parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)
    assert evaluate_signals(config, Observation(request)) == {"code": 1.0}


def test_a_block_carries_its_status_and_message(config: RouterConfig) -> None:
    decision = run(config, "password")
    assert (decision.action, decision.status, decision.message) == ("block", 403, "no secrets")


def test_an_attack_above_the_shipped_threshold_is_blocked(config: RouterConfig) -> None:
    decision = run(config, "hi", signals=classified(attack=0.97))
    assert (decision.action, decision.rule, decision.fired["attack"]) == (
        "block",
        "jailbreak",
        0.97,
    )
    assert run(config, "hi", signals=classified(attack=0.2)).action == "route"


def test_classifier_signals_never_fire_without_a_classifier(config: RouterConfig) -> None:
    assert set(run(config, "integrate x^2").fired) == set()


def test_domain_and_difficulty_send_hard_math_to_the_reasoner_with_thinking_on(
    config: RouterConfig,
) -> None:
    decision = run(config, "integrate x^2", signals=classified("math", difficulty=0.8))
    assert where(decision) == ("math", "qwen")
    assert decision.steps.reasoning is not None and decision.steps.reasoning.effort == "high"
    # easy math, or a low-confidence domain, stays on the default
    assert where(run(config, "2+2", signals=classified("math", difficulty=0.1))) == (
        "default",
        "small",
    )
    weak = classified("math", difficulty=0.9, domain_score=0.3)
    assert where(run(config, "x", signals=weak)) == ("default", "small")


def test_when_every_candidate_is_unhealthy_the_first_is_used_and_noted(
    config: RouterConfig,
) -> None:
    pool = PoolState(unhealthy=frozenset({"qwen"}))
    decision = run(config, "x", signals=classified("math", difficulty=0.8), pool=pool)
    assert isinstance(decision, Routed) and decision.model.name == "qwen"  # only candidate: kept
    assert Note("all_candidates_unhealthy") in decision.notes


def test_the_first_healthy_model_wins_and_the_skipped_one_is_explained(
    config: RouterConfig,
) -> None:
    decision = run(config, "python", pool=PoolState(unhealthy=frozenset({"coder"})))
    assert where(decision) == ("code", "large")
    assert decision.rejected == (Rejection("coder", "health", "unhealthy"),)
    assert "rejected=coder:unhealthy" in decision.reason


def test_pii_private_step_keeps_personal_data_on_private_models(config: RouterConfig) -> None:
    found = (Pii("EMAIL_ADDRESS", 8, 20),)
    decision = run(config, "mail to bob@corp.com", signals=classified(pii=found))
    assert where(decision) == ("private-pii", "coder")
    assert decision.rejected == (Rejection("gpt", "pii", "pii", detected=("EMAIL_ADDRESS",)),)


def test_pii_below_its_min_score_does_not_fire(config: RouterConfig) -> None:
    found = (Pii("EMAIL_ADDRESS", 0, 5, score=0.2),)
    assert "personal" not in run(config, "x", signals=classified(pii=found)).fired


def test_header_signal_reads_the_request_header(config: RouterConfig) -> None:
    decision = run(config, "hi", headers={"x-group": "vip"})
    assert where(decision) == ("vip", "gpt")
    assert decision.steps.headers == {"x-tier": "gold"}
    assert where(run(config, "hi", headers={"x-group": "basic"})) == ("default", "small")


def test_tools_turns_and_length_signals(config: RouterConfig) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert where(run(config, "hi", tools=tools)) == ("agents", "large")
    assert where(run(config, "hi", signals=classified(tokens=5000))) == ("agents", "large")
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 3,
    }
    request = parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)
    assert where(decide(config, Observation(request))) == ("agents", "large")


def test_max_tokens_cap_and_cost_estimate(config: RouterConfig) -> None:
    decision = run(config, "prove it", max_tokens=1000)
    assert decision.steps.max_tokens == 64
    assert decision.cost == pytest.approx((len("prove it") // 4 + 1 + 64) * 3 / 1e6)


def test_explicit_models_skip_the_rules(config: RouterConfig) -> None:
    decision = run(config, "python", model="large")
    assert where(decision) == ("explicit", "large")
    assert decision.matched == ()


BOUNDED = (
    POLICY
    + """
boundaries:
  - {name: no-pii-out, pii_types: [EMAIL_ADDRESS, CREDIT_CARD]}
budgets:
  header: x-tenant
  window_s: 60
  limits: {acme: 1.0, frugal: 0.5}
  on_exhausted: step_down
"""
)


@pytest.fixture
def bounded() -> RouterConfig:
    return parse_config(BOUNDED)


def test_pii_prompt_never_reaches_an_external_model(bounded: RouterConfig) -> None:
    found = (Pii("CREDIT_CARD", 0, 16),)
    for model, headers in (("auto", {"x-group": "vip"}), ("gpt", {})):
        decision = run(
            bounded,
            "4111111111111111 please",
            model=model,
            headers=headers,
            signals=classified(pii=found),
        )
        assert isinstance(decision, Routed) and decision.model.boundary == "private"
        assert any(r.boundary == "no-pii-out" for r in decision.rejected)


def test_an_explicit_external_model_with_pii_is_rerouted_to_the_cheapest_private_one(
    bounded: RouterConfig,
) -> None:
    found = (Pii("EMAIL_ADDRESS", 0, 5),)
    decision = run(bounded, "a@b.c", model="gpt", signals=classified(pii=found))
    assert where(decision) == ("explicit", "small")


def test_a_blocking_boundary_answers_403(bounded: RouterConfig) -> None:
    text = BOUNDED.replace(
        "pii_types: [EMAIL_ADDRESS, CREDIT_CARD]}", "pii_types: [EMAIL_ADDRESS], action: block}"
    )
    decision = run(
        parse_config(text),
        "a@b.c",
        model="gpt",
        signals=classified(pii=(Pii("EMAIL_ADDRESS", 0, 5),)),
    )
    assert (decision.action, decision.status, decision.code) == ("block", 403, "boundary_blocked")


def test_redacted_pii_may_leave_the_boundary(bounded: RouterConfig) -> None:
    text = BOUNDED.replace(
        "route: [gpt, coder], pii: private}", "route: [gpt, coder], pii: redact}"
    )
    found = (Pii("EMAIL_ADDRESS", 0, 5),)
    decision = run(parse_config(text), "a@b.c", signals=classified(pii=found))
    assert where(decision) == ("private-pii", "gpt")
    assert decision.steps.redact == found


def test_pii_block_step_refuses_the_request(bounded: RouterConfig) -> None:
    text = BOUNDED.replace("route: [gpt, coder], pii: private}", "route: [gpt, coder], pii: block}")
    decision = run(parse_config(text), "a@b.c", signals=classified(pii=(Pii("US_SSN", 0, 5),)))
    assert (decision.action, decision.code) == ("block", "pii_blocked")


def test_an_exhausted_budget_steps_down_to_the_cheapest_model(bounded: RouterConfig) -> None:
    within = run(bounded, "python", headers={"x-tenant": "acme"}, pool=PoolState(tenant_spent=0.5))
    assert where(within) == ("code", "coder")
    spent = run(bounded, "python", headers={"x-tenant": "acme"}, pool=PoolState(tenant_spent=1.0))
    assert where(spent) == ("code", "small")
    assert any(n.kind == "budget" and n.value.startswith("step_down") for n in spent.notes)


def test_a_stepped_down_tenant_gets_429_past_the_hard_limit(bounded: RouterConfig) -> None:
    config = parse_config(
        BOUNDED.replace("on_exhausted: step_down", "on_exhausted: step_down\n  hard_limit_ratio: 2")
    )
    headers = {"x-tenant": "acme"}
    assert where(run(config, "python", headers=headers, pool=PoolState(tenant_spent=1.5))) == (
        "code",
        "small",
    )
    rejected = run(config, "python", headers=headers, pool=PoolState(tenant_spent=2.0))
    assert (rejected.action, rejected.status, rejected.code) == ("block", 429, "budget_exhausted")


def test_an_exhausted_budget_rejects_with_429_when_configured(bounded: RouterConfig) -> None:
    config = parse_config(BOUNDED.replace("on_exhausted: step_down", "on_exhausted: reject"))
    decision = run(config, "hi", headers={"x-tenant": "frugal"}, pool=PoolState(tenant_spent=0.6))
    assert (decision.action, decision.status, decision.error_type) == (
        "block",
        429,
        "rate_limit_error",
    )
    assert (
        run(config, "hi", headers={"x-tenant": "unknown"}, pool=PoolState(tenant_spent=99)).action
        == "route"
    )


def test_the_reason_is_compact_and_names_everything_that_mattered(config: RouterConfig) -> None:
    decision = run(config, "python", pool=PoolState(unhealthy=frozenset({"coder"})))
    assert (
        decision.reason == "decision=code; signals=code:1.00; model=large; rejected=coder:unhealthy"
    )


def test_pii_in_a_field_redaction_cannot_rewrite_keeps_the_request_private(
    bounded: RouterConfig,
) -> None:
    text = BOUNDED.replace(
        "route: [gpt, coder], pii: private}", "route: [gpt, coder], pii: redact}"
    )
    in_text = Pii("EMAIL_ADDRESS", 0, 5)
    in_tool_arguments = replace(
        Pii("EMAIL_ADDRESS", 9, 14, message=None),
        field="messages[1].tool_calls[0].function.arguments",
    )
    decision = run(
        parse_config(text), "a@b.c", signals=classified(pii=(in_text, in_tool_arguments))
    )
    assert isinstance(decision, Routed) and decision.model.boundary == "private"
    assert decision.steps.redact == (in_text,)  # what can be masked still is


def test_the_client_reason_never_names_what_was_detected(bounded: RouterConfig) -> None:
    found = (Pii("CREDIT_CARD", 0, 16),)
    for model, headers in (("auto", {"x-group": "vip"}), ("gpt", {})):
        decision = run(bounded, "4111111111111111", model, headers, signals=classified(pii=found))
        assert "CREDIT_CARD" in decision.reason  # logs and traces keep the type
        shown = decision.client_reason
        for detail in ("CREDIT_CARD", "no-pii-out", "personal"):
            assert detail not in shown, shown
        assert "rejected=gpt:boundary" in shown or "rejected=gpt:pii" in shown


def test_reason_detail_full_shows_the_detection_to_the_client(bounded: RouterConfig) -> None:
    config = parse_config(BOUNDED + "routing: {reason_detail: full}\n")
    found = (Pii("CREDIT_CARD", 0, 16),)
    decision = run(config, "4111111111111111", model="gpt", signals=classified(pii=found))
    assert decision.client_reason == decision.reason
    assert "gpt:boundary=no-pii-out:CREDIT_CARD" in decision.client_reason


def test_a_pii_block_names_no_type_to_the_client(bounded: RouterConfig) -> None:
    text = BOUNDED.replace("route: [gpt, coder], pii: private}", "route: [gpt, coder], pii: block}")
    decision = run(parse_config(text), "a@b.c", signals=classified(pii=(Pii("US_SSN", 0, 5),)))
    assert "US_SSN" not in decision.message and "US_SSN" not in decision.client_reason
    assert "pii=US_SSN" in decision.reason


def test_a_prompt_of_token_ids_stays_inside_a_boundary(bounded: RouterConfig) -> None:
    body = {"model": "gpt", "prompt": [40, 3809, 318, 604, 16243]}  # unreadable: may hold PII
    request = parse("completions", json.dumps(body).encode(), max_bytes=1 << 20)
    decision = decide(bounded, Observation(request, {}, classified()))
    assert where(decision) == ("explicit", "small")
    assert decision.rejected == (
        Rejection("gpt", "boundaries", "boundary", "no-pii-out", ("UNREADABLE",)),
    )
    readable = {"model": "gpt", "prompt": "hello"}
    request = parse("completions", json.dumps(readable).encode(), max_bytes=1 << 20)
    assert where(decide(bounded, Observation(request, {}, classified()))) == ("explicit", "gpt")
