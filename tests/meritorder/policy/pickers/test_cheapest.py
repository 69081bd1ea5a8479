"""`pick: cheapest`: the lowest cost wins; the rule's order breaks ties."""

from __future__ import annotations

import pytest

from meritorder.config import parse_config
from meritorder.policy.pickers.cheapest import pick_cheapest
from tests.helpers import candidates, pipeline_context

CONFIG = parse_config(
    """
models:
  - {name: one, cluster: a, upstream_model: a, cost: 1}
  - {name: also-one, cluster: b, upstream_model: b, cost: 1}
  - {name: nine, cluster: c, upstream_model: c, cost: 9}
default_model: one
"""
)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (("nine", "one"), "one"),
        (("one", "nine"), "one"),
        (("also-one", "one", "nine"), "also-one"),  # a tie: the earlier one
        (("one", "also-one"), "one"),
        (("nine",), "nine"),
    ],
)
def test_the_cheapest_survivor_wins(order: tuple[str, ...], expected: str) -> None:
    models = candidates(CONFIG, *order).models
    assert pick_cheapest(pipeline_context(CONFIG), models).name == expected
