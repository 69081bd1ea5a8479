"""OpenAI embeddings through the real Envoy, with the real `openai` SDK; the embedding model of
the demo policy (`embed`, apis: [embeddings]) is a MOCK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from devstack import Stack

from tests.helpers import MockRecorder, tokens_total

pytestmark = pytest.mark.e2e


def test_an_embedding_model_is_routed_by_name_and_its_usage_recorded(
    stack: Stack, client: openai.OpenAI, upstreams: MockRecorder
) -> None:
    before = tokens_total(stack, "embed", "input")
    raw = client.embeddings.with_raw_response.create(model="embed", input=["first", "second"])
    reply = raw.parse()
    assert raw.headers["x-meritorder-model"] == "embed"
    assert [d.index for d in reply.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in reply.data)  # decoded from the SDK's base64
    [(mock, request)] = [(m, r) for m, got in upstreams.received().items() for r in got]
    assert (mock, request["path"]) == ("small", "/v1/embeddings")  # embed's cluster is mock-small
    body = json.loads(str(request["body"]))
    assert body == {
        "model": "mock/embed-small",
        "input": ["first", "second"],
        "encoding_format": "base64",
    }
    tokens_total(stack, "embed", "input", wait_for=before + reply.usage.prompt_tokens)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "embed"}, "input"),
        ({"model": "embed", "input": []}, "input"),
        ({"model": "embed", "input": [1, "a"]}, "input"),
        ({"model": "embed", "input": "x", "stream": True}, "stream"),
    ],
)
def test_bad_input_is_an_openai_error_naming_the_field(
    client: openai.OpenAI, upstreams: MockRecorder, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/embeddings", body=body, cast_to=httpx.Response)
    assert caught.value.param == param
    assert all(not seen for seen in upstreams.received().values())
