"""The pool-state source: metrics read from real (MOCK) model servers' Prometheus text, merged
with the router's own view, with staleness by age."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from demo.mock_upstream import Load, MockModel

from meritorder.config import ModelConfig
from meritorder.pool import PoolMonitor
from meritorder.pool.monitor import fetch_text


def model(name: str, *urls: str) -> ModelConfig:
    return ModelConfig(name=name, cluster=name, upstream_model=name, cost=1, metrics_url=urls)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def mocks() -> AsyncIterator[list[tuple[MockModel, str]]]:
    """Two MOCK replicas with a concurrency limit of one, and their metrics URLs."""
    served = []
    servers = []
    for name in ("a", "b"):
        mock = MockModel(name, Load(concurrency=1, kv_tokens=100))
        server = await asyncio.start_server(mock.handle, "127.0.0.1", 0)
        servers.append(server)
        served.append((mock, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/metrics"))
    yield served
    for server in servers:
        server.close()


async def test_replicas_are_read_from_their_metrics_and_summed(
    mocks: list[tuple[MockModel, str]],
) -> None:
    (a, url_a), (b, url_b) = mocks
    a.slots.running = {1: 30}
    a.slots.waiting.extend((n, 1, asyncio.get_running_loop().create_future()) for n in (2, 3))
    b.slots.running = {4: 50}
    b.slots.waiting.append((5, 1, asyncio.get_running_loop().create_future()))
    monitor = PoolMonitor()
    config = model("m", url_a, url_b)
    await monitor.refresh([config])
    load = monitor.snapshot([config], stale_s=5)["m"]
    assert (load.replicas, load.reachable, load.running, load.waiting) == (2, 2, 2, 3)
    assert load.queue == 1.5
    assert load.kv_cache == pytest.approx(0.4)  # the mean of 30% and 50%
    assert load.measured and not load.stale


async def test_ttft_is_the_mean_of_the_first_tokens_since_the_last_read(
    mocks: list[tuple[MockModel, str]],
) -> None:
    (a, url), _ = mocks
    monitor = PoolMonitor()
    config = model("m", url)
    a.slots.observe_ttft(10.0)  # old history
    await monitor.refresh([config])
    assert monitor.snapshot([config], 5)["m"].ttft_s == 10.0
    a.slots.observe_ttft(0.2)
    a.slots.observe_ttft(0.4)
    await monitor.refresh([config])
    assert monitor.snapshot([config], 5)["m"].ttft_s == pytest.approx(0.3)
    await monitor.refresh([config])  # no first token since: the last mean stands
    assert monitor.snapshot([config], 5)["m"].ttft_s == pytest.approx(0.3)


async def test_itl_is_the_mean_token_gap_since_the_last_read_and_shows_in_the_state(
    mocks: list[tuple[MockModel, str]],
) -> None:
    (a, url), _ = mocks
    monitor = PoolMonitor()
    config = model("m", url)
    a.slots.observe_itl(1.0, 5)  # old history
    await monitor.refresh([config])
    a.slots.observe_itl(0.02, 3)
    a.slots.observe_itl(0.06, 1)
    await monitor.refresh([config])
    load = monitor.snapshot([config], 5)["m"]
    assert load.itl_s == pytest.approx(0.03)  # (3 x 20 ms + 60 ms) / 4 gaps
    assert "itl=30ms" in load.render()


async def test_metrics_go_stale_by_age_when_a_replica_stops_answering() -> None:
    clock = Clock()
    answers = {"up": True}
    text = "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 2\n"

    async def fetch(url: str, timeout_s: float) -> str:
        if not answers["up"]:
            raise OSError("connection refused")
        return text

    reads: list[tuple[str, bool]] = []
    monitor = PoolMonitor(fetch=fetch, clock=clock, on_read=lambda m, ok: reads.append((m, ok)))
    config = model("m", "http://replica/metrics")
    assert monitor.snapshot([config], 5)["m"].stale  # never read
    assert monitor.snapshot([config], 5)["m"].age_s is None
    await monitor.refresh([config])
    answers["up"] = False
    clock.now += 3
    await monitor.refresh([config])
    load = monitor.snapshot([config], 5)["m"]
    assert (load.stale, load.age_s, load.waiting) == (False, 3.0, 2)  # still within 5 s
    clock.now += 3
    load = monitor.snapshot([config], 5)["m"]
    assert load.stale and load.age_s == 6.0
    assert (load.reachable, load.waiting) == (0, 0)  # stale numbers are not used
    assert reads == [("m", True), ("m", False)]


async def test_in_flight_counts_dispatches_until_their_outcomes_and_latencies_are_averaged() -> (
    None
):
    monitor = PoolMonitor()
    config = model("m")
    for _ in range(3):
        monitor.dispatched("m")
    monitor.settled("m", first_byte_s=1.0, duration_s=2.0)
    load = monitor.snapshot([config], 5)["m"]
    assert (load.in_flight, load.ttft_s, load.duration_s) == (2, 1.0, 2.0)
    monitor.settled("m", first_byte_s=2.0, duration_s=None)
    load = monitor.snapshot([config], 5)["m"]
    assert load.in_flight == 1
    assert load.ttft_s == pytest.approx(1.3)  # 30% of the newest
    assert not load.stale and load.replicas == 0  # no metrics configured: the router's view only
    for _ in range(3):  # outcomes of requests another process dispatched
        monitor.settled("m", None, None)
    assert monitor.snapshot([config], 5)["m"].in_flight == 0


async def test_fetch_reports_an_endpoint_that_is_not_200(
    mocks: list[tuple[MockModel, str]],
) -> None:
    (_, url), _ = mocks
    with pytest.raises(ValueError, match="404"):
        await fetch_text(url.replace("/metrics", "/nothing"), 1.0)
    assert "vllm:num_requests_running" in await fetch_text(url, 1.0)


async def test_an_unreachable_endpoint_is_an_os_error() -> None:
    with pytest.raises(OSError):
        await fetch_text("http://127.0.0.1:9/metrics", 1.0)
