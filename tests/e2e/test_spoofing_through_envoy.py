"""A hostile client against the shipped Envoy config: no client header picks a route, and Envoy's
own replies are OpenAI-style JSON. Upstreams are MOCKS that record everything they receive.

Requests are written with `http.client` so that the method, the request target, header casing
and repeated headers reach Envoy exactly as a hostile client sends them (httpx would merge `//`
into a URL authority, for one).
"""

from __future__ import annotations

import http.client
import json
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from devstack import KEYWORDS_CONFIG, Ports, Stack, free_ports

from tests.helpers import REPO, MockRecorder

pytestmark = pytest.mark.e2e

Headers = Sequence[tuple[str, str]]

# `large` is a real model of the demo policy (cluster mock-large); the router never picks it for
# the prompts below, so a request that reaches it was routed by the client.
SPOOFS: dict[str, Headers] = {
    "lower": [("x-meritorder-model", "large")],
    "title-case": [("X-Meritorder-Model", "large")],
    "mixed-case": [("x-MERITORDER-model", "large")],
    "repeated": [("x-meritorder-model", "large"), ("x-meritorder-model", "large")],
    "repeated-differing": [("x-meritorder-model", "coder"), ("X-Meritorder-Model", "large")],
    "own-headers": [
        ("x-meritorder-model", "large"),
        ("x-meritorder-decision", "spoofed-decision"),
        ("x-meritorder-reason", "spoofed-reason"),
        ("x-meritorder-tenant", "spoofed-tenant"),
    ],
}
SPOOFED_VALUES = {"large", "coder", "spoofed-decision", "spoofed-reason", "spoofed-tenant"}

CHAT = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hello"}]}).encode()
TEXT = json.dumps({"model": "auto", "prompt": "hello"}).encode()

