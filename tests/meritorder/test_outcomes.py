"""The outcome store's rules, which the in-memory and the Redis stores share, and the router's
feedback seam: unknown and foreign requests are 404s, a second verdict is a 409."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from meritorder.config import RouterConfig
from meritorder.errors import RequestError
from meritorder.outcomes import (
    Feedback,
    InMemoryOutcomes,
    Outcome,
    OutcomeStore,
    Pending,
    StoreUnavailable,
)
from meritorder.outcomes_redis import RedisOutcomes
from meritorder.router import Router
from tests.helpers import RedisServer


def pending(model: str = "small", tenant: str = "", at: float = 1.0) -> Pending:
    return Pending(model, "default", 1.0, 0.001, tenant, 60 if tenant else 0, "", at)


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[OutcomeStore]:
    if request.param == "memory":
        yield InMemoryOutcomes()
        return
    shared = RedisOutcomes(redis_server.url, timeout_s=5)
    yield shared
    await shared.close()


async def settle_writes(store: OutcomeStore) -> None:
    if isinstance(store, RedisOutcomes):  # decisions are written off the request path
        await store.close()


async def test_the_first_decision_under_an_id_keeps_it(store: OutcomeStore) -> None:
    first, reused = Outcome("r1", pending("small")), Outcome("r1", pending("large", at=2.0))
    await store.add(first)
    await settle_writes(store)
    await store.add(reused)  # a client that sends another request with the same x-request-id
    await settle_writes(store)
    assert await store.get("r1") == first


async def test_an_outcome_settles_only_the_decision_it_carries(store: OutcomeStore) -> None:
    await store.add(Outcome("r1", pending("small")))
    await settle_writes(store)
    await store.add(Outcome("r1", pending("large", at=2.0), status=200))  # not r1's decision
    assert (await store.get("r1")).status is None  # type: ignore[union-attr]
    settled = Outcome("r1", pending("small"), status=200, response_id="chatcmpl-1")
    await store.add(settled)
    assert await store.get("r1") == settled
    assert await store.get("chatcmpl-1") == settled  # named by the answer's id too
    await store.add(Outcome("r1", pending("small"), status=500))  # a second report: ignored
    assert await store.get("r1") == settled


async def test_each_request_takes_one_verdict(store: OutcomeStore) -> None:
    outcome = Outcome("r1", pending(), status=200)
    await store.add(outcome)
    assert await store.add_feedback(outcome, Feedback("r1", 1.0))
    assert not await store.add_feedback(outcome, Feedback("r1", 0.0))


async def test_an_unknown_request_has_no_outcome(store: OutcomeStore) -> None:
    assert await store.get("nope") is None


async def test_two_redis_stores_see_one_record(redis_server: RedisServer) -> None:
    """Two routers: one stores the decision, the other settles it and takes its feedback."""
    one, two = (RedisOutcomes(redis_server.url, timeout_s=5) for _ in range(2))
    await one.add(Outcome("r7", pending()))
    await one.close()
    settled = Outcome("r7", pending(), status=200)
    await two.add(settled)
    assert await two.get("r7") == settled
    assert await two.add_feedback(settled, Feedback("r7", 1.0))
    await two.close()


async def test_memory_outcomes_expire_and_stay_bounded() -> None:
    now = [0.0]
    store = InMemoryOutcomes(capacity=2, ttl_s=10, clock=lambda: now[0])
    for request_id in ("a", "b", "c"):
        await store.add(Outcome(request_id, pending()))
    assert await store.get("a") is None and len(store) == 2  # the oldest went first
    assert await store.get("b") is not None
    now[0] = 11.0
    assert await store.get("b") is None  # expired


# -- the router's feedback seam ------------------------------------------------------------------


async def routed(router: Router, request_id: str, tenant: str = "") -> Outcome:
    outcome = Outcome(request_id, pending("small", tenant), status=200)
    await router.settle(outcome)
    return outcome


async def test_feedback_names_what_it_was_recorded_against(demo_config: RouterConfig) -> None:
    router = Router(demo_config)
    await routed(router, "r1")
    outcome = await router.feedback(Feedback("r1", 1.0), {})
    assert outcome.pending.model == "small"


async def test_feedback_for_an_unknown_request_is_a_404(demo_config: RouterConfig) -> None:
    with pytest.raises(RequestError) as caught:
        await Router(demo_config).feedback(Feedback("nope", 1.0), {})
    assert (caught.value.status, caught.value.code) == (404, "unknown_request")


async def test_a_second_verdict_is_a_409(demo_config: RouterConfig) -> None:
    router = Router(demo_config)
    await routed(router, "r1")
    await router.feedback(Feedback("r1", 1.0), {})
    with pytest.raises(RequestError) as caught:
        await router.feedback(Feedback("r1", 0.0), {})
    assert (caught.value.status, caught.value.code) == (409, "feedback_exists")


TENANTS = RouterConfig.model_validate(
    {
        "models": [{"name": "small", "cluster": "mock-small", "upstream_model": "s", "cost": 1}],
        "default_model": "small",
        "budgets": {"window_s": 60, "default_limit": 1.0},
    }
)


async def test_a_tenant_cannot_judge_another_tenants_request() -> None:
    router = Router(TENANTS)
    header = TENANTS.budgets.header  # type: ignore[union-attr]
    await routed(router, "r1", tenant="acme")
    with pytest.raises(RequestError) as caught:
        await router.feedback(Feedback("r1", 0.0), {header: "globex"})
    assert caught.value.status == 404  # indistinguishable from an unknown request
    await router.feedback(Feedback("r1", 1.0), {header: "acme"})


class _DownStore(InMemoryOutcomes):
    async def get(self, request_id: str) -> Any:
        raise StoreUnavailable("connection refused")


async def test_an_unreachable_store_makes_feedback_a_503(demo_config: RouterConfig) -> None:
    router = Router(demo_config, outcomes=_DownStore())
    with pytest.raises(RequestError) as caught:
        await router.feedback(Feedback("r1", 1.0), {})
    assert (caught.value.status, caught.value.code) == (503, "store_unavailable")
