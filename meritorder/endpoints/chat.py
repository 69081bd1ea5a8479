"""OpenAI chat completions: POST /v1/chat/completions."""

from __future__ import annotations

from typing import Any

from meritorder.config import ModelConfig
from meritorder.endpoints.base import (
    EndpointSpec,
    check_parts,
    check_role,
    openai_steps,
    optional_count,
    required_array,
)
from meritorder.policy import Steps
from meritorder.request import Body, RequestView

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NULL_CONTENT = frozenset({"assistant", "tool", "function"})  # turns that only carry tool calls


class ChatSpec(EndpointSpec, api="chat", path="/v1/chat/completions", operation="chat"):
    text_keys = frozenset({"model", "messages"})
    item_keys = ("messages",)

    def view(self, body: dict[str, Any]) -> RequestView:
        messages = required_array(body, "messages", "message objects")
        for i, message in enumerate(messages):
            role = check_role(message, f"messages[{i}]", _ROLES)
            check_parts(
                message.get("content"),
                f"messages[{i}].content",
                text_types=frozenset({"text"}),
                allow_null=role in _NULL_CONTENT,
            )
        cap_asked = optional_count(body, "max_completion_tokens")
        if cap_asked is None:
            cap_asked = optional_count(body, "max_tokens")
        return self.request_view(
            body,
            messages,
            [("messages", i, "content") for i in range(len(messages))],
            max_output_tokens=cap_asked,
            choices=optional_count(body, "n", minimum=1) or 1,
        )

    def edit(self, request: RequestView, body: Body, model: ModelConfig, steps: Steps) -> None:
        if steps.system_prompt is not None:
            kept = body["messages"]
            if steps.system_prompt.mode == "replace":
                kept = [m for m in kept if m.get("role") not in ("system", "developer")]
            body["messages"] = [{"role": "system", "content": steps.system_prompt.text}, *kept]
        openai_steps(request, body, model, steps, ("max_tokens", "max_completion_tokens"))


SPEC = ChatSpec()
