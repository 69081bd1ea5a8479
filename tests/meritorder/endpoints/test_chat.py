"""The chat completions spec: parse, rewrite, errors, usage."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest

from meritorder.config import ReasoningStep, SystemPromptStep
from meritorder.endpoints import BY_API
from meritorder.errors import RequestError
from tests.helpers import Pii, read_as_turns, spec_rewrite, spec_view

SPEC = BY_API["chat"]
view = partial(spec_view, "chat")
rewrite = partial(spec_rewrite, "chat")


TOOL_TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": "weather?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"c":1}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
]


@pytest.mark.parametrize(
    ("body", "attrs"),
    [
        (
            {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
            {"api": "chat", "max_output_tokens": None, "choices": 1, "has_tools": False},
        ),
        (
            {"model": "auto", "messages": TOOL_TURNS, "max_tokens": 9, "n": 3, "tools": [{}]},
            {"max_output_tokens": 9, "choices": 3, "has_tools": True},
        ),
        (  # max_completion_tokens wins over the deprecated max_tokens
            {"model": "x", "messages": TOOL_TURNS, "max_tokens": 9, "max_completion_tokens": 5},
            {"max_output_tokens": 5},
        ),
        (  # an out-of-range cap is the upstream's to judge: forwarded, not read as a cap
            {"model": "x", "messages": TOOL_TURNS, "max_tokens": -1, "n": 0},
            {"max_output_tokens": None, "choices": 1},
        ),
    ],
)
def test_parse_reads_the_view_the_policy_uses(body: dict[str, Any], attrs: dict[str, Any]) -> None:
    request = view(body)
    for name, value in attrs.items():
        assert getattr(request, name) == value, name


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "x"}, "messages"),
        ({"model": "x", "messages": []}, "messages"),
        ({"model": "x", "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
        ({"model": "x", "messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        (
            {"model": "x", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"},
            "max_tokens",
        ),
        ({"model": "x", "messages": [{"role": "user", "content": "x"}], "n": 1.5}, "n"),
    ],
)
def test_bad_input_names_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as caught:
        view(body)
    assert (caught.value.status, caught.value.param) == (400, param)


def test_tool_calls_and_results_are_kept_and_their_arguments_read_as_turns() -> None:
    body = {"model": "auto", "messages": TOOL_TURNS, "tools": [{"type": "function"}]}
    assert rewrite(body)["messages"] == TOOL_TURNS
    turns = read_as_turns(view(body))
    assert turns["messages[1].tool_calls[0].function.arguments"] == '{"c":1}'
    assert "messages[1].tool_calls[0].function.arguments" not in dict(view(body).field_texts())
    assert view(body).texts() == ["weather?", "", "sunny"]


def test_rewrite_steps_in_chat_fields() -> None:
    body = {
        "model": "auto",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
    }
    out = rewrite(
        {**body, "stream": True, "max_tokens": 500},
        system_prompt=SystemPromptStep(mode="replace", text="ours"),
        reasoning=ReasoningStep(enabled=True, effort="high"),
        max_tokens=100,
    )
    assert out["messages"] == [
        {"role": "system", "content": "ours"},
        {"role": "user", "content": "hi"},
    ]
    assert (out["reasoning_effort"], out["max_tokens"]) == ("high", 100)
    assert out["stream_options"] == {"include_usage": True}


def test_redaction_writes_into_the_message_it_was_found_in() -> None:
    body = {"model": "a", "messages": [{"role": "user", "content": "mail bob@x.io now"}]}
    out = rewrite(body, redact=(Pii("EMAIL_ADDRESS", 5, 13),))
    assert out["messages"][0]["content"] == "mail [EMAIL_ADDRESS] now"


def test_errors_are_openai_shaped() -> None:
    error = RequestError(429, "spent", code="budget_exhausted", type="rate_limit_error")
    assert json.loads(SPEC.error_body(error)) == {
        "error": {
            "message": "spent",
            "type": "rate_limit_error",
            "param": None,
            "code": "budget_exhausted",
        }
    }


def test_usage_of_a_body_and_of_the_final_chunk() -> None:
    usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert (
        SPEC.usage_of({"usage": usage}).prompt_tokens,
        SPEC.usage_of({"usage": usage}).completion_tokens,
    ) == (4, 2)
    assert SPEC.usage_of({"choices": [], "usage": None}).prompt_tokens is None
