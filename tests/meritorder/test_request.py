import json

import pytest

from meritorder import endpoints
from meritorder.config import Api
from meritorder.errors import RequestError
from meritorder.request import RequestView

LIMIT = 1 << 20


def parse(body: object, endpoint: Api = "chat") -> object:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return endpoints.parse(endpoint, raw, max_bytes=LIMIT)


def error_of(body: object, endpoint: Api = "chat") -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse(body, endpoint)
    return caught.value


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"", None, "empty_body"),
        (b"   \n", None, "empty_body"),
        (b"{not json", None, "invalid_json"),
        (b"\xff\xfe", None, "invalid_json"),
        ([1, 2], None, "invalid_body"),
        ("a string", None, "invalid_body"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model", "missing_required_parameter"),
        ({"model": 7, "messages": [{"role": "user", "content": "hi"}]}, "model", "invalid_type"),
        ({"model": "auto"}, "messages", "missing_required_parameter"),
        ({"model": "auto", "messages": []}, "messages", "invalid_type"),
        ({"model": "auto", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "auto", "messages": ["hi"]}, "messages[0]", "invalid_type"),
        ({"model": "auto", "messages": [{"content": "hi"}]}, "messages[0].role", "invalid_value"),
        (
            {"model": "auto", "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        (
            {"model": "auto", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "invalid_type",
        ),
        ({"model": "auto", "messages": [{"role": "user"}]}, "messages[0].content", "invalid_type"),
        (
            {
                "model": "auto",
                "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}],
            },
            "messages[0].content[0].text",
            "invalid_type",
        ),
        (
            {"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
            "stream",
            "invalid_type",
        ),
    ],
)
def test_bad_chat_bodies_are_400_with_the_offending_param(
    body: object, param: str | None, code: str
) -> None:
    error = error_of(body)
    assert error.status == 400
    assert error.param == param
    assert error.code == code
    payload = json.loads(error.to_json())["error"]
    assert payload == {
        "message": error.message,
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    }


def test_body_over_the_limit_is_413() -> None:
    with pytest.raises(RequestError) as caught:
        endpoints.parse("chat", b"x" * 2049, max_bytes=2048)
    assert caught.value.status == 413
    assert "2048" in caught.value.message


def test_completions_need_a_prompt() -> None:
    error = error_of({"model": "auto"}, "completions")
    assert (error.param, error.code) == ("prompt", "missing_required_parameter")


def test_completion_prompt_list_is_joined_for_signals() -> None:
    request = parse({"model": "auto", "prompt": ["a", "b"]}, "completions")
    assert request.prompt_text == "a\nb"  # type: ignore[attr-defined]


def test_text_parts_are_read_and_images_skipped() -> None:
    content = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]
    request = parse({"model": "auto", "messages": [{"role": "user", "content": content}]})
    assert request.last_user_text() == "look"  # type: ignore[attr-defined]


def test_assistant_tool_call_turn_without_content_is_valid() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "content": "sunny", "tool_call_id": "1"},
    ]
    assert parse({"model": "auto", "messages": messages})


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/v1/chat/completions", "chat"),
        ("/v1/chat/completions?x=1", "chat"),
        ("/v1/completions", "completions"),
        ("/v1/embeddings", "embeddings"),
        ("/v1/responses", "responses"),
        ("/v1/messages?beta=true", "messages"),
        ("/v1/completions/", None),
        ("/V1/CHAT/COMPLETIONS", None),
        ("/v1/chat/completionsX", None),
        ("/v1/models", None),
    ],
)
def test_only_the_spec_paths_are_routed(path: str, endpoint: Api | None) -> None:
    spec = endpoints.spec_for("POST", path)
    assert (spec.api if spec else None) == endpoint
    assert endpoints.spec_for("GET", path) is None


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"model": "auto", "temperature": NaN}', "NaN"),
        (b'{"model": "auto", "temperature": Infinity}', "Infinity"),
        (b'{"model": "auto", "temperature": -Infinity}', "-Infinity"),
        (b'{"model": "auto", "temperature": 1e400}', "1e400"),
        (b'{"model": "auto", "seed": ' + b"9" * 5000 + b"}", "digits"),
        (b'{"model": "auto", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "deeper than"),
        (b'{"model": "auto", "x": ' + b"[" * 65 + b"]" * 65 + b"}", "deeper than"),
        (b'{"model": "auto", "messages": [{"role": "user", "content": "\\ud800"}]}', "surrogate"),
        (b'{"model": "auto", "\\udfff": 1}', "surrogate"),
        (b'{"model": "auto", "user": "x\\uDBFFy"}', "surrogate"),  # upper-case hex
        (b'{"model": "auto", "user": "\\\\\\udc00"}', "surrogate"),  # after an escaped \\
        (b'{"model": "auto", "messages": "\xff"}', "UTF-8"),
        ('{"model": "auto"}'.encode("utf-16"), "UTF-8"),
    ],
)
def test_json_that_parsers_read_differently_is_400(raw: bytes, says: str) -> None:
    with pytest.raises(RequestError) as caught:
        endpoints.parse("chat", raw, max_bytes=1 << 20)
    assert (caught.value.status, caught.value.code) == (400, "invalid_json")
    assert says in caught.value.message


