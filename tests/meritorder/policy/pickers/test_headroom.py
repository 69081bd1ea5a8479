"""`pick: headroom`: the candidate furthest from saturated wins; unmeasured ones rank after the
measured, in-flight requests and then the rule's order break ties."""

from __future__ import annotations

import pytest

from meritorder.config import parse_config
from meritorder.policy import PoolState
from meritorder.policy.pickers.headroom import pick_headroom
from meritorder.pool import ModelLoad
from tests.helpers import candidates, pipeline_context

CONFIG = parse_config(
    """
models:
  - {name: a, cluster: a, upstream_model: a, cost: 1,
     metrics_url: http://a/m, saturation: {queue: 10}}
  - {name: b, cluster: b, upstream_model: b, cost: 2,
     metrics_url: http://b/m, saturation: {queue: 2}}
  - {name: c, cluster: c, upstream_model: c, cost: 3}
default_model: a
decisions:
  - {name: fast, when: hi, route: [a, b], pick: headroom, slo: {ttft_ms: 500}}
signals:
  - {name: hi, keywords: [hello]}
"""
)


def fresh(
    waiting: float = 0, kv: float | None = None, ttft: float | None = None, in_flight: int = 0
) -> ModelLoad:
    return ModelLoad(
        replicas=1,
        reachable=1,
        waiting=waiting,
        kv_cache=kv,
        ttft_s=ttft,
        age_s=0.1,
        in_flight=in_flight,
    )


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        ({}, "a"),  # nothing measured: the rule's order
        ({"a": fresh(waiting=5), "b": fresh(waiting=0)}, "b"),
        (
            {"a": fresh(waiting=5), "b": fresh(waiting=1.5)},
            "a",
        ),  # 5/10 beats 1.5/2: thresholds count
        ({"a": fresh(kv=0.9), "b": fresh(kv=0.3)}, "b"),
        ({"a": fresh(), "b": fresh()}, "a"),
        (
            {"a": fresh(in_flight=3), "b": fresh(in_flight=1)},
            "b",
        ),  # equal pressure: fewer in flight
        ({"b": fresh(waiting=1)}, "b"),  # a has no fresh data: unknown ranks after measured
        ({"a": ModelLoad(replicas=1, stale=True), "b": fresh(waiting=1)}, "b"),
    ],
)
def test_the_candidate_with_the_most_headroom_wins(
    load: dict[str, ModelLoad], expected: str
) -> None:
    ctx = pipeline_context(CONFIG, pool=PoolState(load=load))
    assert pick_headroom(ctx, candidates(CONFIG, "a", "b").models).name == expected


def test_a_model_measured_only_by_the_router_ranks_by_its_ttft_under_the_slo() -> None:
    load = {"a": fresh(waiting=4), "c": ModelLoad(ttft_s=0.1)}  # a: 4/10; c: 100 ms of 500
    ctx = pipeline_context(CONFIG, rule="fast", pool=PoolState(load=load))
    assert pick_headroom(ctx, candidates(CONFIG, "a", "c").models).name == "c"


def test_pick_headroom_is_a_valid_pick() -> None:
    assert CONFIG.decisions[0].pick == "headroom"
