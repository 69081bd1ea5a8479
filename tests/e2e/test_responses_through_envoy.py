"""The OpenAI Responses API through the real Envoy, with the real `openai` SDK; upstreams are
MOCKS (deploy/demo/mock_upstream.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from devstack import Stack

from tests.helpers import MockRecorder, tokens_total

pytestmark = pytest.mark.e2e


def only_request(upstreams: MockRecorder) -> tuple[str, dict[str, Any]]:
    seen = [(m, r) for m, got in upstreams.received().items() for r in got]
    assert len(seen) == 1, seen
    mock, request = seen[0]
    assert request["path"] == "/v1/responses"
    return mock, json.loads(str(request["body"]))


def test_auto_is_decided_by_the_policy_and_the_body_rewritten_for_its_model(
    client: openai.OpenAI, upstreams: MockRecorder
) -> None:
    response = client.responses.create(
        model="auto",
        instructions="Answer briefly.",
        input="refactor this python function, it has a bug",
        max_output_tokens=64,
        metadata={"ticket": "t-1"},
    )
    assert "mock model 'coder'" in response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0
    mock, body = only_request(upstreams)
    assert mock == "coder"
    assert body == {
        "model": "mock/coder-7b",
        "instructions": "Answer briefly.",
        "input": "refactor this python function, it has a bug",
        "max_output_tokens": 64,
        "metadata": {"ticket": "t-1"},
    }


def test_an_explicit_model_is_routed_to_its_upstream(
    client: openai.OpenAI, upstreams: MockRecorder
) -> None:
    raw = client.responses.with_raw_response.create(model="large", input="hello")
    assert raw.headers["x-meritorder-model"] == "large"
    assert "mock model 'large'" in raw.parse().output_text
    mock, body = only_request(upstreams)
    assert (mock, body["model"]) == ("large", "mock/large-70b")


def test_function_calls_and_their_outputs_reach_the_upstream_unchanged(
    client: openai.OpenAI, upstreams: MockRecorder
) -> None:
    tools: list[Any] = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    first = client.responses.create(model="small", input="weather in Paris?", tools=tools)
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    upstreams.clear()
    items: list[Any] = [
        {"role": "user", "content": [{"type": "input_text", "text": "weather in Paris?"}]},
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "18C, clear"},
    ]
    second = client.responses.create(model="small", input=items, tools=tools)
    assert "mock model 'small'" in second.output_text
    _, body = only_request(upstreams)
    assert body["input"] == items
    assert body["tools"] == tools


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "auto"}, "input"),
        ({"model": "auto", "input": 3}, "input"),
        ({"model": "auto", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "auto", "input": "x", "max_output_tokens": "many"}, "max_output_tokens"),
    ],
)
def test_bad_input_is_an_openai_error_naming_the_field(
    client: openai.OpenAI, upstreams: MockRecorder, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/responses", body=body, cast_to=httpx.Response)
    assert caught.value.param == param
    assert set(caught.value.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]
    assert all(not seen for seen in upstreams.received().values())


def test_a_stream_arrives_event_by_event_and_its_usage_is_recorded(
    stack: Stack, client: openai.OpenAI
) -> None:
    before = tokens_total(stack, "small", "output")
    stream = client.responses.create(
        model="small",
        input="hello",
        stream=True,
        extra_headers={"x-mock-stream-hold": "1"},  # the mock holds the rest until released
    )
    events = iter(stream)
    kinds = []
    for event in events:  # up to the first text delta, while the upstream holds the rest
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            break
    httpx.post(f"{stack.mock_url('small')}/__mock/release")
    rest = list(events)
    kinds += [e.type for e in rest]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    completed = rest[-1]
    assert completed.type == "response.completed"
    usage = completed.response.usage
    assert usage is not None
    tokens_total(stack, "small", "output", wait_for=before + usage.output_tokens)
