"""Chat and text completions through the real Envoy with the real `openai` SDK: tool calls kept,
streams never buffered, streamed usage recorded. Upstreams are MOCKS."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from devstack import Stack

from tests.helpers import MockRecorder, tokens_total

pytestmark = pytest.mark.e2e

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def only_body(upstreams: MockRecorder, path: str) -> dict[str, Any]:
    seen = [r for got in upstreams.received().values() for r in got]
    assert len(seen) == 1 and seen[0]["path"] == path, seen
    body: dict[str, Any] = json.loads(str(seen[0]["body"]))
    return body


def test_tool_calls_and_tool_results_reach_the_upstream_unchanged(
    client: openai.OpenAI, upstreams: MockRecorder
) -> None:
    first = client.chat.completions.create(
        model="small", tools=TOOLS, messages=[{"role": "user", "content": "weather in Paris?"}]
    )
    [call] = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    upstreams.clear()
    turns: list[Any] = [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18C, clear"},
    ]
    second = client.chat.completions.create(model="small", tools=TOOLS, messages=turns)
    assert second.choices[0].finish_reason == "stop"
    body = only_body(upstreams, "/v1/chat/completions")
    assert (body["messages"], body["tools"]) == (turns, TOOLS)


@pytest.mark.parametrize("asked", [None, {"include_usage": True}])
def test_a_chat_stream_arrives_chunk_by_chunk_and_its_usage_is_recorded(
    stack: Stack, client: openai.OpenAI, upstreams: MockRecorder, asked: dict[str, bool] | None
) -> None:
    before = tokens_total(stack, "small", "output")
    stream = client.chat.completions.create(
        model="small",
        stream=True,
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"x-mock-stream-hold": "1"},  # the mock holds the rest until released
        **({"stream_options": asked} if asked else {}),  # type: ignore[arg-type]
    )
    chunks = iter(stream)
    first = next(chunks)  # arrives while the upstream has not produced the rest
    httpx.post(f"{stack.mock_url('small')}/__mock/release")
    rest = list(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
    assert "mock model 'small'" in text
    # The router asks for the usage chunk when the client did not (README, "APIs"): the client
    # sees it either way, as the last chunk, with no choices.
    usage = rest[-1].usage
    assert usage is not None and not rest[-1].choices
    assert only_body(upstreams, "/v1/chat/completions")["stream_options"] == {"include_usage": True}
    tokens_total(stack, "small", "output", wait_for=before + usage.completion_tokens)


def test_a_completions_stream_usage_is_recorded(stack: Stack, client: openai.OpenAI) -> None:
    before = tokens_total(stack, "large", "input")
    stream = client.completions.create(model="large", prompt="once upon a time", stream=True)
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert "mock model 'large'" in "".join(c.choices[0].text for c in chunks if c.choices)
    tokens_total(stack, "large", "input", wait_for=before + usage.prompt_tokens)


def test_a_plain_completion_is_routed_with_auto(
    client: openai.OpenAI, upstreams: MockRecorder
) -> None:
    reply = client.completions.with_raw_response.create(
        model="auto", prompt="a python bug", max_tokens=5
    )
    assert reply.headers["x-meritorder-model"] == "coder"
    assert only_body(upstreams, "/v1/completions") == {
        "model": "mock/coder-7b",
        "prompt": "a python bug",
        "max_tokens": 5,
    }
