"""The router's side of the pool state: decisions read a snapshot of it, dispatches and
outcomes count in flight, and a policy that reads no load sees none."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from meritorder.config import parse_config
from meritorder.outcomes import Outcome
from meritorder.policy import Routed
from meritorder.pool import ModelLoad, PoolMonitor
from meritorder.router import Router
from tests.helpers import chat_view

POLICY = """
models:
  - {name: a, cluster: a, upstream_model: a, cost: 1, metrics_url: http://a/metrics,
     saturation: {queue: 2}}
  - {name: b, cluster: b, upstream_model: b, cost: 1, metrics_url: http://b/metrics,
     saturation: {queue: 2}}
default_model: a
decisions:
  - {name: chat, when: hi, route: [a, b]}
signals:
  - {name: hi, keywords: [hello]}
"""


def waiting(n: int) -> str:
    return f"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting {n}\n"


async def test_a_decision_reads_the_refreshed_pool_state_and_says_so() -> None:
    queues = {"http://a/metrics": 5, "http://b/metrics": 0}

    async def fetch(url: str, timeout_s: float) -> str:
        return waiting(queues[url])

    config = parse_config(POLICY)
    router = Router(config, pool=PoolMonitor(fetch=fetch, clock=lambda: 7.0))  # ages 0
    await router.pool.refresh(config.models)
    moved = await router.route(chat_view("hello"))
    assert isinstance(moved, Routed) and moved.model.name == "b"
    assert "rejected=a:saturated_queue" in moved.reason
    assert "pool=a(queue=5,inflight=0,age=0.0s) b(queue=0,inflight=0,age=0.0s)" in moved.reason
    queues["http://a/metrics"] = 0  # drained
    await router.pool.refresh(config.models)
    back = await router.route(chat_view("hello"))
    assert isinstance(back, Routed) and back.model.name == "a"


async def test_dispatch_and_settle_count_a_models_requests_in_flight() -> None:
    config = parse_config(POLICY)
    router = Router(config)
    decision = await router.route(chat_view("hello"))
    first = await router.dispatch("r1", decision)
    await router.dispatch("r2", decision)
    assert router.pool.snapshot(config.models, 5)["a"].in_flight == 2
    assert first is not None
    await router.settle(Outcome("r1", first, status=200, duration_s=0.5, first_byte_s=0.1))
    load = router.pool.snapshot(config.models, 5)["a"]
    assert (load.in_flight, load.ttft_s, load.duration_s) == (1, 0.1, 0.5)


async def test_a_policy_that_reads_no_load_keeps_its_reasons_as_they_were() -> None:
    config = parse_config(
        POLICY.replace(", metrics_url: http://a/metrics", "").replace(
            ", metrics_url: http://b/metrics", ""
        )
    )
    router = Router(config)
    decision = await router.route(chat_view("hello"))
    assert "pool=" not in decision.reason


async def test_a_model_whose_metrics_cannot_be_read_counts_as_its_on_stale_says() -> None:
    async def fetch(url: str, timeout_s: float) -> str:
        if url == "http://a/metrics":
            raise OSError("connection refused")
        return waiting(0)

    saturated = POLICY.replace(
        "saturation: {queue: 2}}\n  - {name: b",
        "saturation: {queue: 2, on_stale: saturated}}\n  - {name: b",
        1,
    )
    for policy, expected in ((POLICY, "a"), (saturated, "b")):
        config = parse_config(policy)
        router = Router(config, pool=PoolMonitor(fetch=fetch))
        await router.pool.refresh(config.models)
        decision = await router.route(chat_view("hello"))
        assert isinstance(decision, Routed) and decision.model.name == expected
        assert "a(stale(age=never))" in decision.reason


async def test_the_refresh_loop_hands_each_snapshot_on() -> None:
    async def fetch(url: str, timeout_s: float) -> str:
        return waiting(3)

    config = parse_config(POLICY)
    monitor = PoolMonitor(fetch=fetch)
    seen: list[float] = []
    done = asyncio.Event()

    def on_refresh(loads: Mapping[str, ModelLoad]) -> None:
        seen.append(loads["a"].waiting)
        if len(seen) == 2:
            done.set()

    task = asyncio.create_task(
        monitor.run(lambda: config.models, lambda: 0.001, lambda: 5, on_refresh)
    )
    await asyncio.wait_for(done.wait(), 10)
    task.cancel()
    assert seen[:2] == [3, 3]
