"""Process lifecycle through the real Envoy: SIGTERM drains and exits cleanly; a router that is
down fails closed with Envoy's configured status rather than forwarding unrouted traffic."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from devstack import ROUTER_CONFIG, Ports, Processes, Stack, free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = pytest.mark.e2e

BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def test_router_exits_cleanly_on_sigterm_and_envoy_then_fails_closed(tmp_path: Path) -> None:
    with Stack(Ports.free(), workdir=tmp_path) as stack:
        assert httpx.post(f"{stack.base_url}/v1/chat/completions", json=BODY).status_code == 200
        assert stack.stop_router(signal.SIGTERM) == 0
        assert "router stopped" in stack.log("router")
        response = httpx.post(f"{stack.base_url}/v1/chat/completions", json=BODY)
        assert response.status_code == 503
        # only the first, routed request ever reached a model
        seen = [httpx.get(f"{stack.mock_url(m)}/__mock/requests").json() for m in stack.ports.mocks]
        assert sum(len(requests) for requests in seen) == 1


def test_several_workers_share_one_port_and_stop_together(tmp_path: Path) -> None:
    port = free_port()
    with Processes(tmp_path) as processes:
        parent = processes.spawn(
            "router",
            [sys.executable, "-m", "meritorder.cli", "serve", "--json-logs", "--no-classifier",
             "--config", str(ROUTER_CONFIG), "--port", str(port), "--workers", "2"],
        )  # fmt: skip
        processes.wait_port("router", port)
        workers = _children(parent.pid)
        assert len(workers) == 2
        deadline = time.monotonic() + 30  # both workers bind the same port once ready
        while time.monotonic() < deadline and processes.log("router").count("router listening") < 2:
            time.sleep(0.1)
        assert processes.log("router").count("router listening") == 2
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert processes.stop("router", signal.SIGTERM) == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def _children(pid: int) -> list[int]:
    """The router worker processes of `pid` (not multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cmdline = (stat.parent / "cmdline").read_bytes()
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found
