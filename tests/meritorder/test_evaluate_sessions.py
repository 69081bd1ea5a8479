"""`meritorder eval` on conversations: switches per session, decided turn by turn in file order."""

from __future__ import annotations

import pytest

from meritorder import evaluate
from meritorder.config import parse_config
from meritorder.router import Router

POLICY = """
models:
  - {name: large, cluster: large, upstream_model: large, cost: 3}
  - {name: small, cluster: small, upstream_model: small, cost: 1}
default_model: small
signals:
  - {name: premium, type: header, header: x-tier}
decisions:
  - {name: premium, priority: 50, when: premium, route: [large]}
"""
SESSIONS = POLICY + "sessions: {key: ['header:x-session-id']}\n"


def turn(session: str, text: str, **headers: str) -> dict[str, object]:
    return {
        "text": text,
        "headers": {"x-session-id": session, **headers},
        "correct": {"large": 1, "small": 0},
    }


# Two conversations: each starts on the premium tier and then asks without it.
ROWS = [
    turn("a", "hello", **{"x-tier": "gold"}),
    turn("b", "hi", **{"x-tier": "gold"}),
    turn("a", "more"),
    turn("b", "more"),
    turn("a", "and more"),
]


@pytest.mark.parametrize(
    ("policy", "switches", "most"),
    [(POLICY, 2, 1), (SESSIONS, 0, 0)],  # without sessions each conversation falls to small
)
async def test_eval_counts_model_switches_per_session(
    policy: str, switches: int, most: int
) -> None:
    report = await evaluate.evaluate(
        Router(parse_config(policy), enforce_timeout=False), ROWS, None
    )
    assert report.sessions is not None
    assert report.sessions.to_json() == {
        "sessions": 2,
        "turns": 5,
        "switches": switches,
        "switches_per_session": switches / 2,
        "most_switches": most,
    }
    assert "sessions" in report.to_json() and "switches per session" in report.table()


def test_rows_that_name_no_session_report_none() -> None:
    assert evaluate.session_switches([{"text": "x"}], ["small"]) is None


def test_a_session_named_by_a_field_or_a_header_counts_each_change() -> None:
    rows = [
        {"session": "s"},
        {"headers": {"x-session-id": "s"}},
        {"session": "s"},
        {"session": "t"},
    ]
    found = evaluate.session_switches(rows, ["a", "b", "b", "a"])  # type: ignore[arg-type]
    assert found == evaluate.Sessions(sessions=2, turns=4, switches=1, most=1)
