"""Anthropic Messages API: POST /v1/messages (errors in Anthropic's own JSON shape)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from meritorder.config import ModelConfig
from meritorder.endpoints.base import (
    EndpointSpec,
    Usage,
    cap,
    check_parts,
    check_role,
    is_content,
    required_array,
    usage_tokens,
)
from meritorder.errors import RequestError, bad_request
from meritorder.policy import Steps
from meritorder.request import Body, BodyPath, RequestView, at_path

_ROLES = frozenset({"user", "assistant"})
_TEXT_BLOCKS = frozenset({"text"})
# Anthropic's error types by HTTP status (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
# Thinking budgets for the reasoning step's effort (Anthropic's minimum budget is 1024).
_THINKING_BUDGET = {"low": 1024, "medium": 4096, "high": 16384}


def _inner_content(block: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Where a content block holds text the model reads that is not the turn's own: a
    `tool_result`'s (or any other block's) `content`, a `document`'s text `source`. The
    classifier reads it as a tool turn, whatever the block's type is called."""
    if block.get("type") == "text":
        return None
    if is_content(block.get("content")):
        return ("content",)
    source = block.get("source")
    if isinstance(source, Mapping):
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return ("source", "data")
        if is_content(source.get("content")):
            return ("source", "content")
    return None


def error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return (
        "overloaded_error"
        if status == 503
        else "api_error"
        if status >= 500
        else "invalid_request_error"
    )


class MessagesSpec(EndpointSpec, api="messages", path="/v1/messages", operation="chat"):
    text_keys = frozenset({"model", "messages", "system"})
    item_keys = ("messages",)

    def view(self, body: dict[str, Any]) -> RequestView:
        max_tokens = body.get("max_tokens")
        if "max_tokens" not in body:
            raise bad_request(
                "'max_tokens' is required.", param="max_tokens", code="missing_required_parameter"
            )
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise bad_request(
                "'max_tokens' must be an integer of at least 1.",
                param="max_tokens",
                code="invalid_type",
            )
        messages: list[dict[str, Any]] = []
        sources: list[BodyPath] = []
        if "system" in body:
            check_parts(body["system"], "system", text_types=_TEXT_BLOCKS)
            messages.append({"role": "system", "content": body["system"]})
            sources.append(("system",))
        for i, message in enumerate(required_array(body, "messages", "message objects")):
            role = check_role(message, f"messages[{i}]", _ROLES)
            check_parts(message.get("content"), f"messages[{i}].content", text_types=_TEXT_BLOCKS)
            content = message["content"]
            for j, block in enumerate(content if isinstance(content, list) else ()):
                inner = _inner_content(block)
                if inner is not None:  # a tool result or a document: someone else's text
                    messages.append({"role": "tool", "content": at_path(block, inner)})
                    sources.append(("messages", i, "content", j, *inner))
            messages.append({"role": role, "content": content})
            sources.append(("messages", i, "content"))
        return self.request_view(body, messages, sources, max_output_tokens=max_tokens)

    def edit(self, request: RequestView, body: Body, model: ModelConfig, steps: Steps) -> None:
        if steps.system_prompt is not None:
            text = steps.system_prompt.text
            given = body.get("system")
            if steps.system_prompt.mode == "replace" or not given:
                body["system"] = text
            elif isinstance(given, list):
                body["system"] = [{"type": "text", "text": text}, *given]
            else:
                body["system"] = f"{text}\n\n{given}"
        if steps.max_tokens is not None:
            cap(body, ("max_tokens",), steps.max_tokens)
        if steps.reasoning is not None and model.reasoning_family is not None:
            # Anthropic's extended thinking: a token budget below max_tokens.
            if not steps.reasoning.enabled:
                body["thinking"] = {"type": "disabled"}
            elif body["max_tokens"] > 1024:
                budget = _THINKING_BUDGET.get(steps.reasoning.effort, 4096)
                body["thinking"] = {
                    "type": "enabled",
                    "budget_tokens": max(1024, min(budget, body["max_tokens"] - 1)),
                }

    def error_body(self, error: RequestError) -> bytes:
        body = {
            "type": "error",
            "error": {"type": error_type(error.status), "message": error.message},
        }
        return json.dumps(body).encode()

    def usage_of(self, event: Mapping[str, Any]) -> Usage:
        # A message body and `message_delta` carry `usage`; `message_start` carries
        # `message.usage` (input_tokens, and the output so far).
        message = event.get("message")
        if isinstance(message, Mapping) and "usage" in message:
            return Usage(*usage_tokens(message.get("usage")))
        return Usage(*usage_tokens(event.get("usage")))


SPEC = MessagesSpec()
