"""Budgets: the store's atomic reserve, the policy's fit check, and the router deciding and
reserving in one step so that concurrent requests cannot together spend past a ceiling."""

from __future__ import annotations

import asyncio
import json

import pytest

from meritorder import telemetry
from meritorder.budget import InMemoryBudgetStore, Reservation, Window
from meritorder.config import RouterConfig, parse_config
from meritorder.endpoints import BY_API, parse
from meritorder.policy import Decision, Note, Observation, PoolState, Routed, decide
from meritorder.request import RequestView
from meritorder.router import Router
from meritorder.tenant import UNVERIFIED
from tests.helpers import BUDGET_POLICY, TENANT_HEADER, StalledBudgetStore


@pytest.fixture
def config() -> RouterConfig:
    return parse_config(BUDGET_POLICY)


def premium() -> RequestView:
    body = {"model": "large", "max_tokens": 999, "messages": [{"role": "user", "content": "hi"}]}
    return parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)


def decision(config: RouterConfig, spent: float, headers: dict[str, str] | None = None) -> Decision:
    return decide(config, Observation(premium(), headers or {}), PoolState(tenant_spent=spent))


def model_of(decision: Decision) -> str | int:
    return decision.chosen.name if decision.chosen else decision.status


async def test_a_reservation_is_added_only_if_it_fits_the_limit() -> None:
    store = InMemoryBudgetStore()
    fills = [await store.reserve(Window("acme", 60, 0), 0.003, 0.009) for _ in range(4)]
    # Three costs of 0.003 exactly fill 0.009, despite float rounding; the fourth does not fit.
    assert [r.fitted for r in fills] == [True, True, True, False]
    assert fills[-1] == Reservation(False, pytest.approx(0.009))
    assert await store.spent(Window("acme", 60, 0)) == pytest.approx(0.009)
    assert (await store.reserve(Window("acme", 60, 0), 5.0, None)).fitted  # no limit: always fits


async def test_a_settlement_replaces_the_reservation_and_windows_are_separate() -> None:
    store = InMemoryBudgetStore()
    await store.reserve(Window("acme", 60, 10), 0.004, 0.005)
    await store.settle(Window("acme", 60, 10), 0.004, 0.001)  # measured cheaper than estimated
    assert await store.spent(Window("acme", 60, 10)) == pytest.approx(0.001)
    assert await store.spent(Window("acme", 60, 70)) == 0.0  # the next window starts empty
    assert await store.spent(Window("globex", 60, 10)) == 0.0


def test_a_request_goes_to_a_model_only_if_its_cost_fits_what_is_left(
    config: RouterConfig,
) -> None:
    acme = {TENANT_HEADER: "acme"}
    assert model_of(decision(config, 0.006, acme)) == "large"  # 0.006 + 0.003 fits 0.009
    stepped = decision(config, 0.0061, acme)  # not fully spent, but this request would overspend
    assert model_of(stepped) == "small"
    assert Note("budget", "step_down(0.009)") in stepped.notes
    assert stepped.budget_limit is None  # no hard limit: stepped-down spending is unbounded


def test_past_the_hard_limit_a_stepped_down_request_gets_429(config: RouterConfig) -> None:
    hard = parse_config(BUDGET_POLICY.replace("[small]", "[small]\n  hard_limit_ratio: 2"))
    acme = {TENANT_HEADER: "acme"}
    stepped = decision(hard, 0.017, acme)  # 0.017 + 0.001 fits the hard limit of 0.018
    assert (model_of(stepped), stepped.budget_limit) == ("small", pytest.approx(0.018))
    refused = decision(hard, 0.0171, acme)
    assert (refused.status, refused.code, refused.error_type) == (
        429,
        "budget_exhausted",
        "rate_limit_error",
    )


def test_requests_without_a_verified_tenant_share_the_unverified_budget(
    config: RouterConfig,
) -> None:
    for headers in ({}, {"x-tenant": "acme"}, {TENANT_HEADER: "not a name"}):
        fresh = decision(config, 0.0, headers)
        assert (fresh.tenant, model_of(fresh), fresh.budget_limit) == (UNVERIFIED, "large", 0.003)
        spent = decision(config, 0.003, headers)
        assert model_of(spent) == "small"
        rejected = parse_config(
            BUDGET_POLICY.replace("step_down_to: [small]", "on_exhausted: reject")
        )
        refused = decision(rejected, 0.003, headers)
        assert refused.status == 429
        assert refused.message.startswith("Requests without a verified tenant have no budget")


def test_unverified_requests_are_refused_with_401_when_configured() -> None:
    config = parse_config(BUDGET_POLICY.replace("unverified_limit: 0.003", "unverified: refuse"))
    refused = decision(config, 0.0)
    assert (refused.action, refused.status, refused.code, refused.error_type) == (
        "block",
        401,
        "tenant_required",
        "authentication_error",
    )
    assert model_of(decision(config, 0.0, {TENANT_HEADER: "newco"})) == "large"


