"""Process lifecycle through the real Envoy: SIGTERM drains and exits cleanly; a router that is
down fails closed with Envoy's configured status rather than forwarding unrouted traffic."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from devstack import Ports, Stack

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
