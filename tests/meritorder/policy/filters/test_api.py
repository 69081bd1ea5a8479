"""The API filter: a model is only chosen for the APIs its upstream serves."""

from __future__ import annotations

import pytest

from meritorder.config import parse_config
from meritorder.policy import Block, Rejection, Survivors
from meritorder.policy.filters.api import ApiFilter
from tests.helpers import candidates, chat_view, names, pipeline_context

MODELS = """
models:
  - {name: small, cluster: a, upstream_model: s, cost: 1}
  - {name: big, cluster: b, upstream_model: b, cost: 3}
  - {name: embed, cluster: c, upstream_model: e, cost: 0.1, apis: [embeddings]}
  - {name: both, cluster: d, upstream_model: d, cost: 5, apis: [chat, embeddings]}
default_model: small
"""
CHAT_ONLY = """
models:
  - {name: small, cluster: a, upstream_model: s, cost: 1}
default_model: small
"""


@pytest.mark.parametrize(
    ("api", "model", "given", "expected"),
    [
        ("chat", "auto", ("big", "small"), ("big", "small")),  # all serve it: unchanged
        ("completions", "auto", ("small",), ("small",)),
        ("embeddings", "auto", ("big", "embed"), ("embed",)),  # the others rejected
        ("embeddings", "auto", ("big", "both"), ("both",)),
        ("embeddings", "auto", ("big",), ("embed",)),  # none left: the cheapest that serves it
        ("chat", "auto", ("embed",), ("small",)),
        ("embeddings", "embed", ("embed",), ("embed",)),
        ("embeddings", "big", ("big",), 400),  # an explicit model that cannot: refused
        ("chat", "embed", ("embed",), 400),
    ],
)
def test_only_models_serving_the_requests_api_survive(
    api: str, model: str, given: tuple[str, ...], expected: tuple[str, ...] | int
) -> None:
    config = parse_config(MODELS)
    ctx = pipeline_context(config, chat_view(model=model, api=api))
    assert names(ApiFilter().apply(ctx, candidates(config, *given))) == expected


def test_each_model_taken_out_is_rejected_by_the_api_filter() -> None:
    config = parse_config(MODELS)
    out = ApiFilter().apply(
        pipeline_context(config, chat_view(api="embeddings")), candidates(config, "small", "big")
    )
    assert isinstance(out, Survivors)
    assert out.rejected == (
        Rejection("small", "api", "unsupported_api"),
        Rejection("big", "api", "unsupported_api"),
    )


@pytest.mark.parametrize("model", ["auto", "small"])
def test_an_api_no_model_serves_is_refused_naming_the_api_and_the_fix(model: str) -> None:
    config = parse_config(CHAT_ONLY)
    out = ApiFilter().apply(
        pipeline_context(config, chat_view(model=model, api="embeddings")),
        candidates(config, "small"),
    )
    assert isinstance(out, Block)
    assert (out.status, out.code) == (400, "unsupported_api")
    assert "embeddings API" in out.message and "apis" in out.message
