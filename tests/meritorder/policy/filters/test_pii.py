"""The decision's PII step: block, redact, or keep private what the pii signals found."""

from __future__ import annotations

from dataclasses import replace

import pytest

from meritorder.config import parse_config
from meritorder.policy import Block, Note, Rejection, Survivors
from meritorder.policy.filters.pii import PiiFilter
from tests.helpers import Pii, candidates, names, pipeline_context, signals_of

CONFIG = parse_config(
    """
models:
  - {name: local, cluster: a, upstream_model: l, cost: 1}
  - {name: gpt, cluster: b, upstream_model: g, cost: 10, boundary: external}
  - {name: tiny, cluster: c, upstream_model: t, cost: 0.5}
default_model: local
signals:
  - {name: personal, type: pii, pii_types: [EMAIL_ADDRESS]}
decisions:
  - {name: refuse, when: personal, route: [gpt], pii: block}
  - {name: mask, when: personal, route: [gpt], pii: redact}
  - {name: inside, when: personal, route: [gpt, local], pii: private}
  - {name: outside, when: personal, route: [gpt]}
"""
)
EMAIL = Pii("EMAIL_ADDRESS", 0, 5)
PHONE = Pii("PHONE_NUMBER", 0, 5)  # not a type the pii signal looks for
IN_TOOL_ARGS = replace(Pii("EMAIL_ADDRESS", 0, 5, message=None), field="tools[0].function")


@pytest.mark.parametrize(
    ("rule", "found", "expected"),
    [
        ("refuse", (EMAIL,), 403),
        ("refuse", (PHONE,), ("gpt",)),  # nothing the signals act on
        ("refuse", (), ("gpt",)),
        ("mask", (EMAIL,), ("gpt",)),  # masked: may leave
        ("inside", (EMAIL,), ("local",)),
        ("inside", (), ("gpt", "local")),
        ("outside", (EMAIL,), ("gpt",)),  # no pii step: the boundaries decide
    ],
)
def test_the_decisions_pii_step_acts_on_what_its_signals_found(
    rule: str, found: tuple[object, ...], expected: tuple[str, ...] | int
) -> None:
    route = next(d.route for d in CONFIG.decisions if d.name == rule)
    ctx = pipeline_context(CONFIG, rule=rule, classified=signals_of(pii=found))  # type: ignore[arg-type]
    assert names(PiiFilter().apply(ctx, candidates(CONFIG, *route))) == expected


def test_a_block_notes_the_types_as_detected() -> None:
    ctx = pipeline_context(CONFIG, rule="refuse", classified=signals_of(pii=(EMAIL,)))
    out = PiiFilter().apply(ctx, candidates(CONFIG, "gpt"))
    assert isinstance(out, Block)
    assert (out.code, out.notes) == ("pii_blocked", (Note("pii", "EMAIL_ADDRESS", True),))
    assert "EMAIL_ADDRESS" not in out.message  # reason_detail minimal


def test_redact_masks_message_text_and_keeps_what_it_cannot_mask_private() -> None:
    ctx = pipeline_context(CONFIG, rule="mask", classified=signals_of(pii=(EMAIL, IN_TOOL_ARGS)))
    out = PiiFilter().apply(ctx, candidates(CONFIG, "gpt"))
    assert isinstance(out, Survivors)
    assert out.steps.redact == (EMAIL,)
    # No private candidate: the cheapest private model of the config takes the request.
    assert names(out) == ("tiny",)
    assert out.rejected == (Rejection("gpt", "pii", "pii", detected=("EMAIL_ADDRESS",)),)
