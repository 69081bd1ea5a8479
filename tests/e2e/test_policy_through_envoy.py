"""Policy actions through the real Envoy: fallbacks learned from health, budgets, reasoning and
the other per-decision steps. Upstreams are MOCKS that record what they received."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
from demo.mint_token import TOKEN_HEADER, mint_token
from devstack import Stack

from meritorder.v1 import router_pb2, router_pb2_grpc
from tests.helpers import MockRecorder, stack_serving

pytestmark = pytest.mark.e2e

POLICY = Path(__file__).parent / "policies" / "operations.yaml"


stack = stack_serving(POLICY)


def route_rpc(stack: Stack, text: str) -> router_pb2.RouteResponse:
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports.router}") as channel:
        return router_pb2_grpc.RouterStub(channel).Route(router_pb2.RouteRequest(text=text))


def wait_for_model(
    stack: Stack, text: str, model: str, timeout: float = 10
) -> router_pb2.RouteResponse:
    """Ask the Router API (which never touches an upstream) until the decision names `model`."""
    deadline = time.monotonic() + timeout
    while True:
        reply = route_rpc(stack, text)
        if reply.decision.model == model or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def last_body(upstreams: MockRecorder, model: str) -> dict[str, Any]:
    seen = upstreams.received()[model]
    assert seen, f"mock {model} received nothing"
    return json.loads(seen[-1]["body"])  # type: ignore[arg-type]


def test_a_model_whose_health_check_fails_is_skipped_for_its_fallback(
    client: openai.OpenAI, stack: Stack
) -> None:
    assert wait_for_model(stack, "boo", "small").decision.model == "small"
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "boo"}]
    )
    assert raw.headers["x-meritorder-model"] == "small"
    assert "rejected=ghost:unhealthy" in raw.headers["x-meritorder-reason"]


def test_failing_responses_reroute_to_the_fallback_then_recovery_restores_it(
    client: openai.OpenAI, stack: Stack, upstreams: MockRecorder
) -> None:
    messages = [{"role": "user", "content": "a python question"}]
    for _ in range(2):  # the coder upstream answers 503 twice
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(
                model="auto", messages=messages, extra_headers={"x-mock-status": "503"}
            )
    # Envoy's access log stream tells the router; the next code request goes to the fallback.
    assert wait_for_model(stack, "python", "large").decision.model == "large"
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages)
    assert raw.headers["x-meritorder-model"] == "large"
    assert "rejected=coder:unhealthy" in raw.headers["x-meritorder-reason"]
    # An explicit request that succeeds on coder marks it healthy again.
    client.chat.completions.create(model="coder", messages=messages)
    assert wait_for_model(stack, "python", "coder").decision.model == "coder"


def test_reasoning_is_switched_on_in_each_models_own_format(
    client: openai.OpenAI, upstreams: MockRecorder
) -> None:
    client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "integral of x"}]
    )
    math = last_body(upstreams, "large")
    assert math["reasoning_effort"] == "high"
    assert math["messages"][0] == {"role": "system", "content": "Show your work."}
    assert math["max_tokens"] == 1000
    assert upstreams.received()["large"][-1]["headers"]["x-route-tier"] == "math"  # type: ignore[index]

    client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "python please"}]
    )
    assert last_body(upstreams, "coder")["chat_template_kwargs"] == {"enable_thinking": True}


def test_a_spent_budget_steps_down_then_answers_429(stack: Stack) -> None:
    # Streamed without a usage chunk, so no usage comes back to replace the estimates: the
    # charges are exact.
    body = {
        "model": "large",
        "max_tokens": 1000,
        "stream": True,
        "stream_options": {"include_usage": False},
        "messages": [{"role": "user", "content": "hi"}],
    }
    served = []
    acme = {TOKEN_HEADER: mint_token("acme")}
    with httpx.Client(base_url=stack.base_url, headers=acme) as http:
        for _ in range(6):
            response = http.post("/v1/chat/completions", json=body)
            served.append(response.headers.get("x-meritorder-model") or response.status_code)
        assert response.status_code == 429
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "budget_exhausted")
        # Each request is charged (prompt + max_tokens) x cost / 1M: large costs 0.003, small 0.001;
        # a request goes to large only while its cost fits the ceiling of 0.005, and stepped
        # down only while it fits the hard limit of 1.5 x that.
        assert served == ["large", "small", "small", "small", "small", 429]
        # Another tenant is unaffected.
        other = http.post(
            "/v1/chat/completions", json=body, headers={TOKEN_HEADER: mint_token("globex")}
        )
        assert other.headers["x-meritorder-model"] == "large"
