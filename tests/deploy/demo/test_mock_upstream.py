"""The MOCK upstreams' load model: a FIFO queue in front of a concurrency limit, and the vLLM
metrics it reports from that state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from demo.mock_upstream import Load, MockModel, Slots
from prometheus_client.parser import text_string_to_metric_families

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def samples(text: str) -> dict[str, float]:
    """Every sample of a metrics text by name (histogram buckets by name and bound)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name + (f"[{s.labels['le']}]" if "le" in s.labels else "")
            found[key] = s.value
    return found


async def test_requests_beyond_the_concurrency_limit_wait_and_enter_in_arrival_order() -> None:
    slots = Slots(Load(concurrency=2))
    entered: list[int] = []

    async def request(n: int) -> int:
        ticket = await slots.enter(10)
        entered.append(n)
        return ticket

    tasks = [asyncio.create_task(request(n)) for n in range(5)]
    for _ in range(20):  # let every task reach the queue
        await asyncio.sleep(0)
    assert (len(slots.running), len(slots.waiting)) == (2, 3)
    assert entered == [0, 1]
    slots.leave(await tasks[0])
    await tasks[2]
    assert entered == [0, 1, 2]
    assert (len(slots.running), len(slots.waiting)) == (2, 2)
    for task in (tasks[1], tasks[2]):
        slots.leave(await task)
    await asyncio.gather(tasks[3], tasks[4])
    assert entered == [0, 1, 2, 3, 4]
    assert (len(slots.running), len(slots.waiting)) == (2, 0)


async def test_a_request_cancelled_while_waiting_leaves_the_queue() -> None:
    slots = Slots(Load(concurrency=1))
    first = await slots.enter(1)
    waiting = asyncio.create_task(slots.enter(1))
    await asyncio.sleep(0)
    assert len(slots.waiting) == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert len(slots.waiting) == 0
    slots.leave(first)
    assert slots.running == {}


async def test_without_a_limit_nothing_waits() -> None:
    slots = Slots(Load())
    tickets = [await slots.enter(1) for _ in range(50)]
    assert (len(slots.running), len(slots.waiting)) == (50, 0)
    assert len(set(tickets)) == 50


def test_kv_cache_use_is_the_running_requests_tokens_over_the_capacity() -> None:
    slots = Slots(Load(kv_tokens=100))
    slots.running = {1: 30, 2: 20}
    assert slots.kv_usage() == 0.5
    slots.running[3] = 90
    assert slots.kv_usage() == 1.0  # a full cache, never more


def test_the_ttft_histogram_is_cumulative_in_vllm_buckets() -> None:
    slots = Slots()
    for seconds in (0.003, 0.3, 3.0):
        slots.observe_ttft(seconds)
    found = samples(slots.metrics("mock"))
    assert found["vllm:time_to_first_token_seconds_bucket[0.001]"] == 0
    assert found["vllm:time_to_first_token_seconds_bucket[0.005]"] == 1
    assert found["vllm:time_to_first_token_seconds_bucket[0.5]"] == 2
    assert found["vllm:time_to_first_token_seconds_bucket[+Inf]"] == 3
    assert found["vllm:time_to_first_token_seconds_count"] == 3
    assert found["vllm:time_to_first_token_seconds_sum"] == pytest.approx(3.303)


def test_the_itl_histogram_counts_one_observation_per_token_gap() -> None:
    slots = Slots()
    slots.observe_itl(0.02, 10)  # ten tokens 20 ms apart
    slots.observe_itl(0.3, 2)
    found = samples(slots.metrics("mock"))
    assert found["vllm:inter_token_latency_seconds_bucket[0.025]"] == 10
    assert found["vllm:inter_token_latency_seconds_bucket[+Inf]"] == 12
    assert found["vllm:inter_token_latency_seconds_count"] == 12
    assert found["vllm:inter_token_latency_seconds_sum"] == pytest.approx(0.8)


async def test_a_decoded_answer_reports_its_measured_token_gaps() -> None:
    mock = MockModel("small", Load(token_ms=5))
    server = await asyncio.start_server(mock.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
            found = samples((await client.get("/metrics")).text)
    finally:
        server.close()
    count = found["vllm:inter_token_latency_seconds_count"]
    assert count > 1
    # asyncio.sleep never wakes early: each gap is at least the configured 5 ms
    assert found["vllm:inter_token_latency_seconds_sum"] / count >= 0.005


@pytest.mark.parametrize(
    ("options", "load"),
    [
        ("", Load()),
        ("concurrency=2", Load(concurrency=2)),
        ("concurrency=1,token_ms=20,kv_tokens=64", Load(1, 20.0, 64)),
    ],
)
def test_load_options_parse(options: str, load: Load) -> None:
    assert Load.parse(options) == load


def test_an_unknown_load_option_is_named() -> None:
    with pytest.raises(ValueError, match="'slots'"):
        Load.parse("slots=2")


@pytest.fixture
async def served() -> AsyncIterator[tuple[MockModel, httpx.AsyncClient]]:
    mock = MockModel("small", Load(concurrency=1, kv_tokens=1000))
    server = await asyncio.start_server(mock.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield mock, client
    server.close()


async def metrics_until(
    client: httpx.AsyncClient, name: str, value: float, tries: int = 200
) -> dict[str, float]:
    """The mock's metrics once `name` reads `value` (bounded: fails after `tries` reads)."""
    for _ in range(tries):
        response = await client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        found = samples(response.text)
        if found[name] == value:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} never read {value}: {found}")


async def test_metrics_show_held_requests_running_and_queued_then_drained(
    served: tuple[MockModel, httpx.AsyncClient],
) -> None:
    mock, client = served
    held = {"x-mock-hold": "1"}
    burst = [asyncio.create_task(client.post("/v1/chat/completions", json=CHAT, headers=held))
             for _ in range(3)]  # fmt: skip
    found = await metrics_until(client, "vllm:num_requests_waiting", 2)
    assert found["vllm:num_requests_running"] == 1
    assert 0 < found["vllm:kv_cache_usage_perc"] < 1
    assert (await client.post("/__mock/release")).status_code == 200
    answers = await asyncio.gather(*burst)
    assert [a.status_code for a in answers] == [200, 200, 200]
    found = await metrics_until(client, "vllm:num_requests_running", 0)
    assert found["vllm:num_requests_waiting"] == 0
    assert found["vllm:kv_cache_usage_perc"] == 0
    assert found["vllm:time_to_first_token_seconds_count"] == 3
    assert not any(r["path"] == "/metrics" for r in mock.requests)
