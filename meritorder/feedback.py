"""`POST /v1/feedback`: a verdict on a routed request's answer, as the router's own JSON API.

    {"request_id": "<x-request-id of the response>", "score": 1, "label": "thumbs_up"}

`response_id` (the upstream's `id` of a non-streamed answer, e.g. `chatcmpl-...`) may name the
request instead of `request_id`. `score` is a number in [0, 1]: thumbs up/down as 1/0, a
grader's verdict, a task's success. The reply echoes what the verdict was recorded against.
"""

from __future__ import annotations

import json
import math

from meritorder.endpoints.base import load_json
from meritorder.errors import bad_request
from meritorder.outcomes import Feedback, Outcome

FEEDBACK_PATH = "/v1/feedback"
MAX_FEEDBACK_BYTES = 16 * 1024
MAX_LABEL_CHARS = 200
_FIELDS = ("request_id", "response_id", "score", "label")


def parse_feedback(raw: bytes) -> Feedback:
    """A validated feedback body; raises `RequestError` 400/413 naming the field to fix."""
    if len(raw) > MAX_FEEDBACK_BYTES:
        raise bad_request(
            f"The feedback body is {len(raw)} bytes; send at most {MAX_FEEDBACK_BYTES}.",
            code="request_too_large",
        )
    body = load_json(raw) if raw.strip() else None
    if not isinstance(body, dict):
        raise bad_request(
            'Send a JSON object: {"request_id": "...", "score": 0..1, "label": "..."}.',
            code="invalid_body",
        )
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise bad_request(
            f"Unknown field {unknown[0]!r}; feedback takes {list(_FIELDS)}.",
            param=unknown[0],
            code="unknown_parameter",
        )
    ids = [key for key in ("request_id", "response_id") if key in body]
    if len(ids) != 1:
        raise bad_request(
            "Name the request with exactly one of 'request_id' (its x-request-id) or "
            "'response_id' (the answer's id).",
            param="request_id",
            code="missing_required_parameter" if not ids else "invalid_value",
        )
    request_id = body[ids[0]]
    if not isinstance(request_id, str) or not request_id or len(request_id) > 256:
        raise bad_request(
            f"'{ids[0]}' must be a non-empty string of at most 256 characters.",
            param=ids[0],
            code="invalid_type",
        )
    score = body.get("score")
    if "score" not in body:
        raise bad_request(
            "'score' is required: a number in [0, 1].",
            param="score",
            code="missing_required_parameter",
        )
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise bad_request(
            f"'score' must be a number in [0, 1], not {json.dumps(score)}; send 1 or 0 for "
            "thumbs up or down.",
            param="score",
            code="invalid_type",
        )
    if not 0.0 <= score <= 1.0:
        raise bad_request(
            f"'score' must be in [0, 1], got {score}.", param="score", code="invalid_value"
        )
    label = body.get("label", "")
    if not isinstance(label, str) or len(label) > MAX_LABEL_CHARS:
        raise bad_request(
            f"'label' must be a string of at most {MAX_LABEL_CHARS} characters.",
            param="label",
            code="invalid_type",
        )
    return Feedback(request_id, float(score), label)


def feedback_json(outcome: Outcome, feedback: Feedback) -> bytes:
    """The reply: what the verdict was recorded against."""
    return json.dumps(
        {
            "object": "feedback",
            "request_id": outcome.request_id,
            "model": outcome.pending.model,
            "decision": outcome.pending.rule,
            "score": feedback.score,
            "label": feedback.label,
        }
    ).encode()
