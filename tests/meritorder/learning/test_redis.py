"""Learned estimates in a real redis-server: the same numbers as the local stores, no update
lost under concurrent replicas, and a Redis that goes away handled as configured."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from meritorder import telemetry
from meritorder.learning.config import HalfLife
from meritorder.learning.redis import RedisEstimates
from meritorder.learning.store import Detect, InMemoryEstimates, Rules
from tests.helpers import (
    IDLE_STREAM,
    RedisServer,
    assert_same_estimates,
    feed_relative,
)


async def test_redis_estimates_match_the_in_memory_arithmetic(redis_server: RedisServer) -> None:
    shared, local = RedisEstimates(redis_server.url, timeout_s=5), InMemoryEstimates()
    half = HalfLife(value=3)
    for store in (shared, local):
        for model, reward in [("a", 1.0), ("b", 0.25), ("a", 0.0), ("m:odel", 1.0), ("a", 0.5)]:
            await store.observe("decision:x", model, reward, Rules(half))
        await store.note_pick("decision:x", explored=True)
    got = (await shared.read(["decision:x"]))["decision:x"]
    want = (await local.read(["decision:x"]))["decision:x"]
    assert got.clock == want.clock == 5 and got.picks == 1 and got.explored == 1
    assert set(got.arms) == {"a", "b", "m:odel"}
    for model, arm in want.arms.items():
        assert got.arms[model].wins == pytest.approx(arm.wins)
        assert got.arms[model].losses == pytest.approx(arm.losses)
        assert got.arms[model].clock == arm.clock
    await shared.close()


async def test_redis_runs_the_change_detector_and_its_reset_like_the_local_stores(
    redis_server: RedisServer,
) -> None:
    shared, local = RedisEstimates(redis_server.url, timeout_s=5), InMemoryEstimates()
    detect = Detect(threshold=3, drift=0.05, keep=5, weight=20, priors={"a": 0.8, "m:odel": 0.3})
    fired: dict[str, list[bool]] = {"shared": [], "local": []}
    for name, store in (("shared", shared), ("local", local)):
        for row, reward in enumerate([1.0] * 30 + [0.0] * 10 + [1.0] * 10):
            model = "a" if row % 4 else ("b" if row % 8 else "m:odel")
            fired[name].append(
                await store.observe("decision:x", model, reward, Rules(HalfLife(value=40), detect))
            )
    assert fired["shared"] == fired["local"] and sum(fired["shared"]) >= 1
    got = (await shared.read(["decision:x"]))["decision:x"]
    want = (await local.read(["decision:x"]))["decision:x"]
    assert (got.clock, got.resets, got.reset_clock) == (want.clock, want.resets, want.reset_clock)
    assert got.prior_scale == pytest.approx(want.prior_scale)
    assert set(got.arms) == set(want.arms) == {"a", "b", "m:odel"}
    for model, arm in want.arms.items():
        mine = got.arms[model]
        assert (mine.wins, mine.losses) == (pytest.approx(arm.wins), pytest.approx(arm.losses))
        assert (mine.up, mine.down) == (pytest.approx(arm.up), pytest.approx(arm.down))
        assert mine.clock == arm.clock
    await shared.close()


async def test_redis_keeps_the_relative_models_level_and_offsets_like_the_local_stores(
    redis_server: RedisServer,
) -> None:
    shared, local = RedisEstimates(redis_server.url, timeout_s=5), InMemoryEstimates()
    fired = {"shared": await feed_relative(shared), "local": await feed_relative(local)}
    assert fired["shared"] == fired["local"] and sum(fired["shared"]) >= 1
    got = (await shared.read(["decision:r"]))["decision:r"]
    want = (await local.read(["decision:r"]))["decision:r"]
    assert got.level is not None and want.level is not None
    assert_same_estimates(got, want)
    assert (await shared.read(["decision:new"]))["decision:new"].level is None
    await shared.close()


async def test_redis_resets_an_idle_arm_to_less_evidence_like_the_local_stores(
    redis_server: RedisServer,
) -> None:
    shared = RedisEstimates(redis_server.url, timeout_s=5)
    want = IDLE_STREAM.want()
    assert sum(await IDLE_STREAM.feed(shared)) == want.resets == 1
    got = (await shared.read(["decision:i"]))["decision:i"]
    assert_same_estimates(got, want)
    assert {m: a.clock for m, a in got.arms.items()} == {m: a.clock for m, a in want.arms.items()}
    await shared.close()


async def test_concurrent_replicas_lose_no_observation(redis_server: RedisServer) -> None:
    replicas = [RedisEstimates(redis_server.url, timeout_s=5) for _ in range(4)]

    async def load(replica: RedisEstimates) -> None:
        # One connection a replica (the test server allows few clients); the replicas interleave.
        for i in range(100):
            await replica.observe("decision:x", "a", 1.0)
            if i % 4 == 0:
                await replica.note_pick("decision:x", explored=False)

    await asyncio.gather(*(load(r) for r in replicas))
    ctx = (await replicas[0].read(["decision:x"]))["decision:x"]
    assert ctx.clock == 400 and ctx.arms["a"].wins == pytest.approx(400) and ctx.picks == 100
    for r in replicas:
        await r.close()


async def test_an_unreachable_redis_falls_back_to_local_estimates_and_counts_it(
    redis_server: RedisServer,
) -> None:
    store = RedisEstimates(redis_server.url, fallback=InMemoryEstimates(), timeout_s=2)
    await store.observe("c", "a", 1.0)
    redis_server.stop()
    counter = telemetry.METRICS.learning_store_fallbacks.labels(op="observe", to="local")
    before = counter._value.get()
    await store.observe("c", "a", 0.0)  # learned here, in this process, meanwhile
    assert counter._value.get() == before + 1
    assert (await store.read(["c"]))["c"].arms["a"].losses == 1.0  # the local copy
    await store.close()


async def test_without_a_fallback_an_unreachable_redis_raises(redis_server: RedisServer) -> None:
    store = RedisEstimates(redis_server.url, timeout_s=2)
    redis_server.stop()
    with pytest.raises((RedisConnectionError, OSError)):
        await store.read(["c"])
    await store.close()
