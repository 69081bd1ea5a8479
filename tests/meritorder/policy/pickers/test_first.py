"""`pick: first`: the rule's order decides."""

from __future__ import annotations

import pytest

from meritorder.config import parse_config
from meritorder.policy.pickers.first import pick_first
from tests.helpers import candidates, pipeline_context

CONFIG = parse_config(
    """
models:
  - {name: cheap, cluster: a, upstream_model: a, cost: 1}
  - {name: dear, cluster: b, upstream_model: b, cost: 9}
default_model: cheap
"""
)


@pytest.mark.parametrize(
    ("order", "expected"),
    [(("cheap", "dear"), "cheap"), (("dear", "cheap"), "dear"), (("dear",), "dear")],
)
def test_the_first_survivor_wins(order: tuple[str, ...], expected: str) -> None:
    assert pick_first(pipeline_context(CONFIG), candidates(CONFIG, *order).models).name == expected
