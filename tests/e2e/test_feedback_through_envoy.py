"""`POST /v1/feedback` through the real Envoy: a verdict on a routed answer, named by the
response's x-request-id or its id, with JSON errors for what cannot be taken. Upstreams are
MOCKS."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from devstack import Stack

pytestmark = pytest.mark.e2e

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Write a haiku about rain."}]}


def feedback(http: httpx.Client, **body: object) -> httpx.Response:
    return http.post("/v1/feedback", json=body)


def test_feedback_on_a_routed_answer_is_recorded_against_its_decision(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    raw = client.chat.completions.with_raw_response.create(**CHAT)  # type: ignore[call-overload]
    request_id = raw.headers["x-request-id"]
    taken = feedback(http, request_id=request_id, score=1, label="thumbs_up")
    assert taken.status_code == 200, taken.text
    assert taken.json() == {
        "object": "feedback",
        "request_id": request_id,
        "model": raw.headers["x-meritorder-model"],
        "decision": raw.headers["x-meritorder-decision"],
        "score": 1.0,
        "label": "thumbs_up",
    }
    again = feedback(http, request_id=request_id, score=0)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "feedback_exists"


def test_feedback_may_name_the_answer_by_its_id(client: openai.OpenAI, http: httpx.Client) -> None:
    completion = client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    # The answer's id reaches the router with Envoy's access log (flushed about once a second).
    deadline = time.monotonic() + 15
    while (taken := feedback(http, response_id=completion.id, score=0.5)).status_code == 404:
        assert time.monotonic() < deadline, taken.text
        time.sleep(0.2)
    assert taken.status_code == 200, taken.text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"request_id": "never-routed", "score": 1}, 404, "unknown_request"),
        ({"request_id": "r", "score": 2}, 400, "invalid_value"),
        ({"score": 1}, 400, "missing_required_parameter"),
    ],
)
def test_feedback_that_cannot_be_taken_gets_a_json_error(
    http: httpx.Client, body: dict[str, object], status: int, code: str
) -> None:
    response = http.post("/v1/feedback", json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code


def test_malformed_and_empty_feedback_bodies_get_a_json_400(http: httpx.Client) -> None:
    for content in (b"{not json", b""):
        response = http.post(
            "/v1/feedback", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_feedback_is_post_only(http: httpx.Client) -> None:
    response = http.get("/v1/feedback")
    assert response.status_code == 404
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/v1/feedback"), ("POST", "/v1/feedback/"), ("POST", "/V1/FEEDBACK"),
     ("POST", "/v1/feedback/extra")],
)  # fmt: skip
def test_a_verdict_on_another_path_or_method_is_not_taken(
    client: openai.OpenAI, http: httpx.Client, method: str, path: str
) -> None:
    """Only POST /v1/feedback records a verdict: a look-alike gets the JSON 404, and the
    request can still be judged once, afterwards, on the real path."""
    raw = client.chat.completions.with_raw_response.create(**CHAT)  # type: ignore[call-overload]
    request_id = raw.headers["x-request-id"]
    response = http.request(method, path, json={"request_id": request_id, "score": 0})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert feedback(http, request_id=request_id, score=1).status_code == 200


def test_feedback_shows_in_the_metrics(
    client: openai.OpenAI, http: httpx.Client, stack: Stack
) -> None:
    raw = client.chat.completions.with_raw_response.create(**CHAT)  # type: ignore[call-overload]
    assert feedback(http, request_id=raw.headers["x-request-id"], score=0).status_code == 200
    metrics = httpx.get(f"http://127.0.0.1:{stack.ports.metrics}/metrics").text
    assert "meritorder_feedback_score_count{" in metrics
