"""The PII obfuscation corpus (tests/data/pii_obfuscation.jsonl) through the real Envoy, the
router and the shipped ONNX model: no obfuscation, in any field, reaches the external model's
MOCK, whether the policy chooses or the client names that model, and the client is never told
which type of PII was detected."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from classifiers.pii_scan import scan
from classifiers.text import part_joins
from meritorder.endpoints import parse
from meritorder.signals.labels import PII_TYPES
from tests.helpers import MockRecorder, stack_serving
from tests.pii_corpus import LOOKALIKES, OBFUSCATED

pytestmark = pytest.mark.e2e

POLICY = Path(__file__).parent / "policies" / "pii_obfuscation.yaml"
# What must not reach the client: the types, and the names of the signal and boundary that fired.
DETECTED = (*PII_TYPES, "personal", "no-pii-outside")


stack = stack_serving(POLICY)


def post(http: httpx.Client, body: dict[str, Any], **headers: str) -> httpx.Response:
    return http.post("/v1/chat/completions", json=body, headers=headers)


def assert_tells_nothing_detected(response: httpx.Response) -> None:
    shown = " ".join(
        response.headers.get(h, "") for h in ("x-meritorder-reason", "x-meritorder-decision")
    )
    assert not [d for d in DETECTED if d in shown], shown


@pytest.mark.parametrize("row", OBFUSCATED)
def test_no_obfuscated_pii_reaches_the_external_model(
    http: httpx.Client, upstreams: MockRecorder, row: dict[str, Any]
) -> None:
    for model in ("auto", "large"):  # chosen by the policy, or asked for by name
        response = post(http, {"model": model, **row["body"]})
        assert response.status_code == 200, response.text
        assert response.headers["x-meritorder-model"] == "small", row["note"]
        assert_tells_nothing_detected(response)
        assert "rejected=large:boundary" in response.headers["x-meritorder-reason"]
    received = upstreams.received()
    assert received["large"] == [], row["note"]
    assert len(received["small"]) == 2


@pytest.mark.parametrize(
    "query",
    [
        "ref=4111111111111111",  # a card in a parameter
        "note=jane.doe%40example.com",  # an e-mail, percent-encoded
        "4111%201111%201111%201111",  # a card as a bare key, spaced
        "api-version=2024-06-01&to=078-05-1120",  # an SSN beside a real parameter
    ],
)
def test_pii_in_the_query_string_does_not_reach_the_external_model(
    http: httpx.Client, upstreams: MockRecorder, query: str
) -> None:
    # The upstream receives the path as sent, query string included: its values leave the
    # boundary too.
    body = {"model": "large", "messages": [{"role": "user", "content": "hello"}]}
    response = http.post(f"/v1/chat/completions?{query}", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-meritorder-model"] == "small"
    assert_tells_nothing_detected(response)
    assert upstreams.received()["large"] == []


def test_a_query_string_without_pii_is_routed_as_asked(
    http: httpx.Client, upstreams: MockRecorder
) -> None:
    body = {"model": "large", "messages": [{"role": "user", "content": "hello"}]}
    response = http.post("/v1/chat/completions?api-version=2024-06-01&beta=true", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-meritorder-model"] == "large"


@pytest.mark.parametrize("depth", [900, 5_000])
def test_tool_call_arguments_nested_deep_are_read_and_routed(
    http: httpx.Client, upstreams: MockRecorder, depth: int
) -> None:
    # The router parses a tool call's arguments to read their values: nesting past the body's
    # own depth limit is the client's to send, and must not become a classifier error.
    args = "[" * depth + '"no personal data here"' + "]" * depth
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}}
    body = {
        "model": "large",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
    }
    response = post(http, body)
    assert response.status_code == 200, response.text
    assert response.headers["x-meritorder-model"] == "large"
    assert len(upstreams.received()["large"]) == 1


@pytest.mark.parametrize("cache_control", [None, "no-transform"])
@pytest.mark.parametrize("row", OBFUSCATED[:5])
def test_pii_in_a_gzip_compressed_body_is_found_after_the_gateway_inflates_it(
    http: httpx.Client, upstreams: MockRecorder, row: dict[str, Any], cache_control: str | None
) -> None:
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    if cache_control:  # would keep the body compressed past a default decompressor
        headers["cache-control"] = cache_control
    raw = json.dumps({"model": "large", **row["body"]}).encode()
    response = http.post("/v1/chat/completions", content=gzip.compress(raw), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["x-meritorder-model"] == "small", row["note"]
    assert upstreams.received()["large"] == [], row["note"]


@pytest.mark.parametrize("row", OBFUSCATED)
def test_a_redacting_decision_sends_out_no_copy_of_the_value(
    http: httpx.Client, upstreams: MockRecorder, row: dict[str, Any]
) -> None:
    response = post(http, {"model": "auto", **row["body"]}, **{"x-test-redact": "1"})
    assert response.status_code == 200, response.text
    assert_tells_nothing_detected(response)
    for seen in upstreams.received()["large"]:
        # Whatever went out was redacted: read as the router reads a request, it holds no PII.
        sent = parse("chat", seen["body"].encode(), max_bytes=1 << 22)  # type: ignore[union-attr]
        texts = [t for _, t in sent.inspected_texts()]
        joins = [part_joins(m) for m in sent.messages]
        left = [hit.type for hits in scan(texts, len(sent.messages), joins) for hit in hits]
        assert left == [], row["note"]
    if not re.fullmatch(r"messages\[\d+\]\.content", row["where"]):  # nothing to redact with
        assert upstreams.received()["large"] == [], row["note"]


@pytest.mark.parametrize("row", LOOKALIKES[:8])
def test_a_benign_look_alike_still_reaches_the_external_model(
    http: httpx.Client, upstreams: MockRecorder, row: dict[str, Any]
) -> None:
    response = post(http, {"model": "large", **row["body"]})
    assert response.headers["x-meritorder-model"] == "large", response.headers[
        "x-meritorder-reason"
    ]
    assert len(upstreams.received()["large"]) == 1
    assert json.loads(upstreams.received()["large"][0]["body"])["messages"]  # type: ignore[arg-type]
