"""The embeddings spec: parse, rewrite, errors, usage."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from meritorder.endpoints import BY_API, Usage
from meritorder.errors import RequestError
from tests.helpers import Pii, spec_rewrite, spec_view

SPEC = BY_API["embeddings"]
view = partial(spec_view, "embeddings")
rewrite = partial(spec_rewrite, "embeddings")


@pytest.mark.parametrize(
    ("given", "texts", "unreadable"),
    [
        ("one", ["one"], False),
        (["a", "b"], ["a", "b"], False),
        ([1, 2], [""], True),
        ([[1], [2]], [""], True),
    ],
)
def test_each_input_string_is_one_message(given: Any, texts: list[str], unreadable: bool) -> None:
    request = view({"model": "e", "input": given})
    assert (request.texts(), request.unreadable, request.max_output_tokens) == (
        texts,
        unreadable,
        0,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"model": "e"},
        {"model": "e", "input": []},
        {"model": "e", "input": [1, "a"]},
        {"model": "e", "input": {}},
    ],
)
def test_bad_input_names_the_field(body: dict[str, Any]) -> None:
    with pytest.raises(RequestError) as caught:
        view(body)
    assert (caught.value.status, caught.value.param) == (400, "input")


def test_a_stream_is_refused() -> None:
    with pytest.raises(RequestError) as caught:
        view({"model": "e", "input": "x", "stream": True})
    assert caught.value.param == "stream"


def test_rewrite_sets_the_model_ignores_a_cap_and_redacts_each_input() -> None:
    body = {"model": "e", "input": ["hi", "mail bob@x.io"], "dimensions": 8}
    out = rewrite(body, max_tokens=5, redact=(Pii("EMAIL_ADDRESS", 5, 13, message=1),))
    assert out == {"model": "up/m", "input": ["hi", "mail [EMAIL_ADDRESS]"], "dimensions": 8}


def test_usage_counts_prompt_tokens_and_no_completion() -> None:
    assert SPEC.usage_of({"usage": {"prompt_tokens": 9, "total_tokens": 9}}) == Usage(9, 0)
