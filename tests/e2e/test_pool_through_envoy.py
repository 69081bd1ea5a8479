"""Pool-aware routing through the real Envoy: when one model's (MOCK) servers queue up, new
`auto` requests move to the equivalent model, and come back once it drains. The mocks run a
load model (a concurrency limit and a FIFO queue) and report it in vLLM's metrics format."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from devstack import Ports, Stack
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import MockRecorder

pytestmark = pytest.mark.e2e

POLICY = """
version: 1
models:
  - {{name: small, cluster: mock-small, upstream_model: mock/small-1b, cost: 0.1,
     metrics_url: "http://127.0.0.1:{small}/metrics", saturation: {{queue: 1}}}}
  - {{name: large, cluster: mock-large, upstream_model: mock/large-70b, cost: 0.1,
     metrics_url: "http://127.0.0.1:{large}/metrics", saturation: {{queue: 1}}}}
default_model: small
signals:
  - {{name: greeting, keywords: [hello]}}
decisions:
  - {{name: chat, when: greeting, route: [small, large], objective: interactive}}
pool_hints: {{default_objective: batch}}
routing:
  pool_refresh_s: 0.2
  pool_stale_s: 2
  reason_detail: full   # the pool's load in the reason header (minimal says only `pool`)
"""
BURST = 3  # with a concurrency limit of one: one served, two queued
DEADLINE_S = 20.0  # a bound on the polls below, never a speed that is asserted


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("pool")
    ports = Ports.free()
    policy = Path(workdir) / "pool.yaml"
    policy.write_text(POLICY.format(small=ports.mocks["small"], large=ports.mocks["large"]))
    load = {"small": "concurrency=1", "large": "concurrency=4"}
    with Stack(ports, router_config=policy, workdir=workdir, mock_load=load) as running:
        yield running
        running.stop_router(signal.SIGKILL)


def chat(http: httpx.Client, model: str, **headers: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}]}
    return http.post("/v1/chat/completions", json=body, headers=headers)


def router_sees(stack: Stack, model: str, measure: str) -> float | None:
    """The router's pool state for `model` (its meritorder_pool_load gauge), None before any."""
    text = httpx.get(f"http://127.0.0.1:{stack.ports.metrics}/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "meritorder_pool_load":
            for s in family.samples:
                if s.labels == {"model": model, "measure": measure}:
                    return s.value
    return None


def until_router_sees(stack: Stack, model: str, waiting: float) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while (seen := router_sees(stack, model, "waiting")) != waiting:
        assert time.monotonic() < deadline, f"the router saw {model} waiting={seen}, not {waiting}"
        time.sleep(0.05)


def test_a_saturated_models_traffic_moves_to_its_equivalent_and_back(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        before = chat(http, "auto")
        assert before.status_code == 200
        assert before.headers["x-meritorder-model"] == "small"
        until_router_sees(stack, "small", 0)

        with ThreadPoolExecutor(BURST) as pool:
            held: list[Future[httpx.Response]] = [
                pool.submit(chat, http, "small", **{"x-mock-hold": "1"}) for _ in range(BURST)
            ]
            try:
                until_router_sees(stack, "small", BURST - 1)
                moved = chat(http, "auto")
                assert moved.status_code == 200
                assert moved.headers["x-meritorder-model"] == "large"
                assert "served as model=mock/large-70b" in moved.text
                reason = moved.headers["x-meritorder-reason"]
                assert "rejected=small:saturated_queue" in reason
                assert "pool=small(queue=2," in reason
            finally:
                httpx.post(f"{stack.mock_url('small')}/__mock/release")
            assert [f.result().status_code for f in held] == [200] * BURST

        until_router_sees(stack, "small", 0)
        back = chat(http, "auto")
        assert back.headers["x-meritorder-model"] == "small"
        assert "saturated" not in back.headers["x-meritorder-reason"]


SPOOFED = {
    "x-gateway-inference-objective": "premium",
    "X-Gateway-Inference-Fairness-Id": "someone-else",
    "x-meritorder-max-output-tokens": "1",
}


def test_the_pool_gets_the_routers_hints_and_never_the_clients(stack: Stack) -> None:
    recorder = MockRecorder(stack)
    recorder.clear()
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        body = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 40}
        routed = http.post("/v1/chat/completions", json={**body, "model": "auto"}, headers=SPOOFED)
        explicit = http.post(
            "/v1/chat/completions",
            json={"model": "large", "messages": body["messages"]},
            headers=SPOOFED,
        )
    assert routed.status_code == explicit.status_code == 200
    seen = [r["headers"] for reqs in recorder.received().values() for r in reqs]
    assert len(seen) == 2
    by_objective = {h.get("x-gateway-inference-objective"): h for h in seen}
    # the decision's objective for `auto`; the policy's default for a request that names a model
    assert set(by_objective) == {"interactive", "batch"}
    assert by_objective["interactive"]["x-meritorder-max-output-tokens"] == "40"
    for headers in seen:
        # no verified tenant: no fairness queue of the client's choosing, nor any other
        assert "x-gateway-inference-fairness-id" not in headers
        assert headers.get("x-meritorder-max-output-tokens") != "1"
