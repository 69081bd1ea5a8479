"""A decision's explanation: structured rejections and notes, rendered for logs and clients."""

from __future__ import annotations

import pytest

from meritorder.config import parse_config
from meritorder.policy import Blocked, Note, Rejection, Routed, blocked, routed

CONFIG = parse_config(
    """
models: [{name: local, cluster: a, upstream_model: l, cost: 1}]
default_model: local
"""
)
LOCAL = CONFIG.models[0]


@pytest.mark.parametrize(
    ("rejection", "full", "minimal"),
    [
        (Rejection("coder", "health", "unhealthy"), "coder:unhealthy", "coder:unhealthy"),
        (
            Rejection("gpt", "pii", "pii", detected=("EMAIL_ADDRESS",)),
            "gpt:pii:EMAIL_ADDRESS",
            "gpt:pii",
        ),
        (
            Rejection("gpt", "boundaries", "boundary", "cards", ("CREDIT_CARD", "US_SSN")),
            "gpt:boundary=cards:CREDIT_CARD,US_SSN",
            "gpt:boundary",
        ),
        (
            Rejection("embed", "api", "unsupported_api"),
            "embed:unsupported_api",
            "embed:unsupported_api",
        ),
    ],
)
def test_a_rejection_hides_what_was_detected_only_from_the_client(
    rejection: Rejection, full: str, minimal: str
) -> None:
    assert (rejection.render(full=True), rejection.render(full=False)) == (full, minimal)


@pytest.mark.parametrize(
    ("note", "full", "minimal"),
    [
        (Note("fallback", "timeout"), "fallback=timeout", "fallback=timeout"),
        (Note("all_candidates_unhealthy"), "all_candidates_unhealthy", "all_candidates_unhealthy"),
        (Note("pii", "US_SSN", detected=True), "pii=US_SSN", "pii"),
    ],
)
def test_a_note_hides_what_was_detected_only_from_the_client(
    note: Note, full: str, minimal: str
) -> None:
    assert (note.render(full=True), note.render(full=False)) == (full, minimal)


def test_the_reason_renders_rule_signals_model_rejections_and_notes() -> None:
    decision = Routed(
        rule="private",
        model=LOCAL,
        fired={"personal": 0.91, "code": 1.0},
        rejected=(Rejection("gpt", "pii", "pii", detected=("EMAIL_ADDRESS",)),),
        notes=(Note("budget", "step_down(1)"),),
        hidden_signals=frozenset({"personal"}),
    )
    assert decision.reason == (
        "decision=private; signals=code:1.00,personal:0.91; model=local; "
        "rejected=gpt:pii:EMAIL_ADDRESS; budget=step_down(1)"
    )
    assert decision.client_reason == (
        "decision=private; signals=code:1.00; model=local; rejected=gpt:pii; budget=step_down(1)"
    )


def test_a_block_and_a_route_carry_the_explanation_across() -> None:
    route = Routed(
        rule="code", model=LOCAL, matched=("code",), notes=(Note("classifier", "timeout"),)
    )
    block = blocked(route, 503, "later", code="signals_unavailable", rule="signals_unavailable")
    assert isinstance(block, Blocked) and block.chosen is None
    assert (block.rule, block.matched, block.notes, block.status) == (
        "signals_unavailable",
        ("code",),
        route.notes,
        503,
    )
    again = routed(block, LOCAL, rule="safe")
    assert isinstance(again, Routed) and (again.rule, again.model, again.notes) == (
        "safe",
        LOCAL,
        route.notes,
    )