def test_brackets_and_escapes_inside_strings_are_text() -> None:
    """Many brackets, or an escaped backslash before `ud800`, in a string are only text."""
    content = "[" * 200 + "{" * 200 + " \\ud800 is how JSON spells a surrogate"
    raw = json.dumps({"model": "auto", "messages": [{"role": "user", "content": content}]})
    request = endpoints.parse("chat", raw.encode(), max_bytes=1 << 20)
    assert request.texts() == [content]


def test_paired_surrogate_escapes_and_moderate_nesting_are_valid() -> None:
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "smile \ud83d\ude00"}],
        "metadata": {"a": [[[[{"b": [1.5, -2e10]}]]]]},
    }
    raw = json.dumps(body).encode()  # ensure_ascii: the emoji travels as a surrogate pair
    assert b"\\ud83d\\ude00" in raw
    request = endpoints.parse("chat", raw, max_bytes=1 << 20)
    assert request.texts() == ["smile \U0001f600"]


@pytest.mark.parametrize(
    "prompt",
    ["one", ["one", "two"], [1, 2, 3], [[1, 2], [3]]],
)
def test_every_completions_prompt_shape_is_accepted(prompt: object) -> None:
    request = parse({"model": "auto", "prompt": prompt}, "completions")
    assert request.api == "completions"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        ([], "got an empty array"),
        ([1, "a"], "got an array holding a number and a string"),
        ([[1], []], "got an array holding an array"),
        ([[1, -2]], "got an array holding an array"),
        ([True], "got an array holding a boolean"),
        (3, "got a number"),
    ],
)
def test_bad_completions_prompts_say_what_is_wrong(prompt: object, says: str) -> None:
    error = error_of({"model": "auto", "prompt": prompt}, "completions")
    assert (error.param, error.code) == ("prompt", "invalid_type")
    assert says in error.message
    assert "required" not in error.message


def test_every_text_bearing_field_is_inspected_with_its_path() -> None:
    body = {
        "model": "auto",
        "user": "u1",
        "metadata": {"note": "n1", "id": 12345678, "small": 42},
        "logit_bias": {"50256": -100},
        "tools": [{"type": "function", "function": {"name": "f", "description": "d1"}}],
        "messages": [
            {"role": "user", "name": "bob", "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "https://x/?q=1"}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ]},
        ],
    }  # fmt: skip
    request = parse(body)
    assert isinstance(request, RequestView)
    inspected = dict(request.inspected_texts())
    assert inspected["messages[0].content"] == "hi"
    for path, text in {
        "user": "u1",
        "metadata.note": "n1",
        "metadata.id": "12345678",
        "tools[0].function.description": "d1",
        "messages[0].name": "bob",
        "messages[0].content[1].image_url.url": "https://x/?q=1",
        "messages[1].tool_calls[0].function.arguments": "{}",
    }.items():
        assert inspected[path] == text
    assert "metadata.small" not in inspected  # short integers are counts and limits, not PII
    # token ids are keys, read like any key: a client may write any digits there
    assert inspected["logit_bias.<key>"] == "50256"


def test_a_key_that_is_not_an_identifier_is_inspected_but_never_named_in_a_path() -> None:
    request = parse({"model": "auto", "metadata": {"jane@example.com": "x"}, "messages": [
        {"role": "user", "content": "hi"}]})  # fmt: skip
    assert isinstance(request, RequestView)
    texts = request.field_texts()
    assert ("metadata.<key>", "jane@example.com") in texts
    assert not [p for p, _ in texts if "@" in p]


def test_the_query_string_is_inspected_as_the_upstream_receives_it_decoded() -> None:
    request = parse({"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert isinstance(request, RequestView)
    request.query = "ref=4111%201111&beta=true&jane%40example.com&empty="
    texts = request.field_texts()
    assert ("query.ref", "4111 1111") in texts
    assert ("query.beta", "true") in texts
    assert ("query.<key>", "jane@example.com") in texts  # a bare key, never named in a path
    assert not [p for p, _ in texts if "@" in p or p == "query.empty"]


def test_a_long_number_with_a_fraction_is_inspected_as_json_writes_it() -> None:
    request = parse({"model": "auto", "metadata": {"card": 4111111111111111.0, "t": 0.7},
                     "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert isinstance(request, RequestView)
    texts = dict(request.field_texts())
    assert texts["metadata.card"] == "4111111111111111.0"
    assert "metadata.t" not in texts
