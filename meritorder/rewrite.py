"""Apply a decision to the request body: the upstream's model id, and the decision's steps
(system prompt, reasoning switch, max_tokens cap, PII redaction)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from meritorder.policy import PiiFinding, Routed
from meritorder.request import Endpoint, RequestView


def forward_body(request: RequestView, decision: Routed) -> bytes:
    """The body to send upstream for a routed decision."""
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


def _redact(request: RequestView, body: dict[str, Any], found: Sequence[PiiFinding]) -> None:
    """Replace each PII span with `[TYPE]`. Offsets are into the message text as the classifier
    read it (`classifiers.text.message_text`): a string content, or the text parts joined by
    newlines; a span across two parts is masked in both. Findings in other fields are not
    redactable: the policy keeps such requests private instead."""
    by_message: dict[int, list[Span]] = {}
    for f in found:
        if f.field is None:
            by_message.setdefault(f.message or 0, []).append((f.start, f.end, f.type))
    if request.endpoint is Endpoint.COMPLETIONS:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            body["prompt"] = _mask(prompt, by_message.get(0, []))
        elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            body["prompt"] = _mask_pieces(prompt, by_message.get(0, []))  # joined by newlines
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


Span = tuple[int, int, str]  # start, end, PII type


def _mask(text: str, spans: Sequence[Span]) -> str:
    """`text` with each span (overlapping ones merged) replaced by `[TYPE]`."""
    merged: list[list[Any]] = []
    for start, end, kind in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, kind])
    for start, end, kind in reversed(merged):
        text = text[:start] + f"[{kind}]" + text[end:]
    return text


def _clip(spans: Sequence[Span], offset: int, length: int) -> list[Span]:
    """The parts of `spans` inside `[offset, offset + length)`, relative to `offset`."""
    return [
        (max(s, offset) - offset, min(e, offset + length) - offset, kind)
        for s, e, kind in spans
        if s < offset + length and offset < e
    ]


def _mask_pieces(pieces: list[str], spans: Sequence[Span]) -> list[str]:
    result = []
    offset = 0
    for text in pieces:
        result.append(_mask(text, _clip(spans, offset, len(text))))
        offset += len(text) + 1  # the newline that joins them
    return result


def _mask_parts(parts: list[Any], spans: Sequence[Span]) -> list[Any]:
    result = []
    offset = 0
    for part in parts:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            text = part["text"]
            result.append({**part, "text": _mask(text, _clip(spans, offset, len(text)))})
            offset += len(text) + 1  # the newline that joins text parts
        else:
            result.append(part)
    return result
