"""Routing through the real Envoy with the real openai SDK; upstreams are MOCKS."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from devstack import Stack

from tests.helpers import MockRecorder

pytestmark = pytest.mark.e2e


def test_auto_is_routed_and_the_decision_is_on_the_response(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "Why does my python function raise KeyError?"}],
    )
    completion = raw.parse()
    assert raw.headers["x-meritorder-model"] == "coder"
    assert raw.headers["x-meritorder-decision"] == "code"
    assert "signals=code" in raw.headers["x-meritorder-reason"]
    assert completion.model == "mock/coder-7b"
    assert "mock model 'coder'" in (completion.choices[0].message.content or "")


def test_auto_without_a_matching_rule_goes_to_the_default_model(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Write a haiku about autumn."}]
    )
    assert (raw.headers["x-meritorder-model"], raw.headers["x-meritorder-decision"]) == (
        "small",
        "default",
    )


def test_an_explicit_model_reaches_its_upstream_with_its_upstream_id(
    client: openai.OpenAI, upstreams: MockRecorder
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="large", messages=[{"role": "user", "content": "hi"}], temperature=0.3
    )
    assert raw.headers["x-meritorder-decision"] == "explicit"
    (seen,) = upstreams.received()["large"]
    body = json.loads(seen["body"])  # type: ignore[arg-type]
    assert body == {
        "model": "mock/large-70b",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.3,
        # The demo's unverified budget charges completion_tokens_estimate and caps the answer
        # at it (budgets.cap_completion).
        "max_tokens": 256,
    }
    assert seen["headers"]["content-length"] == str(len(seen["body"].encode()))  # type: ignore[index, union-attr]


def test_a_spoofed_routing_header_is_overwritten(stack: Stack, http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "hello"}]},
        headers={"x-meritorder-model": "large"},
    )
    assert response.status_code == 200
    assert response.headers["x-meritorder-model"] == "small"
    assert response.headers["x-mock-model"] == "small"


def test_text_completions_are_routed_too(client: openai.OpenAI) -> None:
    raw = client.completions.with_raw_response.create(
        model="auto", prompt="Refactor this python code"
    )
    assert raw.headers["x-meritorder-model"] == "coder"
    assert raw.parse().choices[0].text.startswith("Hello from the mock model 'coder'")


def test_unknown_model_is_an_openai_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
    error = caught.value.body
    assert (
        isinstance(error, dict) and error["code"] == "model_not_found" and error["param"] == "model"
    )


def test_models_are_listed_by_the_router(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["auto", "small", "coder", "large", "embed"]


def test_one_model_is_retrieved_and_an_unknown_one_is_a_404(
    client: openai.OpenAI, upstreams: MockRecorder
) -> None:
    model = client.models.retrieve("auto")
    assert (model.id, model.owned_by) == ("auto", "meritorder")
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-9")
    assert caught.value.code == "model_not_found"
    assert all(not seen for seen in upstreams.received().values())


def test_streaming_yields_every_chunk_as_the_upstream_sends_it(client: openai.OpenAI) -> None:
    delay_ms = 150
    stream = client.chat.completions.create(
        model="auto",
        stream=True,
        messages=[{"role": "user", "content": "prove the theorem step by step"}],
        extra_headers={"x-mock-stream-delay-ms": str(delay_ms)},
    )
    arrivals: list[float] = []
    text = []
    for chunk in stream:
        if not chunk.choices:  # the usage chunk the router asks for (README, "APIs")
            assert chunk.usage is not None
            continue
        arrivals.append(time.monotonic())
        text.append(chunk.choices[0].delta.content or "")
    assert len(arrivals) >= 5
    assert "mock model 'large'" in "".join(text)
    # The mock spaces its events out; had anything buffered the stream, the chunks would arrive
    # together at the end instead of spread over the upstream's own pacing.
    assert arrivals[-1] - arrivals[0] >= 3 * delay_ms / 1000


def test_streaming_response_carries_the_decision_headers(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="auto", stream=True, messages=[{"role": "user", "content": "a python bug"}]
    ) as response:
        assert response.headers["x-meritorder-model"] == "coder"
        assert response.headers["content-type"].startswith("text/event-stream")
        assert sum(1 for _ in response.iter_lines() if _.startswith("data: {")) >= 5


def test_other_paths_get_the_json_404_catch_all(http: httpx.Client) -> None:
    response = http.post("/v1/audio/transcriptions", json={"model": "small", "input": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
