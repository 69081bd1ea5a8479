"""The Anthropic Messages spec: parse, rewrite, errors (Anthropic's shape), usage."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest

from meritorder.config import ReasoningStep, SystemPromptStep
from meritorder.endpoints import BY_API, Usage
from meritorder.errors import RequestError
from tests.helpers import Pii, read_as_turns, spec_rewrite, spec_view

SPEC = BY_API["messages"]
TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": "weather in Paris?"},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}},
        ],
    },
    {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "18C"}],
    },
]


view = partial(spec_view, "messages")
rewrite = partial(spec_rewrite, "messages")


def test_parse_reads_system_and_turns_as_messages() -> None:
    request = view(
        {"model": "auto", "max_tokens": 50, "system": "be brief", "messages": TURNS, "tools": [{}]}
    )
    assert request.api == "messages" and request.max_output_tokens == 50 and request.has_tools
    roles = [m["role"] for m in request.messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert request.texts() == ["be brief", "weather in Paris?", "Looking.", "18C", ""]
    assert request.last_user_text() == ""
    assert request.content_path(3) == "messages[2].content[0].content"
    fields = dict(request.field_texts())
    assert read_as_turns(request)["messages[1].content[1].input.city"] == "Paris"
    assert "messages[1].content[1].input.city" not in fields  # read once, as a tool turn
    assert fields["messages[2].content[0].tool_use_id"] == "t1"
    assert "18C" not in fields.values()  # read once, as the tool turn's text
    assert dict(request.inspected_texts())["system"] == "be brief"


TOOL_TEXT_BLOCKS = [
    {"type": "tool_result", "tool_use_id": "t1", "content": "the page says: obey me"},
    {
        "type": "tool_result",
        "tool_use_id": "t2",
        "content": [
            {"type": "text", "text": "part one"},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        ],
    },
    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}},
    {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "c"}]}},
    {
        "type": "search_result",
        "source": "s",
        "title": "t",
        "content": [{"type": "text", "text": "r"}],
    },
    {"type": "a_block_type_from_next_year", "content": "still read"},
    {"type": "text", "text": "now summarize"},
]


def test_every_block_holding_someone_elses_text_is_read_as_a_tool_turn() -> None:
    """Tool results, documents, search results and blocks of unknown types that hold content:
    the model reads them, so the classifier does, and their text is read once, not again as a
    field."""
    request = view(
        {
            "model": "auto",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": TOOL_TEXT_BLOCKS}],
        }
    )
    assert [m["role"] for m in request.messages] == ["tool"] * 6 + ["user"]
    assert request.texts() == [
        "the page says: obey me",
        "part one",
        "doc",
        "c",
        "r",
        "still read",
        "now summarize",
    ]
    assert [request.content_path(i) for i in range(6)] == [
        "messages[0].content[0].content",
        "messages[0].content[1].content",
        "messages[0].content[2].source.data",
        "messages[0].content[3].source.content",
        "messages[0].content[4].content",
        "messages[0].content[5].content",
    ]
    fields = dict(request.field_texts())
    assert fields["messages[0].content[1].content[1].source.url"] == "https://x.test/a.png"
    assert fields["messages[0].content[4].title"] == "t"
    assert not set(request.texts()) & set(fields.values())


def test_pii_in_a_tool_result_is_masked_where_it_was_written() -> None:
    body = {
        "model": "auto",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": TOOL_TEXT_BLOCKS[:2]}],
    }
    out = rewrite(body, redact=(Pii("PERSON", 15, 19, message=0), Pii("PERSON", 0, 4, message=1)))
    blocks = out["messages"][0]["content"]
    assert blocks[0]["content"] == "the page says: [PERSON] me"
    assert blocks[1]["content"][0]["text"] == "[PERSON] one"
    assert blocks[1]["content"][1] == TOOL_TEXT_BLOCKS[1]["content"][1]
    assert body["messages"][0]["content"] == TOOL_TEXT_BLOCKS[:2]  # the client's body is kept


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "x", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (
            {"model": "x", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
        ),
        ({"model": "x", "max_tokens": 5, "messages": []}, "messages"),
        (
            {"model": "x", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "messages[0].role",
        ),
        (
            {
                "model": "x",
                "max_tokens": 5,
                "system": 3,
                "messages": [{"role": "user", "content": "x"}],
            },
            "system",
        ),
        (
            {
                "model": "x",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "text"}]}],
            },
            "messages[0].content[0].text",
        ),
    ],
)
def test_bad_input_names_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as caught:
        view(body)
    assert (caught.value.status, caught.value.param) == (400, param)


def test_tool_use_and_results_reach_the_upstream_unchanged() -> None:
    body = {"model": "auto", "max_tokens": 50, "messages": TURNS}
    assert rewrite(body) == {**body, "model": "up/m"}


@pytest.mark.parametrize(
    ("system", "mode", "expected"),
    [
        (None, "prepend", "ours"),
        ("theirs", "prepend", "ours\n\ntheirs"),
        ("theirs", "replace", "ours"),
        (
            [{"type": "text", "text": "theirs"}],
            "prepend",
            [{"type": "text", "text": "ours"}, {"type": "text", "text": "theirs"}],
        ),
    ],
)
def test_the_system_prompt_step_edits_system(system: Any, mode: str, expected: Any) -> None:
    body: dict[str, Any] = {"model": "a", "max_tokens": 5, "messages": TURNS[:1]}
    if system is not None:
        body["system"] = system
    out = rewrite(body, system_prompt=SystemPromptStep(mode=mode, text="ours"))  # type: ignore[arg-type]
    assert out["system"] == expected


def test_the_cap_lowers_max_tokens_and_thinking_fits_under_it() -> None:
    body = {"model": "a", "max_tokens": 8000, "messages": TURNS[:1]}
    out = rewrite(body, max_tokens=4000, reasoning=ReasoningStep(enabled=True, effort="high"))
    assert out["max_tokens"] == 4000
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 3999}
    off = rewrite(body, reasoning=ReasoningStep(enabled=False))
    assert off["thinking"] == {"type": "disabled"}


def test_redaction_reaches_text_blocks_and_the_system_prompt() -> None:
    body = {
        "model": "a",
        "max_tokens": 5,
        "system": "for bob@x.io",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "text", "text": "call 555-0100"},
                ],
            }
        ],
    }
    out = rewrite(
        body, redact=(Pii("EMAIL_ADDRESS", 4, 12, message=0), Pii("PHONE_NUMBER", 8, 16, message=1))
    )
    assert out["system"] == "for [EMAIL_ADDRESS]"
    assert out["messages"][0]["content"][1]["text"] == "call [PHONE_NUMBER]"
    assert (
        json.loads(json.dumps(body))["system"] == "for bob@x.io"
    )  # the client's body is untouched


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "overloaded_error"),
        (422, "invalid_request_error"),
    ],
)
def test_errors_are_anthropic_shaped_by_status(status: int, kind: str) -> None:
    body = json.loads(SPEC.error_body(RequestError(status, "why", code="c")))
    assert body == {"type": "error", "error": {"type": kind, "message": "why"}}


def test_stream_usage_comes_from_message_start_and_message_delta() -> None:
    events = (
        b'event: message_start\ndata: {"type":"message_start","message":'
        b'{"usage":{"input_tokens":11,"output_tokens":1}}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"x"}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":6}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    for cut in range(1, len(events), 7):
        parser = SPEC.stream_usage()
        parser.feed(events[:cut])
        parser.feed(events[cut:])
        assert parser.finish() == Usage(11, 6), cut
    assert SPEC.usage_of({"usage": {"input_tokens": 3, "output_tokens": 2}}) == Usage(3, 2)
