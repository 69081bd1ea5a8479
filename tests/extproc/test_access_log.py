"""What Envoy's access log stream teaches the router: health, usage, measured budget spend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from envoy.data.accesslog.v3.accesslog_pb2 import HTTPAccessLogEntry
from google.protobuf.struct_pb2 import Struct

from extproc.access_log import USAGE_NAMESPACE, AccessLogService, outcome_of
from meritorder.budget import InMemoryBudgetStore, Window
from meritorder.config import RouterConfig
from meritorder.outcomes import DECISION_NAMESPACE, Pending
from meritorder.router import Router


def pending(model: str = "coder", **changes: object) -> Pending:
    facts: dict[str, object] = {
        "model": model,
        "rule": "code",
        "cost_per_million": 3.0,
        "estimated_cost": 0.004,
        "tenant": "acme",
        "budget_window_s": 60,
        "decided_at": time.time(),
    }
    return Pending(**{**facts, **changes})  # type: ignore[arg-type]


def entry(
    decided: Pending | dict[str, object] | None,
    status: int,
    request_id: str = "r1",
    usage: dict[str, float] | None = None,
) -> HTTPAccessLogEntry:
    """An entry as Envoy sends it: the processor's decision metadata, json_to_metadata's usage."""
    log = HTTPAccessLogEntry()
    log.common_properties.upstream_cluster = "mock-coder"
    log.request.request_id = request_id
    log.response.response_code.value = status
    metadata = log.common_properties.metadata.filter_metadata
    if decided is not None:
        facts = Struct()
        facts.update(decided.to_fields() if isinstance(decided, Pending) else decided)
        metadata[DECISION_NAMESPACE].CopyFrom(facts)
    if usage is not None:
        counts = Struct()
        counts.update(usage)
        metadata[USAGE_NAMESPACE].CopyFrom(counts)
    return log


def test_decision_facts_survive_the_round_trip_through_envoy_metadata() -> None:
    decided = pending(traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    outcome = outcome_of(entry(decided, 200, usage={"prompt_tokens": 7, "completion_tokens": 9}))
    assert outcome is not None
    assert outcome.pending == decided
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (7, 9)


@pytest.mark.parametrize(
    "facts",
    [
        {"model": "coder"},  # facts missing
        {**pending().to_fields(), "cost_per_million": "3"},  # a number as a string
        {**pending().to_fields(), "model": 5},
    ],
)
def test_entries_without_whole_decision_facts_are_ignored(facts: dict[str, object]) -> None:
    assert outcome_of(entry(facts, 200)) is None


def test_requests_the_router_did_not_route_say_nothing() -> None:
    assert outcome_of(entry(None, 503)) is None
    unrouted = entry(pending(), 503)
    unrouted.common_properties.upstream_cluster = ""  # answered by Envoy or the router itself
    assert outcome_of(unrouted) is None


async def test_5xx_responses_mark_a_model_unhealthy_and_a_success_heals_it(
    demo_config: RouterConfig,
) -> None:
    router = Router(demo_config)
    service = AccessLogService(router)
    await service.record(entry(pending(), 503))
    assert "coder" not in router.health.unhealthy
    await service.record(entry(pending(), 502))
    assert "coder" in router.health.unhealthy
    await service.record(entry(pending(), 200))
    assert "coder" not in router.health.unhealthy


async def test_no_response_at_all_counts_against_the_model(demo_config: RouterConfig) -> None:
    router = Router(demo_config)
    for _ in range(2):  # status 0: the connection failed or was reset
        await AccessLogService(router).record(entry(pending(), 0))
    assert "coder" in router.health.unhealthy


async def test_measured_usage_replaces_the_estimate_in_the_window_it_was_reserved_in(
    demo_config: RouterConfig,
) -> None:
    store = InMemoryBudgetStore()
    router = Router(demo_config, budgets=store)
    decided_at = 1_000_000.0  # long ago: the correction still lands in that window
    await store.reserve(Window("acme", 60, decided_at), 0.004, None)
    decided = pending("large", decided_at=decided_at)
    await AccessLogService(router).record(
        entry(decided, 200, "r1", {"prompt_tokens": 100, "completion_tokens": 900})
    )
    measured = (100 + 900) * 3.0 / 1e6
    assert await store.spent(Window("acme", 60, decided_at)) == pytest.approx(measured)
    assert await store.spent(Window("acme", 60)) == 0.0


async def test_any_router_settles_an_outcome_another_one_decided(
    demo_config: RouterConfig,
) -> None:
    """Two routers sharing one budget store: the log stream reaches the one that did not
    decide, and the tenant is still charged what was measured."""
    shared = InMemoryBudgetStore()
    decider, other = Router(demo_config, budgets=shared), Router(demo_config, budgets=shared)
    await shared.reserve(Window("acme", 60), 0.004, None)
    decided = pending("large")
    await AccessLogService(other).record(
        entry(decided, 200, "r9", {"prompt_tokens": 10, "completion_tokens": 10})
    )
    assert await shared.spent(Window("acme", 60)) == pytest.approx(20 * 3.0 / 1e6)
    assert await other.outcomes.get("r9") is not None
    assert await decider.outcomes.get("r9") is None


async def test_an_outcome_without_usage_keeps_the_estimate(demo_config: RouterConfig) -> None:
    store = InMemoryBudgetStore()
    router = Router(demo_config, budgets=store)
    await store.reserve(Window("acme", 60), 0.004, None)
    await AccessLogService(router).record(entry(pending(), 200))  # a stream: no JSON usage
    assert await store.spent(Window("acme", 60)) == pytest.approx(0.004)


async def test_a_large_batch_of_entries_lets_requests_in_flight_run_between_them() -> None:
    """Envoy flushes its entries in batches; settling one must not hold the event loop for all."""
    from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage

    from extproc.access_log import YIELD_EVERY

    settled: list[str] = []
    arrivals: list[asyncio.Future[None]] = []

    async def request_arriving() -> None:
        settled.append("request")

    class Core:
        async def settle(self, outcome: object) -> None:
            if not settled:  # a request arrives while the batch is being settled
                arrivals.append(asyncio.ensure_future(request_arriving()))
            settled.append("entry")

    message = StreamAccessLogsMessage()
    for i in range(4 * YIELD_EVERY):
        message.http_logs.log_entry.append(entry(pending(), 200, request_id=f"r{i}"))

    async def one_message() -> AsyncIterator[StreamAccessLogsMessage]:
        yield message

    service = AccessLogService(Core())  # type: ignore[arg-type]
    await service.StreamAccessLogs(one_message(), None)
    await asyncio.gather(*arrivals)
    assert settled.count("entry") == 4 * YIELD_EVERY
    assert settled.index("request") <= YIELD_EVERY  # served within a few entries, not after all
