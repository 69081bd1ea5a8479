"""End-to-end fixtures: the real Envoy binary, the router as a process, MOCK upstreams."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from devstack import Ports, Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(Ports.free(), workdir=tmp_path_factory.mktemp("stack")) as running:
        yield running


def stack_serving(policy: Path) -> Callable[..., Iterator[Stack]]:
    """A module-scoped `stack` fixture: the real Envoy, MOCK upstreams and a router serving
    `policy` (assign it to `stack` in a test module to override the session's)."""

    @pytest.fixture(scope="module")
    def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
        workdir = tmp_path_factory.mktemp(policy.stem)
        with Stack(Ports.free(), router_config=policy, workdir=workdir) as running:
            yield running
            running.stop_router(signal.SIGKILL)  # nothing to drain: the module is done with it

    return stack


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0, timeout=30
    )


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=30) as session:
        yield session


class MockRecorder:
    """What each MOCK upstream received (its /__mock/requests hook)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def clear(self) -> None:
        for model in self.stack.ports.mocks:
            httpx.delete(f"{self.stack.mock_url(model)}/__mock/requests")

    def received(self) -> dict[str, list[dict[str, object]]]:
        return {
            m: httpx.get(f"{self.stack.mock_url(m)}/__mock/requests").json()
            for m in self.stack.ports.mocks
        }


@pytest.fixture
def upstreams(stack: Stack) -> MockRecorder:
    recorder = MockRecorder(stack)
    recorder.clear()
    return recorder


def repo_path(*parts: str) -> Path:
    return Path(__file__).resolve().parents[2].joinpath(*parts)


def tokens_total(stack: Stack, model: str, kind: str, *, wait_for: float | None = None) -> float:
    """`meritorder_tokens_total` for a model (the access log's and the stream observer's count);
    with `wait_for`, until it reaches that value (both report off the request path)."""
    labels = re.compile(r"^meritorder_tokens_total\{([^}]*)\} (\S+)$", re.M)
    wanted = {f'kind="{kind}"', f'model="{model}"'}
    deadline = time.monotonic() + 10
    while True:
        text = httpx.get(f"http://127.0.0.1:{stack.ports.metrics}/metrics").text
        value = sum(
            float(found[2]) for found in labels.finditer(text) if wanted <= set(found[1].split(","))
        )
        if wait_for is None or value >= wait_for:
            return value
        assert time.monotonic() < deadline, f"tokens_total({model}, {kind}) = {value} < {wait_for}"
        time.sleep(0.1)
