"""The Anthropic Messages API through the real Envoy, with the real `anthropic` SDK; upstreams
are MOCKS (deploy/demo/mock_upstream.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from devstack import Stack

from tests.helpers import MockRecorder, tokens_total

pytestmark = pytest.mark.e2e


@pytest.fixture
def claude(stack: Stack) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=stack.base_url, api_key="unused", max_retries=0, timeout=30
    ) as client:
        yield client


def only_request(upstreams: MockRecorder) -> tuple[str, dict[str, Any]]:
    """The mock that received the one request, and the body it received."""
    seen = [(m, r) for m, got in upstreams.received().items() for r in got]
    assert len(seen) == 1, seen
    mock, request = seen[0]
    assert request["path"] == "/v1/messages"
    return mock, json.loads(str(request["body"]))


def test_auto_is_decided_by_the_policy_and_the_body_rewritten_for_its_model(
    claude: anthropic.Anthropic, upstreams: MockRecorder
) -> None:
    reply = claude.messages.create(
        model="auto",
        max_tokens=64,
        system="You are terse.",
        messages=[{"role": "user", "content": "why does this python function raise a bug?"}],
        metadata={"user_id": "u-1"},
    )
    assert reply.type == "message" and reply.content[0].type == "text"
    assert "mock model 'coder'" in reply.content[0].text
    mock, body = only_request(upstreams)
    assert mock == "coder"
    assert body == {
        "model": "mock/coder-7b",
        "max_tokens": 64,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "why does this python function raise a bug?"}],
        "metadata": {"user_id": "u-1"},
    }


def test_an_explicit_model_is_routed_to_its_upstream(
    claude: anthropic.Anthropic, upstreams: MockRecorder
) -> None:
    raw = claude.messages.with_raw_response.create(
        model="large", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-meritorder-model"] == "large"
    assert "mock model 'large'" in raw.parse().content[0].text  # type: ignore[union-attr]
    mock, body = only_request(upstreams)
    assert (mock, body["model"]) == ("large", "mock/large-70b")


def test_tool_use_and_tool_results_reach_the_upstream_unchanged(
    claude: anthropic.Anthropic, upstreams: MockRecorder
) -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    first = claude.messages.create(
        model="small",
        max_tokens=64,
        tools=tools,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "weather in Paris?"}],
    )
    [use] = first.content
    assert use.type == "tool_use" and use.name == "get_weather"
    upstreams.clear()
    turns: list[Any] = [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": use.id, "name": use.name, "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": use.id,
                    "content": [{"type": "text", "text": "18C, clear"}],
                }
            ],
        },
    ]
    second = claude.messages.create(model="small", max_tokens=64, tools=tools, messages=turns)  # type: ignore[arg-type]
    assert second.stop_reason == "end_turn"
    _, body = only_request(upstreams)
    assert body["messages"] == turns
    assert body["tools"] == tools


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}, "'max_tokens'"),
        ({"model": "auto", "max_tokens": 8, "messages": []}, "'messages'"),
        (
            {"model": "auto", "max_tokens": 8, "messages": [{"role": "system", "content": "x"}]},
            "'messages[0].role'",
        ),
    ],
)
def test_bad_input_is_an_anthropic_invalid_request_error(
    claude: anthropic.Anthropic, upstreams: MockRecorder, body: dict[str, Any], says: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.post("/v1/messages", body=body, cast_to=httpx.Response)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert says in error["error"]["message"]
    assert all(not seen for seen in upstreams.received().values())


def test_an_unknown_model_is_an_anthropic_not_found_error(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(
            model="claude-9", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": caught.value.body["error"]["message"]},  # type: ignore[index]
    }


def test_the_routers_413_is_anthropic_shaped(claude: anthropic.Anthropic) -> None:
    big = "x" * (2 << 20)  # over the router's 1 MiB, under Envoy's 8 MiB buffer
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(
            model="auto", max_tokens=8, messages=[{"role": "user", "content": big}]
        )
    assert caught.value.status_code == 413
    assert caught.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "kind"),
    [
        ("GET", "/v1/messages", {}, 404, "not_found_error"),  # not routed: Anthropic's 404
        ("POST", "/v1/messages/batches", {}, 404, "not_found_error"),
        ("POST", "/v1/messages", {"x-tenant-token": "not.a.jwt"}, 401, "authentication_error"),
    ],
)
def test_envoys_own_replies_on_v1_messages_are_anthropic_shaped(
    http: httpx.Client, method: str, path: str, headers: dict[str, str], status: int, kind: str
) -> None:
    body = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    reply = http.request(method, path, json=body, headers=headers)
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == kind


def test_a_stream_arrives_event_by_event_and_its_usage_is_recorded(
    stack: Stack, claude: anthropic.Anthropic, upstreams: MockRecorder
) -> None:
    before = tokens_total(stack, "small", "output")
    with claude.messages.stream(
        model="small",
        max_tokens=64,
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"x-mock-stream-hold": "1"},  # the mock holds the rest until released
    ) as stream:
        pieces = iter(stream.text_stream)
        first = next(pieces)  # arrives while the upstream has not produced the rest
        httpx.post(f"{stack.mock_url('small')}/__mock/release")
        text = first + "".join(pieces)
        final = stream.get_final_message()
    assert "mock model 'small'" in text
    assert final.usage.output_tokens == len(text.split())
    assert final.stop_reason == "end_turn"
    tokens_total(stack, "small", "output", wait_for=before + final.usage.output_tokens)
