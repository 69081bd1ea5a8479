"""The pipeline: the rule's candidates, through every filter in order, to the decision's picker;
and `decide` over a demo-like policy: signals, rules, PII steps, boundaries, budgets, health,
explanation."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from meritorder.config import ConfigError, RouterConfig, parse_config
from meritorder.endpoints import parse
from meritorder.policy import (
    Blocked,
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
from meritorder.policy.filters import FILTERS
from meritorder.policy.pickers import PICKERS
from tests.helpers import Pii, chat_view, signals_of

POLICY = """
models:
  - {name: small, cluster: a, upstream_model: s, cost: 1}
  - {name: mid, cluster: b, upstream_model: m, cost: 2}
  - {name: gpt, cluster: c, upstream_model: g, cost: 0.5, boundary: external}
  - {name: embed, cluster: e, upstream_model: e, cost: 0.1, apis: [embeddings]}
default_model: small
signals:
  - {name: code, keywords: [python]}
  - {name: cheap, keywords: [cheap]}
decisions:
  - {name: code, priority: 10, when: code, route: [mid, gpt, small]}
  - {name: thrifty, when: cheap, route: [mid, gpt, small], pick: cheapest}
boundaries:
  - {name: cards, pii_types: [CREDIT_CARD]}
"""


def run(text: str, pool: PoolState | None = None, **kwargs: object) -> Routed | Blocked:
    config = parse_config(POLICY)
    return decide(
        config, Observation(chat_view(text, **kwargs), {}, signals_of()), pool or PoolState()
    )  # type: ignore[arg-type]


def test_the_filters_run_in_their_documented_order() -> None:
    assert [f.name for f in FILTERS] == ["api", "pii", "boundaries", "budget", "health", "load"]
    assert list(PICKERS) == ["first", "cheapest", "scored", "headroom"]


@pytest.mark.parametrize(
    ("text", "unhealthy", "expected"),
    [
        ("python", (), "mid"),  # pick: first
        ("cheap", (), "gpt"),  # pick: cheapest
        ("cheap", ("gpt",), "small"),  # the cheapest of the survivors
        ("python", ("mid",), "gpt"),
    ],
)
def test_the_decisions_picker_chooses_among_the_survivors(
    text: str, unhealthy: tuple[str, ...], expected: str
) -> None:
    decision = run(text, PoolState(unhealthy=frozenset(unhealthy)))
    assert isinstance(decision, Routed) and decision.model.name == expected


def test_rejections_of_every_filter_add_up_on_the_decision() -> None:
    config = parse_config(POLICY)
    card = signals_of(pii=(Pii("CREDIT_CARD", 0, 4),))
    obs = Observation(chat_view("cheap"), {}, card)
    decision = decide(config, obs, PoolState(unhealthy=frozenset({"small"})))
    assert isinstance(decision, Routed) and decision.model.name == "mid"
    assert decision.rejected == (
        Rejection("gpt", "boundaries", "boundary", "cards", ("CREDIT_CARD",)),
        Rejection("small", "health", "unhealthy"),
    )


def test_an_auto_embeddings_request_goes_to_a_model_serving_embeddings() -> None:
    decision = run("python", api="embeddings")
    assert isinstance(decision, Routed) and decision.model.name == "embed"
    assert decision.rejected[0] == Rejection("mid", "api", "unsupported_api")


def test_an_explicit_model_not_serving_the_api_is_a_400() -> None:
    decision = run("hi", model="small", api="embeddings")
    assert isinstance(decision, Blocked)
    assert (decision.rule, decision.status, decision.code) == ("explicit", 400, "unsupported_api")


def test_an_unknown_picker_is_a_load_error_with_a_hint() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(POLICY.replace("pick: cheapest", "pick: cheapst"))
    assert caught.value.problems == [
        "decisions[1].pick: unknown picker 'cheapst'; did you mean 'cheapest'?"
    ]


def test_no_private_model_serving_the_api_under_a_boundary_is_a_503_not_a_leak() -> None:
    config = parse_config(
        """
models:
  - {name: local, cluster: a, upstream_model: l, cost: 1}
  - {name: cloud-embed, cluster: b, upstream_model: e, cost: 1, boundary: external,
     apis: [embeddings]}
