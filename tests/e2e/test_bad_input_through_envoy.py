"""Every malformed request gets an OpenAI-style JSON error from the real Envoy, never reaches an
upstream, and leaves the router serving."""

from __future__ import annotations

import gzip
import json

import httpx
import openai
import pytest

from tests.helpers import MockRecorder

pytestmark = pytest.mark.e2e

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (b'{"model": "auto", "messages": [', "invalid_json", None),
        (b"[1, 2, 3]", "invalid_body", None),
        (b'"just a string"', "invalid_body", None),
        (b'{"model": "auto"}', "missing_required_parameter", "messages"),
        (b'{"model": "auto", "messages": "hi"}', "invalid_type", "messages"),
        (
            b'{"model": "auto", "messages": [{"role": "user"}]}',
            "invalid_type",
            "messages[0].content",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "robot", "content": "x"}]}',
            "invalid_value",
            "messages[0].role",
        ),
        (b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}', "invalid_type", "model"),
        (
            b'{"model": "auto", "stream": 1, "messages": [{"role": "user", "content": "x"}]}',
            "invalid_type",
            "stream",
        ),
        # What parsers read differently: refused, never forwarded.
        (
            b'{"model": "auto", "temperature": NaN, "messages": [{"role": "user", "content": ""}]}',
            "invalid_json",
            None,
        ),
        (
            b'{"model": "auto", "top_p": -Infinity, "messages": [{"role": "user", "content": ""}]}',
            "invalid_json",
            None,
        ),
        (
            b'{"model": "auto", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b', "messages": []}',
            "invalid_json",
            None,
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "\\ud800 hi"}]}',
            "invalid_json",
            None,
        ),
    ],
)
def test_malformed_bodies_get_a_400_json_error(
    http: httpx.Client, upstreams: MockRecorder, body: bytes, code: str, param: str | None
) -> None:
    response = http.post("/v1/chat/completions", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert all(not seen for seen in upstreams.received().values())


def test_an_empty_body_gets_a_400(http: httpx.Client, upstreams: MockRecorder) -> None:
    response = http.post("/v1/chat/completions", content=b"", headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "empty_body"
    assert all(not seen for seen in upstreams.received().values())


def test_a_body_over_the_limit_gets_a_413_json_error(
    http: httpx.Client, upstreams: MockRecorder
) -> None:
    big = (
        b'{"model": "auto", "messages": [{"role": "user", "content": "' + b"a" * (1 << 20) + b'"}]}'
    )
    response = http.post("/v1/chat/completions", content=big, headers=JSON)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert all(not seen for seen in upstreams.received().values())


@pytest.mark.parametrize(
    ("path", "encoding", "cache_control"),
    [
        ("/v1/chat/completions", "gzip", None),
        ("/v1/chat/completions", "GZIP", None),  # the name in any casing
        ("/v1/chat/completions", "gzip", "no-transform"),  # which the gateway ignores here
        ("/v1/messages", "gzip", None),
    ],
)
def test_a_gzip_body_is_inflated_by_the_gateway_and_routed(
    http: httpx.Client,
    upstreams: MockRecorder,
    path: str,
    encoding: str,
    cache_control: str | None,
) -> None:
    body = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    headers = {
        **JSON,
        "content-encoding": encoding,
        **({"cache-control": cache_control} if cache_control else {}),
    }
    response = http.post(path, content=gzip.compress(json.dumps(body).encode()), headers=headers)
    assert response.status_code == 200, response.text
    (sent,) = [seen for received in upstreams.received().values() for seen in received]
    assert json.loads(sent["body"])["messages"] == body["messages"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "encoding", "shape"),
    [
        ("/v1/chat/completions", "br", "openai"),
        ("/v1/chat/completions", "deflate", "openai"),
        ("/v1/chat/completions", "gzip, gzip", "openai"),  # inflated once, still encoded
        ("/v1/messages", "zstd", "anthropic"),
    ],
)
def test_a_body_in_an_encoding_the_gateway_does_not_inflate_gets_a_415_and_is_never_forwarded(
    http: httpx.Client, upstreams: MockRecorder, path: str, encoding: str, shape: str
) -> None:
    raw = json.dumps(
        {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    data = gzip.compress(gzip.compress(raw)) if encoding == "gzip, gzip" else raw
    response = http.post(path, content=data, headers={**JSON, "content-encoding": encoding})
    assert response.status_code == 415, response.text
    payload = response.json()
    error = payload["error"]
    assert error["type"] == "invalid_request_error"
    if shape == "anthropic":
        assert payload["type"] == "error"
    else:
        assert error["code"] == "unsupported_content_encoding"
    assert all(not seen for seen in upstreams.received().values())


def test_a_gzip_bomb_is_refused_at_the_body_limit(
    http: httpx.Client, upstreams: MockRecorder
) -> None:
    inflated = b'{"model": "auto", "messages": [{"role": "user", "content": "' + b"a" * (20 << 20)
    data = gzip.compress(inflated + b'"}]}')  # ~20 KiB that inflates to 20 MiB
    response = http.post(
        "/v1/chat/completions", content=data, headers={**JSON, "content-encoding": "gzip"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"
    assert all(not seen for seen in upstreams.received().values())


def test_a_chunked_body_over_the_limit_gets_a_413_json_error(http: httpx.Client) -> None:
    def chunks():  # no content-length: the router sees the size only after Envoy buffered it
        yield b'{"model": "auto", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"b" * (64 << 10)
        yield b'"}]}'

    response = http.post("/v1/chat/completions", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_large_body_under_the_limit_is_routed(client: openai.OpenAI) -> None:
    text = "python " * 100_000  # ~700 KB: far above small gateway buffers, under the 1 MiB limit
    raw = client.chat.completions.with_raw_response.create(
        model="small", messages=[{"role": "user", "content": text}]
    )
    assert raw.headers["x-meritorder-model"] == "small"
    assert raw.parse().model == "mock/small-1b"


def test_the_server_keeps_serving_after_bad_input(
    http: httpx.Client, client: openai.OpenAI
) -> None:
    for _ in range(5):
        assert http.post("/v1/chat/completions", content=b"{", headers=JSON).status_code == 400
    completion = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.model == "mock/small-1b"


def test_sdk_surfaces_the_error_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="auto", messages=[])
    assert "'messages' must be a non-empty array" in str(caught.value)


def test_a_pre_tokenized_completions_batch_is_routed(
    http: httpx.Client, upstreams: MockRecorder
) -> None:
    body = {"model": "auto", "prompt": [[1734, 318], [40, 1101, 257]], "max_tokens": 4}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 200
    (seen,) = [r for requests in upstreams.received().values() for r in requests]
    assert json.loads(seen["body"])["prompt"] == body["prompt"]
