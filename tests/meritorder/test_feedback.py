"""`POST /v1/feedback` bodies: what is taken, and the 400s that name the field to fix."""

from __future__ import annotations

import json

import pytest

from meritorder.errors import RequestError
from meritorder.feedback import MAX_FEEDBACK_BYTES, parse_feedback
from meritorder.outcomes import Feedback


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"request_id": "r1", "score": 1}, Feedback("r1", 1.0)),
        ({"request_id": "r1", "score": 0}, Feedback("r1", 0.0)),
        ({"response_id": "chatcmpl-9", "score": 0.25, "label": "grader"},
         Feedback("chatcmpl-9", 0.25, "grader")),
    ],
)  # fmt: skip
def test_valid_feedback_is_taken(body: dict[str, object], expected: Feedback) -> None:
    assert parse_feedback(json.dumps(body).encode()) == expected


@pytest.mark.parametrize(
    ("raw", "param", "code"),
    [
        (b"", None, "invalid_body"),
        (b"[1]", None, "invalid_body"),
        (b'{"request_id": "r1", "score": NaN}', None, "invalid_json"),
        (b'{"score": 1}', "request_id", "missing_required_parameter"),
        (b'{"request_id": "r1", "response_id": "x", "score": 1}', "request_id", "invalid_value"),
        (b'{"request_id": "", "score": 1}', "request_id", "invalid_type"),
        (b'{"request_id": 7, "score": 1}', "request_id", "invalid_type"),
        (b'{"request_id": "r1"}', "score", "missing_required_parameter"),
        (b'{"request_id": "r1", "score": true}', "score", "invalid_type"),
        (b'{"request_id": "r1", "score": "1"}', "score", "invalid_type"),
        (b'{"request_id": "r1", "score": 1.5}', "score", "invalid_value"),
        (b'{"request_id": "r1", "score": -0.1}', "score", "invalid_value"),
        (b'{"request_id": "r1", "score": 1, "label": 3}', "label", "invalid_type"),
        (b'{"request_id": "r1", "score": 1, "weight": 100}', "weight", "unknown_parameter"),
    ],
)
def test_bad_feedback_is_a_400_naming_the_field(raw: bytes, param: str | None, code: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_feedback(raw)
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, param, code)


def test_oversized_feedback_is_refused_before_parsing() -> None:
    raw = json.dumps({"request_id": "r1", "score": 1, "label": "x" * MAX_FEEDBACK_BYTES})
    with pytest.raises(RequestError) as caught:
        parse_feedback(raw.encode())
    assert caught.value.code == "request_too_large"