# Requests the router does not process: each must end at the JSON 404 (or a 400 for a path
# Envoy refuses to normalize), whatever routing header it carries.
UNROUTED: list[tuple[str, str]] = [
    *(
        ("POST", path)
        for path in (
            "/v1/images/generations",
            "/v1/embeddings/",
            "/v1/responses/resp_1",
            "/v1/audio/transcriptions",
            "/v1/models/x",
            "/v1/chat/completions/",
            "/V1/CHAT/COMPLETIONS",
            "/v1/CHAT/completions",
            "/v1/chat/completions;x=1",
            "/v1/chat/completions%20",
            "/v1/chat/completions/../../images/generations",
            "/",
            "/anything",
        )
    ),
    *(
        (method, path)
        for method in ("GET", "PUT", "PATCH", "DELETE", "OPTIONS")
        for path in ("/v1/chat/completions", "/v1/completions")
    ),
    ("GET", "/v1/embeddings"),
    ("GET", "/v1/responses"),
]
# Spellings Envoy normalizes to a routed path (dot segments, `//`, encoded unreserved characters,
# a backslash): the router sees, and routes, the normal form.
ROUTED: list[tuple[str, bytes]] = [
    ("/v1/chat/completions", CHAT),
    ("//v1/chat/completions", CHAT),
    ("/v1//chat/completions", CHAT),
    ("/v1/./chat/completions", CHAT),
    ("/v1/%2e/chat/completions", CHAT),
    ("/v1/chat/%63ompletions", CHAT),
    ("/v1/chat\\completions", CHAT),
    ("/v1/chat/completions?x=1", CHAT),
    ("/v1/completions", TEXT),
    ("/v1/responses", json.dumps({"model": "auto", "input": "hello"}).encode()),
    ("/v1/chat/completions/../../responses", json.dumps({"model": "auto", "input": "hi"}).encode()),
    ("/v1/embeddings", json.dumps({"model": "auto", "input": "hello"}).encode()),
    (
        "/v1/messages",
        json.dumps(
            {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
        ).encode(),
    ),
]
# Paths Envoy refuses to normalize: escaped slashes, a NUL, a fragment.
MALFORMED = [
    "/v1/chat%2Fcompletions",
    "/v1/chat%2fcompletions",
    "/v1%5Cchat/completions",
    "/v1/chat/completions%00",
    "/v1/chat/completions#x",
]

# Every path and method with every own header at once; every spelling of the header on a few.
# (Stripping does not depend on the path, nor routing on the spelling: the matrix stays small.)
VARIANTS = [name for name in SPOOFS if name != "own-headers"]
UNROUTED_CASES = [(m, p, "own-headers") for m, p in UNROUTED] + [
    (m, p, v) for m, p in [("POST", "/v1/images/generations"), ("GET", "/v1/chat/completions")]
    for v in VARIANTS
]  # fmt: skip
ROUTED_CASES = [(p, b, "own-headers") for p, b in ROUTED] + [
    ("/v1/chat/completions", CHAT, v) for v in VARIANTS
]


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def error(self) -> dict[str, Any]:
        """The OpenAI error object of a JSON error reply, checked for shape and content-type."""
        assert (self.header("content-type") or "").startswith("application/json"), self.headers
        payload = json.loads(self.body)
        assert set(payload) == {"error"}, payload
        error: dict[str, Any] = payload["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"], error
        assert not error["message"].lstrip().startswith("{"), "a JSON error wrapped in another"
        return error


def send(
    port: int,
    method: str,
    target: str,
    headers: Headers = (),
    body: bytes | Iterator[bytes] | None = None,
) -> Reply:
    """One request, its target and headers sent verbatim (an iterator body goes chunked)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        all_headers = list(headers)
        if body is not None:
            framing = f"{len(body)}" if isinstance(body, bytes) else "chunked"
            header = "content-length" if isinstance(body, bytes) else "transfer-encoding"
            all_headers += [("content-type", "application/json"), (header, framing)]
        for name, value in all_headers:
            connection.putheader(name, value)
        connection.endheaders()
        if isinstance(body, bytes):
            connection.send(body)
        elif body is not None:
            for chunk in body:
                connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def own_headers(request: dict[str, object]) -> dict[str, str]:
    """The x-meritorder-* headers of a request a mock recorded."""
    headers = request["headers"]
    assert isinstance(headers, dict)
    return {k: v for k, v in headers.items() if k.startswith("x-meritorder-")}


def no_client_header_reached(received: dict[str, list[dict[str, object]]]) -> None:
    for model, requests in received.items():
        for request in requests:
            own = own_headers(request)
            assert not SPOOFED_VALUES & set(own.values()), (model, own)
            assert "x-meritorder-tenant" not in own, (model, own)


@pytest.mark.parametrize(
    ("method", "path", "spoof"), UNROUTED_CASES, ids=[" ".join(c) for c in UNROUTED_CASES]
)
def test_a_routing_header_on_an_unrouted_request_reaches_no_model(
    stack: Stack, upstreams: MockRecorder, method: str, path: str, spoof: str
) -> None:
    reply = send(stack.ports.listener, method, path, SPOOFS[spoof], CHAT)
    assert reply.status == 404
    assert reply.error()["code"] == "not_found"
    assert upstreams.received() == {model: [] for model in stack.ports.mocks}
    # Nothing the client set is echoed back as if it were a decision.
    assert not [(k, v) for k, v in reply.headers if k.lower().startswith("x-meritorder-")]


@pytest.mark.parametrize(
    ("path", "body", "spoof"), ROUTED_CASES, ids=[f"{p} {v}" for p, _, v in ROUTED_CASES]
)
def test_on_a_routed_path_the_model_is_the_routers_choice(
    stack: Stack, upstreams: MockRecorder, path: str, body: bytes, spoof: str
) -> None:
    reply = send(stack.ports.listener, "POST", path, SPOOFS[spoof], body)
    assert reply.status == 200, reply.body
    # Embeddings go to the one model serving them (on the small mock's cluster).
    chosen = "embed" if path.startswith("/v1/embeddings") else "small"
    assert (reply.header("x-meritorder-model"), reply.header("x-mock-model")) == (chosen, "small")
    assert reply.header("x-meritorder-decision") == "default"
    received = upstreams.received()
    assert {m: len(r) for m, r in received.items()} == {"small": 1, "coder": 0, "large": 0}
    no_client_header_reached(received)
    (seen,) = received["small"]
    assert own_headers(seen)["x-meritorder-model"] == chosen


@pytest.mark.parametrize("path", MALFORMED)
def test_a_path_envoy_cannot_normalize_is_refused_with_an_openai_400(
    stack: Stack, upstreams: MockRecorder, path: str
) -> None:
    reply = send(stack.ports.listener, "POST", path, SPOOFS["own-headers"], CHAT)
    assert reply.status == 400
    assert reply.error()["code"] == "invalid_path"
    assert upstreams.received() == {model: [] for model in stack.ports.mocks}


def test_a_body_above_envoys_buffer_limit_is_an_openai_413(
    stack: Stack, upstreams: MockRecorder
) -> None:
    # Chunked, so no content-length lets the router refuse it up front: Envoy's own limit
    # (per_connection_buffer_limit_bytes, 8 MiB) is what stops it.
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "auto", "messages": [{"role": "user", "content": "'
        for _ in range(90):
            yield b"a" * 100_000
        yield b'"}]}'

    reply = send(stack.ports.listener, "POST", "/v1/chat/completions", SPOOFS["lower"], chunks())
    assert reply.status == 413
    assert reply.error()["code"] == "request_too_large"
    assert upstreams.received() == {model: [] for model in stack.ports.mocks}


UNKNOWN_MODEL = json.dumps({"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]})
# The router refuses an announced 9 MiB body from its headers alone, before a byte is sent.
ANNOUNCED_TOO_LARGE = [("content-type", "application/json"), ("content-length", str(9 << 20))]


@pytest.mark.parametrize(
    ("headers", "body", "status", "code", "message"),
    [
        (ANNOUNCED_TOO_LARGE, None, 413, "request_too_large", "this router accepts at most"),
        ((), b"{", 400, "invalid_json", "not valid JSON"),
        ((), UNKNOWN_MODEL.encode(), 404, "model_not_found", "does not exist"),
    ],
    ids=["too-large-by-content-length", "invalid-json", "unknown-model"],
)
def test_the_routers_own_errors_pass_through_envoy_unwrapped(
    stack: Stack, headers: Headers, body: bytes | None, status: int, code: str, message: str
) -> None:
    reply = send(stack.ports.listener, "POST", "/v1/chat/completions", headers, body)
    assert reply.status == status
    error = reply.error()
    assert error["code"] == code
    assert message in error["message"]


def test_a_route_the_operator_declares_goes_to_its_own_cluster_never_a_header_choice(
    stack: Stack, upstreams: MockRecorder, tmp_path: Path
) -> None:
    """An operator route for /v1/images/generations (here to the `coder` mock's port) beside the
    models'."""
    bootstrap = yaml.safe_load(REPO.joinpath("deploy", "envoy", "envoy.yaml").read_text())
    resources = bootstrap["static_resources"]
    hcm = resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    routes.insert(
        len(routes) - 1,  # above the catch-all
        {"match": {"path": "/v1/images/generations"}, "route": {"cluster": "images"}},
    )
    (coder,) = [c for c in resources["clusters"] if c["name"] == "mock-coder"]
    images = yaml.safe_load(yaml.safe_dump(coder))
    images["name"] = images["load_assignment"]["cluster_name"] = "images"
    resources["clusters"].append(images)
    config = tmp_path / "envoy-with-images.yaml"
    config.write_text(yaml.safe_dump(bootstrap))

    listener, admin, otlp = free_ports(3)
    ports = Ports(listener, stack.ports.router, admin, stack.ports.mocks, otlp)
    operator = Stack(ports, envoy_config=config, workdir=tmp_path)  # its own Envoy only
    try:
        operator.start_envoy()
        reply = send(ports.listener, "POST", "/v1/images/generations", SPOOFS["own-headers"], b"{}")
    finally:
        operator.stop()
    received = upstreams.received()
    assert [r["path"] for r in received["coder"]] == ["/v1/images/generations"]
    assert received["large"] == [] and received["small"] == []
    assert own_headers(received["coder"][0]) == {}
    assert reply.status == 404  # the mock has no images: its answer, not Envoy's catch-all
    assert b"mock: no such endpoint" in reply.body


# --- Envoy's replies when the router or an upstream fails: a stack of their own, so that
# stopping processes cannot disturb the session's stack.


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("outage")
    with Stack(
        Ports.free(),
        router_config=KEYWORDS_CONFIG,
        workdir=workdir,
        router_args=["--no-classifier"],
    ) as running:
        yield running


def test_a_router_that_does_not_answer_is_an_openai_504(outage: Stack) -> None:
    router = outage.processes.running["router"]
    router.send_signal(signal.SIGSTOP)  # connected but silent: Envoy's message_timeout (2 s)
    try:
        reply = send(outage.ports.listener, "POST", "/v1/chat/completions", SPOOFS["lower"], CHAT)
    finally:
        router.send_signal(signal.SIGCONT)
    assert reply.status == 504
    assert reply.error() == {
        "message": reply.error()["message"],
        "type": "server_error",
        "param": None,
        "code": "router_timeout",
    }
    assert MockRecorder(outage).received() == {model: [] for model in outage.ports.mocks}


def test_an_unreachable_upstream_is_an_openai_503(outage: Stack) -> None:
    outage.processes.stop("mocks")
    try:
        reply = send(outage.ports.listener, "POST", "/v1/chat/completions", (), CHAT)
    finally:
        outage.start_mocks()
    assert reply.status == 503
    error = reply.error()
    assert (error["type"], error["code"]) == ("server_error", "upstream_unavailable")


def test_an_unreachable_router_is_an_openai_503_and_nothing_is_forwarded(outage: Stack) -> None:
    recorder = MockRecorder(outage)
    recorder.clear()
    outage.stop_router(signal.SIGKILL)  # a crashed router
    try:
        replies = [
            send(outage.ports.listener, "POST", path, SPOOFS["own-headers"], body)
            for path, body in [("/v1/chat/completions", CHAT), ("/v1/embeddings", b"{}")]
        ]
    finally:
        outage.start_router()
    for reply in replies:
        assert reply.status == 503
        error = reply.error()
        assert (error["type"], error["code"]) == ("server_error", "router_unavailable")
    assert recorder.received() == {model: [] for model in outage.ports.mocks}