default_model: local
boundaries:
  - {name: cards, pii_types: [CREDIT_CARD]}
"""
    )
    card = signals_of(pii=(Pii("CREDIT_CARD", 0, 4),))
    decision = decide(config, Observation(chat_view("4111", api="embeddings"), {}, card))
    assert isinstance(decision, Blocked)
    assert (decision.status, decision.code) == (503, "no_model")
    assert decision.rejected == (
        Rejection("local", "api", "unsupported_api"),
        Rejection("cloud-embed", "boundaries", "boundary", "cards", ("CREDIT_CARD",)),
    )


# -- decide over a demo-like policy -------------------------------------------------------------

RULES = """
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


@pytest.fixture
def config() -> RouterConfig:
    return parse_config(RULES)


def decide_text(
    config: RouterConfig,
    text: str,
    model: str = "auto",
    headers: dict[str, str] | None = None,
    signals: Classified | None = None,
    pool: PoolState | None = None,
    **extra: Any,
) -> Decision:
    obs = Observation(chat_view(text, model, **extra), headers or {}, signals)
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
    assert where(decide_text(config, text)) == expected


def test_matched_lists_every_decision_whose_rule_held(config: RouterConfig) -> None:
    assert decide_text(config, "prove it", headers={"x-group": "vip"}).matched == ("proofs", "vip")


def test_keywords_match_whole_words_only_and_ignore_case(config: RouterConfig) -> None:
    assert where(decide_text(config, "I like pythons and improve things")) == ("default", "small")
    assert where(decide_text(config, "PYTHON please")) == ("code", "coder")


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
    decision = decide_text(config, "password")
    assert (decision.action, decision.status, decision.message) == ("block", 403, "no secrets")


def test_an_attack_above_the_shipped_threshold_is_blocked(config: RouterConfig) -> None:
    decision = decide_text(config, "hi", signals=signals_of(attack=0.97))
    assert (decision.action, decision.rule, decision.fired["attack"]) == (
        "block",
        "jailbreak",
        0.97,
    )
    assert decide_text(config, "hi", signals=signals_of(attack=0.2)).action == "route"


def test_classifier_signals_never_fire_without_a_classifier(config: RouterConfig) -> None:
    assert set(decide_text(config, "integrate x^2").fired) == set()


def test_domain_and_difficulty_send_hard_math_to_the_reasoner_with_thinking_on(
    config: RouterConfig,
) -> None:
    decision = decide_text(config, "integrate x^2", signals=signals_of("math", difficulty=0.8))
    assert where(decision) == ("math", "qwen")
    assert decision.steps.reasoning is not None and decision.steps.reasoning.effort == "high"
    # easy math, or a low-confidence domain, stays on the default
    assert where(decide_text(config, "2+2", signals=signals_of("math", difficulty=0.1))) == (
        "default",
        "small",
    )
    weak = signals_of("math", difficulty=0.9, domain_score=0.3)
    assert where(decide_text(config, "x", signals=weak)) == ("default", "small")


def test_when_every_candidate_is_unhealthy_the_first_is_used_and_noted(
    config: RouterConfig,
) -> None:
    pool = PoolState(unhealthy=frozenset({"qwen"}))
    decision = decide_text(config, "x", signals=signals_of("math", difficulty=0.8), pool=pool)
    assert isinstance(decision, Routed) and decision.model.name == "qwen"  # only candidate: kept
    assert Note("all_candidates_unhealthy") in decision.notes


def test_the_first_healthy_model_wins_and_the_skipped_one_is_explained(
    config: RouterConfig,
) -> None:
    decision = decide_text(config, "python", pool=PoolState(unhealthy=frozenset({"coder"})))
    assert where(decision) == ("code", "large")
    assert decision.rejected == (Rejection("coder", "health", "unhealthy"),)
    assert "rejected=coder:unhealthy" in decision.reason


def test_pii_private_step_keeps_personal_data_on_private_models(config: RouterConfig) -> None:
    found = (Pii("EMAIL_ADDRESS", 8, 20),)
    decision = decide_text(config, "mail to bob@corp.com", signals=signals_of(pii=found))
    assert where(decision) == ("private-pii", "coder")
    assert decision.rejected == (Rejection("gpt", "pii", "pii", detected=("EMAIL_ADDRESS",)),)


