import json

import pytest

from meritorder.config import RouterConfig, parse_config
from meritorder.policy import decide, evaluate_signals, route_explicit
from meritorder.request import ChatRequest, Endpoint, parse_request

POLICY = """
models:
  - {name: small, cluster: a, upstream_model: s, cost: 0.1}
  - {name: coder, cluster: b, upstream_model: c, cost: 0.5}
  - {name: large, cluster: c, upstream_model: l, cost: 3}
default_model: small
signals:
  - {name: code, keywords: [python, "stack trace"], patterns: ['\\bdef \\w+\\(']}
  - {name: proof, keywords: [prove]}
  - {name: secret, keywords: [password]}
decisions:
  - {name: blocked, priority: 200, when: secret, block: {status: 403, message: no secrets}}
  - {name: code, priority: 100, when: code, route: [coder, large]}
  - {name: math, priority: 50, when: {all: [proof, {not: code}]}, route: [large]}
  - {name: code-proof, priority: 10, when: {any: [proof, code]}, route: [large]}
"""


@pytest.fixture
def config() -> RouterConfig:
    return parse_config(POLICY)


def chat(text: str) -> ChatRequest:
    body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
    return parse_request(Endpoint.CHAT, json.dumps(body).encode(), max_bytes=1 << 20)


def route(config: RouterConfig, text: str) -> tuple[str, str | None]:
    request = chat(text)
    decision = decide(config, request, evaluate_signals(config, request))
    return decision.decision, decision.model.name if decision.model else None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello there", ("default", "small")),
        ("Why does my Python script print a stack trace?", ("code", "coder")),
        ("def main():\n  pass", ("code", "coder")),
        ("Prove that there are infinitely many primes", ("math", "large")),
        ("prove this python function terminates", ("code", "coder")),  # higher priority wins
        ("what is my password", ("blocked", None)),
    ],
)
def test_the_highest_priority_matching_decision_wins(
    config: RouterConfig, text: str, expected: tuple[str, str | None]
) -> None:
    assert route(config, text) == expected


def test_keywords_match_whole_words_only(config: RouterConfig) -> None:
    assert route(config, "I like pythons and improve things") == ("default", "small")


def test_keywords_are_case_insensitive(config: RouterConfig) -> None:
    assert route(config, "PYTHON please") == ("code", "coder")


def test_signals_read_every_message_not_only_the_last(config: RouterConfig) -> None:
    body = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "You are a python expert."},
            {"role": "user", "content": "help me"},
        ],
    }
    request = parse_request(Endpoint.CHAT, json.dumps(body).encode(), max_bytes=1 << 20)
    assert evaluate_signals(config, request) == {"code": 1.0}


def test_a_block_carries_its_status_and_message(config: RouterConfig) -> None:
    request = chat("password")
    decision = decide(config, request, evaluate_signals(config, request))
    assert (decision.action, decision.status, decision.message) == ("block", 403, "no secrets")


def test_the_reason_names_decision_signals_and_model(config: RouterConfig) -> None:
    request = chat("python")
    decision = decide(config, request, evaluate_signals(config, request))
    assert decision.reason == "decision=code; signals=code:1.00; model=coder"


def test_explicit_models_route_without_rules(config: RouterConfig) -> None:
    decision = route_explicit(config, "large")
    assert decision is not None and decision.model is not None
    assert (decision.decision, decision.model.upstream_model) == ("explicit", "l")
    assert route_explicit(config, "nope") is None
