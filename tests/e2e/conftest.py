"""End-to-end fixtures: the real Envoy binary, the router as a process, MOCK upstreams (the
helpers, `stack_serving` and `MockRecorder` among them, are in tests/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from devstack import Ports, Stack

from tests.helpers import MockRecorder


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(Ports.free(), workdir=tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0, timeout=30
    )


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=30) as session:
        yield session


@pytest.fixture
def upstreams(stack: Stack) -> MockRecorder:
    recorder = MockRecorder(stack)
    recorder.clear()
    return recorder
