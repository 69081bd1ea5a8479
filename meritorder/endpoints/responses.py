"""OpenAI Responses API: POST /v1/responses."""

from __future__ import annotations

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
    optional_count,
    usage_tokens,
)
from meritorder.errors import bad_request
from meritorder.policy import Steps
from meritorder.request import Body, BodyPath, RequestView, json_type

_ROLES = frozenset({"system", "developer", "user", "assistant"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
# Where a request's input lives when not in `input`: a stored response, a conversation, a prompt.
_INPUT_ELSEWHERE = ("previous_response_id", "conversation", "prompt")


class ResponsesSpec(EndpointSpec, api="responses", path="/v1/responses", operation="chat"):
    text_keys = frozenset({"model", "input", "instructions"})
    item_keys = ("input",)

    def view(self, body: dict[str, Any]) -> RequestView:
        messages: list[dict[str, Any]] = []
        sources: list[BodyPath] = []
        instructions = body.get("instructions")
        if instructions is not None:
            if not isinstance(instructions, str):
                raise bad_request(
                    f"'instructions' must be a string, not {json_type(instructions)}.",
                    param="instructions",
                    code="invalid_type",
                )
            messages.append({"role": "system", "content": instructions})
            sources.append(("instructions",))
        for variable, path in _prompt_variables(body.get("prompt")):
            # A stored prompt's variables: text the model reads inside the developer's template.
            messages.append({"role": "developer", "content": variable})
            sources.append(path)
        raw = body.get("input")
        if isinstance(raw, str):
            messages.append({"role": "user", "content": raw})
            sources.append(("input",))
        elif isinstance(raw, list):
            for i, item in enumerate(raw):
                where = f"input[{i}]"
                if not isinstance(item, dict):
                    raise bad_request(
                        f"'{where}' must be an object, not {json_type(item)}.",
                        param=where,
                        code="invalid_type",
                    )
                if "role" in item or item.get("type") == "message":
                    role = check_role(item, where, _ROLES)
                    check_parts(item.get("content"), f"{where}.content", text_types=_TEXT_PARTS)
                    messages.append({"role": role, "content": item.get("content")})
                    sources.append(("input", i, "content"))
                elif not isinstance(item.get("type"), str):
                    raise bad_request(
                        f"'{where}' must be a message (with a 'role') or an item with a string "
                        "'type' (function_call, function_call_output, ...).",
                        param=where,
                        code="invalid_type",
                    )
                elif is_content(item.get("output")):
                    # A tool's output (function_call_output, custom_tool_call_output, an
                    # mcp_call's result, ...): text the model reads, so the classifier reads it
                    # as a tool turn, whatever the item's type is called.
                    messages.append({"role": "tool", "content": item["output"]})
                    sources.append(("input", i, "output"))
        elif raw is not None:
            raise bad_request(
                f"'input' must be a string or an array of input items, not {json_type(raw)}.",
                param="input",
                code="invalid_type",
            )
        elif not any(body.get(key) is not None for key in _INPUT_ELSEWHERE):
            raise bad_request(
                "'input' is required (or 'previous_response_id', 'conversation' or 'prompt').",
                param="input",
                code="missing_required_parameter",
            )
        max_output_tokens = optional_count(body, "max_output_tokens")
        return self.request_view(body, messages, sources, max_output_tokens=max_output_tokens)

    def edit(self, request: RequestView, body: Body, model: ModelConfig, steps: Steps) -> None:
        if steps.system_prompt is not None:
            text = steps.system_prompt.text
            if steps.system_prompt.mode == "replace":
                body["instructions"] = text
                if isinstance(body.get("input"), list):
                    body["input"] = [item for item in body["input"] if not _is_system(item)]
            else:
                given = body.get("instructions")
                body["instructions"] = f"{text}\n\n{given}" if given else text
        if steps.reasoning is not None:
            enabled, effort = steps.reasoning.enabled, steps.reasoning.effort
            if model.reasoning_family == "reasoning_effort":
                body["reasoning"] = {
                    **(body.get("reasoning") or {}),
                    "effort": effort if enabled else "low",
                }
            elif model.reasoning_family == "chat_template_kwargs.enable_thinking":
                kwargs = dict(body.get("chat_template_kwargs") or {})
                kwargs["enable_thinking"] = enabled
                body["chat_template_kwargs"] = kwargs
        if steps.max_tokens is not None:
            cap(body, ("max_output_tokens",), steps.max_tokens)

    def usage_of(self, event: Mapping[str, Any]) -> Usage:
        # A response body has `usage`; the stream's `response.completed` event has
        # `response.usage` (input_tokens, output_tokens).
        response = event.get("response")
        if isinstance(response, Mapping) and "usage" in response:
            return Usage(*usage_tokens(response.get("usage")))
        return Usage(*usage_tokens(event.get("usage")))


def _prompt_variables(prompt: object) -> list[tuple[str, BodyPath]]:
    """(text, body path) of each text variable of a `prompt` (a stored prompt template): a
    string, or an `input_text` part's text; images and files are read as field text."""
    if prompt is None:
        return []
    if not isinstance(prompt, dict):
        raise bad_request(
            f"'prompt' must be an object, not {json_type(prompt)}.",
            param="prompt",
            code="invalid_type",
        )
    variables = prompt.get("variables")
    if variables is None:
        return []
    if not isinstance(variables, dict):
        raise bad_request(
            f"'prompt.variables' must be an object, not {json_type(variables)}.",
            param="prompt.variables",
            code="invalid_type",
        )
    out: list[tuple[str, BodyPath]] = []
    for name, value in variables.items():
        if isinstance(value, str):
            out.append((value, ("prompt", "variables", name)))
        elif isinstance(value, dict) and isinstance(value.get("text"), str):
            out.append((value["text"], ("prompt", "variables", name, "text")))
    return out


def _is_system(item: object) -> bool:
    return isinstance(item, dict) and item.get("role") in ("system", "developer")


SPEC = ResponsesSpec()
