"""bench/workers.py waits for every worker before it measures, and says how many came up."""

from __future__ import annotations

import pytest
from devstack import StackError

from bench.workers import wait_for_workers

LISTENING = '{"event": "router listening", "address": "127.0.0.1:50051"}\n'


class _Stack:
    """A stack whose router log says `ready` workers listen."""

    def __init__(self, ready: int) -> None:
        self.ready = ready

    def log(self, name: str) -> str:
        assert name == "router"
        return '{"event": "classifier loaded"}\n' + LISTENING * self.ready


def test_measuring_starts_once_every_worker_listens() -> None:
    wait_for_workers(_Stack(4), 4, timeout_s=0.1)  # type: ignore[arg-type]


def test_workers_that_never_listen_stop_the_bench_with_their_count() -> None:
    with pytest.raises(StackError, match="3 of 4 router workers"):
        wait_for_workers(_Stack(3), 4, timeout_s=0.1)  # type: ignore[arg-type]
