"""Apply a decision to the request body: the upstream's model id, and the decision's steps
(system prompt, reasoning switch, max_tokens cap, PII redaction)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from classifiers.signals import PiiEntity
from meritorder.policy import Decision, PiiFinding
from meritorder.request import ChatRequest, Endpoint


def forward_body(request: ChatRequest, decision: Decision) -> bytes:
    """The body to send upstream for a routed decision."""
    assert decision.model is not None, "only routed decisions are forwarded"
    body = dict(request.body)
    body["model"] = decision.model.upstream_model
    steps = decision.steps
    if steps.redact:
        _redact(request, body, steps.redact)
    if steps.system_prompt is not None and request.endpoint is Endpoint.CHAT:
        kept = body["messages"]
        if steps.system_prompt.mode == "replace":
            kept = [m for m in kept if m.get("role") not in ("system", "developer")]
        body["messages"] = [{"role": "system", "content": steps.system_prompt.text}, *kept]
    if steps.reasoning is not None:
        _set_reasoning(
            body, decision.model.reasoning_family, steps.reasoning.enabled, steps.reasoning.effort
        )
    if steps.max_tokens is not None:
        for key in ("max_tokens", "max_completion_tokens"):
            asked = body.get(key)
            if isinstance(asked, int) and asked > steps.max_tokens:
                body[key] = steps.max_tokens
        if "max_tokens" not in body and "max_completion_tokens" not in body:
            body["max_tokens"] = steps.max_tokens
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _set_reasoning(body: dict[str, Any], family: str | None, enabled: bool, effort: str) -> None:
    if family == "chat_template_kwargs.enable_thinking":
        kwargs = dict(body.get("chat_template_kwargs") or {})
        kwargs["enable_thinking"] = enabled
        body["chat_template_kwargs"] = kwargs
    elif family == "reasoning_effort":
        body["reasoning_effort"] = effort if enabled else "low"


def _redact(request: ChatRequest, body: dict[str, Any], found: Sequence[PiiFinding]) -> None:
    """Replace each PII span with `[TYPE]`. Offsets are into the message text as the classifier
    read it: a string content, or the text parts joined by newlines."""
    by_message: dict[int, list[PiiFinding]] = {}
    for f in found:
        by_message.setdefault(f.message or 0, []).append(f)
    if request.endpoint is Endpoint.COMPLETIONS:
        if isinstance(body.get("prompt"), str):
            body["prompt"] = _mask(body["prompt"], by_message.get(0, []))
        return
    messages = [dict(m) for m in body["messages"]]
    for index, spans in by_message.items():
        if index >= len(messages):
            continue
        content = messages[index].get("content")
        if isinstance(content, str):
            messages[index]["content"] = _mask(content, spans)
        elif isinstance(content, list):
            messages[index]["content"] = _mask_parts(content, spans)
    body["messages"] = messages


def _mask(text: str, spans: Sequence[PiiFinding]) -> str:
    for f in sorted(spans, key=lambda f: f.start, reverse=True):
        text = text[: f.start] + f"[{f.type}]" + text[f.end :]
    return text


def _mask_parts(parts: list[Any], spans: Sequence[PiiFinding]) -> list[Any]:
    result = []
    offset = 0
    for part in parts:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            text = part["text"]
            inside = [f for f in spans if offset <= f.start and f.end <= offset + len(text)]
            shifted = [PiiEntity(f.type, f.start - offset, f.end - offset, f.score) for f in inside]
            result.append({**part, "text": _mask(text, shifted)})
            offset += len(text) + 1  # the newline that joins text parts
        else:
            result.append(part)
    return result