class YieldingStore(InMemoryBudgetStore):
    """Reads suspend, as a shared store's round trips do: other requests run in between."""

    async def spent(self, window: Window) -> float:
        await asyncio.sleep(0)
        return await super().spent(window)


async def test_concurrent_requests_cannot_together_spend_past_a_ceiling(
    config: RouterConfig,
) -> None:
    store = YieldingStore()
    router = Router(config, budgets=store)
    headers = [{}] * 30 + [{TENANT_HEADER: "acme"}] * 30 + [{TENANT_HEADER: "newco"}] * 30
    decisions = await asyncio.gather(*(router.route(premium(), h) for h in headers))
    served = [model_of(d) for d in decisions]
    # Each ceiling admits exactly its share of premium requests: 1, 3 and 2.
    assert [served[i : i + 30].count("large") for i in (0, 30, 60)] == [1, 3, 2]
    assert all(d.rule != "fallback" for d in decisions)
    assert await store.spent(Window(UNVERIFIED, 60)) == pytest.approx(0.003 + 29 * 0.001)
    assert await store.spent(Window("acme", 60)) == pytest.approx(0.009 + 27 * 0.001)


class ContendedStore(InMemoryBudgetStore):
    """Other replicas always take what is left first, then refund: every reservation under a
    ceiling misses, while the spending read back stays unchanged."""

    async def reserve(self, window: Window, amount: float, limit: float | None) -> Reservation:
        self.attempts = getattr(self, "attempts", 0) + 1
        if limit is not None:
            return Reservation(False, await self.spent(window))
        return await super().reserve(window, amount, limit)


async def test_a_request_that_keeps_losing_the_race_is_decided_as_over_budget(
    config: RouterConfig,
) -> None:
    store = ContendedStore()
    routed = await Router(config, budgets=store).route(premium(), {TENANT_HEADER: "acme"})
    # Three decisions on the budget as read, then one as if it were spent: bounded work.
    assert (routed.rule, model_of(routed), store.attempts) == ("explicit", "small", 4)
    assert Note("budget", "step_down(0.009)") in routed.notes


async def test_a_decision_that_times_out_falls_back_to_the_cheapest_model(
    config: RouterConfig,
) -> None:
    quick = config.model_copy(
        update={"routing": config.routing.model_copy(update={"decision_timeout_ms": 5})}
    )
    routed = await Router(quick, budgets=StalledBudgetStore()).route(premium(), {})
    # Nothing was reserved, so the premium model the client named is not where it goes.
    assert (routed.rule, model_of(routed)) == ("fallback", "small")


def chat(**fields: object) -> RequestView:
    body = {"model": "large", "messages": [{"role": "user", "content": "hi"}], **fields}
    return parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)


def test_an_answer_under_a_limit_gets_the_tokens_it_was_charged_for(config: RouterConfig) -> None:
    # No max_tokens asked: charged for completion_tokens_estimate (256), and capped at it, so
    # the answer cannot cost more than what was reserved.
    seen = Observation(chat(), {TENANT_HEADER: "acme"})
    routed = decide(config, seen, PoolState())
    assert routed.steps.max_tokens == 256
    assert routed.cost == pytest.approx((seen.tokens + 256) * 3 / 1e6)
    body = json.loads(BY_API["chat"].rewrite(chat(), routed.model, routed.steps))  # type: ignore[arg-type]
    assert body["max_tokens"] == 256
    # Asked for: charged as asked, and the cap changes nothing.
    asked = decide(config, Observation(chat(max_tokens=40), {TENANT_HEADER: "acme"}), PoolState())
    assert asked.steps.max_tokens == 40


def test_each_choice_asked_for_is_charged(config: RouterConfig) -> None:
    seen = Observation(chat(max_tokens=100, n=3), {TENANT_HEADER: "acme"})
    three = decide(config, seen, PoolState())
    assert three.cost == pytest.approx((seen.tokens + 300) * 3 / 1e6)
    # n=40 x 100 tokens on large is 0.012: past acme's 0.009, it steps down to small.
    many = decide(
        config, Observation(chat(max_tokens=100, n=40), {TENANT_HEADER: "acme"}), PoolState()
    )
    assert model_of(many) == "small"


def test_without_a_limit_nothing_is_capped() -> None:
    unlimited = parse_config(BUDGET_POLICY.replace("  default_limit: 0.006\n", ""))
    routed = decide(unlimited, Observation(chat(), {TENANT_HEADER: "newco"}), PoolState())
    assert isinstance(routed, Routed) and routed.model.name == "large"
    assert routed.steps.max_tokens is None


async def test_each_reservation_shows_the_tenants_window_spending(config: RouterConfig) -> None:
    spent = telemetry.METRICS.budget_spent
    router = Router(config)
    await router.route(premium(), {TENANT_HEADER: "acme"})
    await router.route(premium(), {TENANT_HEADER: "acme"})
    assert spent.labels(tenant="acme")._value.get() == pytest.approx(0.006)
    await router.route(premium(), {})
    assert spent.labels(tenant=UNVERIFIED)._value.get() == pytest.approx(0.003)
