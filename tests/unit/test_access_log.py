"""What Envoy's access log stream teaches the router: health, usage, measured budget spend."""

from __future__ import annotations

import pytest
from envoy.data.accesslog.v3.accesslog_pb2 import HTTPAccessLogEntry
from google.protobuf.struct_pb2 import Struct

from extproc.access_log import USAGE_NAMESPACE, AccessLogService
from meritorder.config import RouterConfig
from meritorder.ledger import Ledger, Pending
from meritorder.router import Router


def entry(
    model: str, status: int, request_id: str = "r1", usage: dict[str, float] | None = None
) -> HTTPAccessLogEntry:
    log = HTTPAccessLogEntry()
    log.common_properties.upstream_cluster = f"mock-{model}"
    log.request.request_id = request_id
    log.request.request_headers["x-meritorder-model"] = model
    log.response.response_code.value = status
    if usage is not None:
        metadata = Struct()
        metadata.update(usage)
        log.common_properties.metadata.filter_metadata[USAGE_NAMESPACE].CopyFrom(metadata)
    return log


async def test_5xx_responses_mark_a_model_unhealthy_and_a_success_heals_it(
    demo_config: RouterConfig,
) -> None:
    router = Router(demo_config)
    service = AccessLogService(router)
    await service.record(entry("coder", 503))
    assert "coder" not in router.health.unhealthy
    await service.record(entry("coder", 502))
    assert "coder" in router.health.unhealthy
    await service.record(entry("coder", 200))
    assert "coder" not in router.health.unhealthy


async def test_requests_that_reached_no_upstream_say_nothing_about_health(
    demo_config: RouterConfig,
) -> None:
    router = Router(demo_config)
    unrouted = entry("coder", 503)
    unrouted.common_properties.upstream_cluster = ""
    for _ in range(3):
        await AccessLogService(router).record(unrouted)
    assert not router.health.unhealthy


async def test_measured_usage_replaces_the_estimate_in_the_tenants_budget(
    demo_config: RouterConfig,
) -> None:
    router = Router(demo_config)
    await router.budgets.charge("acme", 0.004, 60)  # what the decision estimated
    router.ledger.add("r1", Pending(None, "large", 3.0, 0.004, "acme", 60))
    await AccessLogService(router).record(
        entry("large", 200, "r1", {"prompt_tokens": 100, "completion_tokens": 900})
    )
    assert await router.budgets.spent("acme", 60) == pytest.approx((100 + 900) * 3.0 / 1e6)
    assert len(router.ledger) == 0


def test_the_ledger_forgets_the_oldest_entries_beyond_its_capacity() -> None:
    ledger = Ledger(capacity=2)
    for request_id in ("a", "b", "c"):
        ledger.add(request_id, Pending(None, "m", 1.0, 0.0, None, None))
    assert ledger.pop("a") is None and ledger.pop("c") is not None and len(ledger) == 1
