"""The privacy boundaries: what they name never reaches an external model."""

from __future__ import annotations

from dataclasses import replace

import pytest

from meritorder.config import parse_config
from meritorder.policy import Block, Note, Rejection, Steps, Survivors
from meritorder.policy.filters.boundaries import BoundariesFilter
from tests.helpers import Pii, candidates, chat_view, names, pipeline_context, signals_of

POLICY = """
models:
  - {name: local, cluster: a, upstream_model: l, cost: 1}
  - {name: gpt, cluster: b, upstream_model: g, cost: 10, boundary: external}
  - {name: tiny, cluster: c, upstream_model: t, cost: 0.5}
default_model: local
boundaries:
  - {name: cards, pii_types: [CREDIT_CARD], action: %s}
"""
CARD = Pii("CREDIT_CARD", 0, 16)
EMAIL = Pii("EMAIL_ADDRESS", 0, 5)


@pytest.mark.parametrize(
    ("action", "given", "found", "expected"),
    [
        ("reroute", ("gpt", "local"), (CARD,), ("local",)),
        ("reroute", ("gpt",), (CARD,), ("tiny",)),  # the cheapest private model
        ("reroute", ("gpt",), (EMAIL,), ("gpt",)),  # not a type it keeps inside
        ("reroute", ("gpt",), (), ("gpt",)),
        ("block", ("gpt",), (CARD,), 403),
        ("block", ("gpt", "local"), (CARD,), ("local",)),  # a private candidate: no need to block
        ("block", ("local",), (CARD,), ("local",)),
    ],
)
def test_pii_a_boundary_names_stays_inside(
    action: str, given: tuple[str, ...], found: tuple[object, ...], expected: tuple[str, ...] | int
) -> None:
    config = parse_config(POLICY % action)
    ctx = pipeline_context(config, classified=signals_of(pii=found))  # type: ignore[arg-type]
    assert names(BoundariesFilter().apply(ctx, candidates(config, *given))) == expected


def test_a_rejection_names_the_boundary_and_what_it_held() -> None:
    config = parse_config(POLICY % "reroute")
    ctx = pipeline_context(config, classified=signals_of(pii=(CARD,)))
    out = BoundariesFilter().apply(ctx, candidates(config, "gpt", "local"))
    assert isinstance(out, Survivors)
    assert out.rejected == (Rejection("gpt", "boundaries", "boundary", "cards", ("CREDIT_CARD",)),)


def test_a_block_notes_the_boundary_as_detected() -> None:
    config = parse_config(POLICY % "block")
    ctx = pipeline_context(config, classified=signals_of(pii=(CARD,)))
    out = BoundariesFilter().apply(ctx, candidates(config, "gpt"))
    assert isinstance(out, Block)
    assert (out.code, out.notes) == ("boundary_blocked", (Note("boundary", "cards", True),))


def test_redacted_pii_may_leave() -> None:
    config = parse_config(POLICY % "block")
    ctx = pipeline_context(config, classified=signals_of(pii=(CARD,)))
    masked = replace(candidates(config, "gpt"), steps=Steps(redact=(CARD,)))
    assert names(BoundariesFilter().apply(ctx, masked)) == ("gpt",)


def test_text_the_router_cannot_read_stays_inside() -> None:
    config = parse_config(POLICY % "reroute")
    tokens = chat_view(api="completions", prompt=[[1, 2, 3]])  # token ids: unreadable
    out = BoundariesFilter().apply(pipeline_context(config, tokens), candidates(config, "gpt"))
    assert isinstance(out, Survivors) and names(out) == ("tiny",)
    assert out.rejected[0].detected == ("UNREADABLE",)
