"""Sessions through the real Envoy: two router processes sharing a real Redis keep a
conversation on its model whichever replica serves a turn. Upstreams are MOCKS."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from devstack import Ports, Stack

from tests.helpers import both_routed

pytestmark = pytest.mark.e2e

POLICY = Path(__file__).parent / "policies" / "sessions.yaml"


@pytest.fixture(scope="module")
def routers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("sessions")
    with Stack(Ports.free(), router_config=POLICY, workdir=workdir, redis=True, routers=2) as stack:
        yield stack
        for name in ("router", "router-2"):
            stack.processes.stop(name, signal.SIGKILL)


def test_a_conversation_stays_on_its_model_on_every_replica(routers: Stack) -> None:
    client = openai.OpenAI(base_url=f"{routers.base_url}/v1", api_key="unused", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Write a haiku about the sea."}]
    first = client.chat.completions.with_raw_response.create(
        model="auto", messages=messages, extra_headers={"x-tier": "gold"}
    )
    assert first.headers["x-meritorder-model"] == "large"
    for turn in range(2, 31):  # ten turns, or more until both replicas have served some
        if turn > 10 and both_routed(routers):
            break
        messages += [
            {"role": "assistant", "content": first.parse().choices[0].message.content},
            {"role": "user", "content": f"Another one, number {turn}."},
        ]
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages)
        # No decision fires (the default would be small): the session keeps large.
        assert raw.headers["x-meritorder-model"] == "large", raw.headers["x-meritorder-reason"]
        assert "session=sticky" in raw.headers["x-meritorder-reason"]
    # Both replicas decided turns: the session held across processes, not inside one.
    assert both_routed(routers)


def test_a_session_header_names_the_session_whatever_the_conversation(routers: Stack) -> None:
    client = openai.OpenAI(base_url=f"{routers.base_url}/v1", api_key="unused", max_retries=0)
    first = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "A poem about rain."}],
        extra_headers={"x-session-id": "s-42", "x-tier": "gold"},
    )
    assert first.headers["x-meritorder-model"] == "large"
    later = [
        {"role": "user", "content": "A limerick."},  # another opening: the header names it
        {"role": "assistant", "content": "There once was..."},
        {"role": "user", "content": "Another."},
    ]
    for session, model in (("s-42", "large"), ("s-43", "small")):
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=later, extra_headers={"x-session-id": session}
        )
        assert raw.headers["x-meritorder-model"] == model
