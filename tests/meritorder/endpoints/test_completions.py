"""The text completions spec: parse, rewrite, errors, usage."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from meritorder.config import SystemPromptStep
from meritorder.endpoints import BY_API, Usage
from meritorder.errors import RequestError
from tests.helpers import Pii, spec_rewrite, spec_view

SPEC = BY_API["completions"]
view = partial(spec_view, "completions")
rewrite = partial(spec_rewrite, "completions")


@pytest.mark.parametrize(
    ("body", "attrs"),
    [
        (
            {"model": "a", "prompt": "hi"},
            {"choices": 1, "max_output_tokens": None, "unreadable": False},
        ),
        (
            {"model": "a", "prompt": ["a", "b"], "n": 2, "best_of": 4, "max_tokens": 7},
            {"choices": 4, "max_output_tokens": 7},
        ),
        ({"model": "a", "prompt": [1, 2]}, {"unreadable": True}),
    ],
)
def test_parse_reads_choices_caps_and_readability(
    body: dict[str, Any], attrs: dict[str, Any]
) -> None:
    request = view(body)
    assert request.api == "completions"
    for name, value in attrs.items():
        assert getattr(request, name) == value, name


def test_bad_prompt_names_the_field() -> None:
    with pytest.raises(RequestError) as caught:
        view({"model": "a", "prompt": 3})
    assert caught.value.param == "prompt"


def test_rewrite_caps_max_tokens_asks_streams_for_usage_and_has_no_system_prompt() -> None:
    out = rewrite(
        {"model": "a", "prompt": "hi", "stream": True, "stream_options": {"x": 1}},
        max_tokens=10,
        system_prompt=SystemPromptStep(text="ours"),
    )
    assert out == {
        "model": "up/m",
        "prompt": "hi",
        "stream": True,
        "stream_options": {"x": 1, "include_usage": True},
        "max_tokens": 10,
    }


def test_usage_chunk() -> None:
    parser = SPEC.stream_usage()
    parser.feed(
        b'data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":2,'
    )
    parser.feed(b'"completion_tokens":1}}\n\ndata: [DONE]\n\n')
    assert parser.finish() == Usage(2, 1)


def test_a_suffix_is_read_as_context_after_the_prompt_and_masked_where_it_was_written() -> None:
    body = {"model": "auto", "prompt": "def f():", "suffix": "# mail bob@x.io"}
    request = view(body)
    assert request.texts() == ["def f():", "# mail bob@x.io"]
    assert [m["role"] for m in request.messages] == ["user", "tool"]
    assert request.last_user_text() == "def f():"
    assert "suffix" not in dict(request.field_texts())
    out = rewrite(body, redact=(Pii("EMAIL_ADDRESS", 7, 15, message=1),))
    assert out["suffix"] == "# mail [EMAIL_ADDRESS]"
    assert out["prompt"] == "def f():"