def test_pii_below_its_min_score_does_not_fire(config: RouterConfig) -> None:
    found = (Pii("EMAIL_ADDRESS", 0, 5, score=0.2),)
    assert "personal" not in decide_text(config, "x", signals=signals_of(pii=found)).fired


def test_header_signal_reads_the_request_header(config: RouterConfig) -> None:
    decision = decide_text(config, "hi", headers={"x-group": "vip"})
    assert where(decision) == ("vip", "gpt")
    assert decision.steps.headers == {"x-tier": "gold"}
    assert where(decide_text(config, "hi", headers={"x-group": "basic"})) == ("default", "small")


def test_tools_turns_and_length_signals(config: RouterConfig) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert where(decide_text(config, "hi", tools=tools)) == ("agents", "large")
    assert where(decide_text(config, "hi", signals=signals_of(tokens=5000))) == ("agents", "large")
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 3,
    }
    request = parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)
    assert where(decide(config, Observation(request))) == ("agents", "large")


def test_max_tokens_cap_and_cost_estimate(config: RouterConfig) -> None:
    decision = decide_text(config, "prove it", max_tokens=1000)
    assert decision.steps.max_tokens == 64
    assert decision.cost == pytest.approx((len("prove it") // 4 + 1 + 64) * 3 / 1e6)


def test_explicit_models_skip_the_rules(config: RouterConfig) -> None:
    decision = decide_text(config, "python", model="large")
    assert where(decision) == ("explicit", "large")
    assert decision.matched == ()


BOUNDED = (
    RULES
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
        decision = decide_text(
            bounded,
            "4111111111111111 please",
            model=model,
            headers=headers,
            signals=signals_of(pii=found),
        )
        assert isinstance(decision, Routed) and decision.model.boundary == "private"
        assert any(r.boundary == "no-pii-out" for r in decision.rejected)


def test_an_explicit_external_model_with_pii_is_rerouted_to_the_cheapest_private_one(
    bounded: RouterConfig,
) -> None:
    found = (Pii("EMAIL_ADDRESS", 0, 5),)
    decision = decide_text(bounded, "a@b.c", model="gpt", signals=signals_of(pii=found))
    assert where(decision) == ("explicit", "small")


def test_a_blocking_boundary_answers_403(bounded: RouterConfig) -> None:
    text = BOUNDED.replace(
        "pii_types: [EMAIL_ADDRESS, CREDIT_CARD]}", "pii_types: [EMAIL_ADDRESS], action: block}"
    )
    decision = decide_text(
        parse_config(text),
        "a@b.c",
        model="gpt",
        signals=signals_of(pii=(Pii("EMAIL_ADDRESS", 0, 5),)),
    )
    assert (decision.action, decision.status, decision.code) == ("block", 403, "boundary_blocked")


def test_redacted_pii_may_leave_the_boundary(bounded: RouterConfig) -> None:
    text = BOUNDED.replace(
        "route: [gpt, coder], pii: private}", "route: [gpt, coder], pii: redact}"
    )
    found = (Pii("EMAIL_ADDRESS", 0, 5),)
    decision = decide_text(parse_config(text), "a@b.c", signals=signals_of(pii=found))
    assert where(decision) == ("private-pii", "gpt")
    assert decision.steps.redact == found


def test_pii_block_step_refuses_the_request(bounded: RouterConfig) -> None:
    text = BOUNDED.replace("route: [gpt, coder], pii: private}", "route: [gpt, coder], pii: block}")
    decision = decide_text(
        parse_config(text), "a@b.c", signals=signals_of(pii=(Pii("US_SSN", 0, 5),))
    )
    assert (decision.action, decision.code) == ("block", "pii_blocked")


def test_an_exhausted_budget_steps_down_to_the_cheapest_model(bounded: RouterConfig) -> None:
    within = decide_text(
        bounded, "python", headers={"x-tenant": "acme"}, pool=PoolState(tenant_spent=0.5)
    )
    assert where(within) == ("code", "coder")
    spent = decide_text(
        bounded, "python", headers={"x-tenant": "acme"}, pool=PoolState(tenant_spent=1.0)
    )
    assert where(spent) == ("code", "small")
    assert any(n.kind == "budget" and n.value.startswith("step_down") for n in spent.notes)


def test_a_stepped_down_tenant_gets_429_past_the_hard_limit(bounded: RouterConfig) -> None:
    config = parse_config(
        BOUNDED.replace("on_exhausted: step_down", "on_exhausted: step_down\n  hard_limit_ratio: 2")
    )
    headers = {"x-tenant": "acme"}
    assert where(
        decide_text(config, "python", headers=headers, pool=PoolState(tenant_spent=1.5))
    ) == (
        "code",
        "small",
    )
    rejected = decide_text(config, "python", headers=headers, pool=PoolState(tenant_spent=2.0))
    assert (rejected.action, rejected.status, rejected.code) == ("block", 429, "budget_exhausted")


def test_an_exhausted_budget_rejects_with_429_when_configured(bounded: RouterConfig) -> None:
    config = parse_config(BOUNDED.replace("on_exhausted: step_down", "on_exhausted: reject"))
    decision = decide_text(
        config, "hi", headers={"x-tenant": "frugal"}, pool=PoolState(tenant_spent=0.6)
    )
    assert (decision.action, decision.status, decision.error_type) == (
        "block",
        429,
        "rate_limit_error",
    )
    assert (
        decide_text(
            config, "hi", headers={"x-tenant": "unknown"}, pool=PoolState(tenant_spent=99)
        ).action
        == "route"
    )


def test_the_reason_is_compact_and_names_everything_that_mattered(config: RouterConfig) -> None:
    decision = decide_text(config, "python", pool=PoolState(unhealthy=frozenset({"coder"})))
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
    decision = decide_text(
        parse_config(text), "a@b.c", signals=signals_of(pii=(in_text, in_tool_arguments))
    )
    assert isinstance(decision, Routed) and decision.model.boundary == "private"
    assert decision.steps.redact == (in_text,)  # what can be masked still is


def test_the_client_reason_never_names_what_was_detected(bounded: RouterConfig) -> None:
    found = (Pii("CREDIT_CARD", 0, 16),)
    for model, headers in (("auto", {"x-group": "vip"}), ("gpt", {})):
        decision = decide_text(
            bounded, "4111111111111111", model, headers, signals=signals_of(pii=found)
        )
        assert "CREDIT_CARD" in decision.reason  # logs and traces keep the type
        shown = decision.client_reason
        for detail in ("CREDIT_CARD", "no-pii-out", "personal"):
            assert detail not in shown, shown
        assert "rejected=gpt:boundary" in shown or "rejected=gpt:pii" in shown


def test_reason_detail_full_shows_the_detection_to_the_client(bounded: RouterConfig) -> None:
    config = parse_config(BOUNDED + "routing: {reason_detail: full}\n")
    found = (Pii("CREDIT_CARD", 0, 16),)
    decision = decide_text(config, "4111111111111111", model="gpt", signals=signals_of(pii=found))
    assert decision.client_reason == decision.reason
    assert "gpt:boundary=no-pii-out:CREDIT_CARD" in decision.client_reason


def test_a_pii_block_names_no_type_to_the_client(bounded: RouterConfig) -> None:
    text = BOUNDED.replace("route: [gpt, coder], pii: private}", "route: [gpt, coder], pii: block}")
    decision = decide_text(
        parse_config(text), "a@b.c", signals=signals_of(pii=(Pii("US_SSN", 0, 5),))
    )
    assert "US_SSN" not in decision.message and "US_SSN" not in decision.client_reason
    assert "pii=US_SSN" in decision.reason


def test_a_prompt_of_token_ids_stays_inside_a_boundary(bounded: RouterConfig) -> None:
    body = {"model": "gpt", "prompt": [40, 3809, 318, 604, 16243]}  # unreadable: may hold PII
    request = parse("completions", json.dumps(body).encode(), max_bytes=1 << 20)
    decision = decide(bounded, Observation(request, {}, signals_of()))
    assert where(decision) == ("explicit", "small")
    assert decision.rejected == (
        Rejection("gpt", "boundaries", "boundary", "no-pii-out", ("UNREADABLE",)),
    )
    readable = {"model": "gpt", "prompt": "hello"}
    request = parse("completions", json.dumps(readable).encode(), max_bytes=1 << 20)
    assert where(decide(bounded, Observation(request, {}, signals_of()))) == ("explicit", "gpt")
