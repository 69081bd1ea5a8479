"""The health filter: unhealthy candidates give way to healthy ones."""

from __future__ import annotations

import pytest

from meritorder.config import parse_config
from meritorder.policy import Note, PoolState, Rejection, Survivors
from meritorder.policy.filters.health import HealthFilter
from tests.helpers import candidates, names, pipeline_context

CONFIG = parse_config(
    """
models:
  - {name: a, cluster: a, upstream_model: a, cost: 1}
  - {name: b, cluster: b, upstream_model: b, cost: 2}
  - {name: c, cluster: c, upstream_model: c, cost: 3}
default_model: a
"""
)


@pytest.mark.parametrize(
    ("unhealthy", "expected", "rejected"),
    [
        ((), ("a", "b", "c"), ()),
        (("a",), ("b", "c"), ("a",)),
        (("a", "c"), ("b",), ("a", "c")),
        (("a", "b", "c"), ("a", "b", "c"), ()),  # all failing: tried anyway, and noted
    ],
)
def test_unhealthy_candidates_are_rejected_unless_every_one_is(
    unhealthy: tuple[str, ...], expected: tuple[str, ...], rejected: tuple[str, ...]
) -> None:
    ctx = pipeline_context(CONFIG, pool=PoolState(unhealthy=frozenset(unhealthy)))
    out = HealthFilter().apply(ctx, candidates(CONFIG, "a", "b", "c"))
    assert isinstance(out, Survivors)
    assert names(out) == expected
    assert out.rejected == tuple(Rejection(m, "health", "unhealthy") for m in rejected)
    assert (Note("all_candidates_unhealthy") in out.notes) == (len(unhealthy) == 3)
