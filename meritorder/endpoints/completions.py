"""OpenAI (legacy) text completions: POST /v1/completions."""

from __future__ import annotations

from typing import Any

from meritorder.config import ModelConfig
from meritorder.endpoints.base import (
    EndpointSpec,
    openai_steps,
    optional_count,
)
from meritorder.errors import bad_request
from meritorder.policy import Steps
from meritorder.request import Body, BodyPath, RequestView, json_type


class CompletionsSpec(
    EndpointSpec, api="completions", path="/v1/completions", operation="text_completion"
):
    text_keys = frozenset({"model", "prompt"})

    def view(self, body: dict[str, Any]) -> RequestView:
        prompt = body.get("prompt")
        text = prompt_text(prompt)
        n = optional_count(body, "n", minimum=1) or 1
        best_of = optional_count(body, "best_of", minimum=1) or 1
        messages: list[dict[str, Any]] = [{"role": "user", "content": text}]
        sources: list[BodyPath] = [("prompt",)]
        if isinstance(body.get("suffix"), str):
            # The text after the insertion point: the model reads it as context, not as the ask.
            messages.append({"role": "tool", "content": body["suffix"]})
            sources.append(("suffix",))
        return self.request_view(
            body,
            messages,
            sources,
            max_output_tokens=optional_count(body, "max_tokens"),
            choices=max(n, best_of),
            unreadable=isinstance(prompt, list) and not any(isinstance(p, str) for p in prompt),
        )

    def edit(self, request: RequestView, body: Body, model: ModelConfig, steps: Steps) -> None:
        # A text prompt has no system message: a system_prompt step does not apply here.
        openai_steps(request, body, model, steps, ("max_tokens",))


def prompt_text(prompt: object, *, field: str = "prompt", path: str = "/v1/completions") -> str:
    """The text of every prompt shape OpenAI accepts: a string, an array of strings, an array
    of token ids, or an array of token-id arrays (pre-tokenized prompts have no text to read)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return "\n".join(prompt)
        if all(_is_token(p) for p in prompt):
            return ""
        if all(isinstance(p, list) and p and all(_is_token(t) for t in p) for p in prompt):
            return ""
    if prompt is None:
        raise bad_request(
            f"'{field}' is required for {path}.",
            param=field,
            code="missing_required_parameter",
        )
    raise bad_request(
        f"'{field}' must be a string, a non-empty array of strings, of token ids (integers) or "
        f"of non-empty token-id arrays; got {_prompt_shape(prompt)}.",
        param=field,
        code="invalid_type",
    )


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _prompt_shape(prompt: object) -> str:
    """What a bad prompt is, for the error message: 'an empty array', 'an array holding ...'."""
    if not isinstance(prompt, list):
        return json_type(prompt)
    if not prompt:
        return "an empty array"
    kinds = sorted({json_type(p) for p in prompt})
    return f"an array holding {' and '.join(kinds)}"


SPEC = CompletionsSpec()
