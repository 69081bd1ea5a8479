"""The processor picks the endpoint spec by method and path, and every error on an API is
rendered in that API's shape (tests/unit/test_processor.py has the phase-by-phase tests)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
)

from extproc.processor import STREAM_HEADER, Processor, StreamState
from meritorder.config import parse_config
from meritorder.router import Router

CONFIG = parse_config("""
models:
  - {name: m, cluster: a, upstream_model: up/m, cost: 1}
default_model: m
virtual_models: [auto]
signals:
  - {name: forbidden, keywords: [forbidden]}
decisions:
  - {name: refuse, priority: 10, when: forbidden, block: {status: 403, message: "Not here."}}
budgets: {window_s: 60, unverified_limit: 0, on_exhausted: reject}
""")
OPEN = parse_config("""
models:
  - {name: m, cluster: a, upstream_model: up/m, cost: 1,
     apis: [chat, completions, embeddings, responses, messages]}
default_model: m
""")
MESSAGE = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


async def send(path: str, body: Any, config: Any = CONFIG, **headers: str) -> ProcessingResponse:
    processor = Processor(Router(config))
    state = StreamState()
    pairs = {":method": "POST", ":path": path, **headers}
    header_map = HeaderMap(
        headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
    )
    first = await processor.process(
        state, ProcessingRequest(request_headers=HttpHeaders(headers=header_map))
    )
    if first.WhichOneof("response") != "request_headers":
        return first
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await processor.process(
        state, ProcessingRequest(request_body=HttpBody(body=raw, end_of_stream=True))
    )


def anthropic_error(reply: ProcessingResponse) -> tuple[int, str]:
    assert reply.WhichOneof("response") == "immediate_response"
    body = json.loads(reply.immediate_response.body)
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"} and body["error"]["message"]
    return reply.immediate_response.status.code, body["error"]["type"]


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b"{", {}, (400, "invalid_request_error")),  # a bad body
        ({**MESSAGE, "max_tokens": None}, {}, (400, "invalid_request_error")),
        (
            MESSAGE,
            {"content-length": str(1 << 30)},
            (413, "request_too_large"),
        ),  # refused at headers
        (
            {**MESSAGE, "messages": [{"role": "user", "content": "forbidden"}]},
            {},
            (403, "permission_error"),
        ),
        (MESSAGE, {}, (429, "rate_limit_error")),  # the unverified budget is 0
        ({**MESSAGE, "model": "nope"}, {}, (404, "not_found_error")),
    ],
)
async def test_every_error_on_v1_messages_is_anthropic_shaped(
    body: Any, headers: dict[str, str], expected: tuple[int, str]
) -> None:
    assert anthropic_error(await send("/v1/messages", body, **headers)) == expected


async def test_the_same_refusal_on_an_openai_api_is_openai_shaped() -> None:
    reply = await send("/v1/responses", {"model": "auto", "input": "hi"})
    body = json.loads(reply.immediate_response.body)
    assert reply.immediate_response.status.code == 429
    assert set(body["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", {"model": "m", "input": "x"}),
        ("/v1/responses?x=1", {"model": "m", "input": "x", "stream": True}),
        ("/v1/messages", {**MESSAGE, "model": "m", "stream": True}),
    ],
)
async def test_the_spec_rewrites_the_body_and_a_stream_is_marked_for_the_observer(
    path: str, body: dict[str, Any]
) -> None:
    reply = await send(path, body, OPEN)
    common = reply.request_body.response
    assert json.loads(common.body_mutation.body) == {**body, "model": "up/m"}
    headers = {
        o.header.key: o.header.raw_value.decode() for o in common.header_mutation.set_headers
    }
    assert headers["x-meritorder-model"] == "m"
    assert (STREAM_HEADER in headers) == bool(body.get("stream"))
