"""`pick: scored`: the pool state's highest score wins; unscored is 0, ties keep the order."""

from __future__ import annotations

import pytest

from meritorder.config import parse_config
from meritorder.policy import PoolState
from meritorder.policy.pickers.scored import pick_scored
from tests.helpers import candidates, pipeline_context

CONFIG = parse_config(
    """
models:
  - {name: a, cluster: a, upstream_model: a, cost: 1}
  - {name: b, cluster: b, upstream_model: b, cost: 2}
default_model: a
"""
)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({}, "a"),
        ({"b": 0.7}, "b"),
        ({"a": 0.2, "b": 0.7}, "b"),
        ({"a": 0.9, "b": 0.7}, "a"),
        ({"a": 0.5, "b": 0.5}, "a"),
        ({"a": -1.0}, "b"),  # below unscored
    ],
)
def test_the_highest_scored_survivor_wins(scores: dict[str, float], expected: str) -> None:
    ctx = pipeline_context(CONFIG, pool=PoolState(scores=scores))
    assert pick_scored(ctx, candidates(CONFIG, "a", "b").models).name == expected
