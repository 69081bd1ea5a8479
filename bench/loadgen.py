"""A closed-loop HTTP/1.1 load generator, and the trivial server that measures it alone.

Each worker owns one keep-alive connection (TCP_NODELAY) and sends its next request as soon as
the previous response is complete. The client is an `asyncio.Protocol` that writes one
pre-built request and parses only the status line and framing headers of the reply, so a
request costs the generator a few tens of microseconds of CPU.

    python bench/loadgen.py serve --port 9000    # the trivial server (one fixed reply)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_HEAD_END = b"\r\n\r\n"
# Headers worth keeping from a response (the router's decision); the rest are only framing.
_KEPT_PREFIX = "x-meritorder-"


def build_request(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    api_key: str = "unused",
) -> bytes:
    """A complete POST request, built once and written as is for every iteration."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}:{port}",
        "content-type: application/json",
        f"authorization: Bearer {api_key}",
        f"content-length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]


class _Connection(asyncio.Protocol):
    """One keep-alive client connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Reply] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        reply = _parse_response(self.buffer)
        if reply is not None:
            self.waiter.set_result(reply)

    async def send(self, request: bytes, timeout: float) -> Reply:
        if self.transport is None:
            raise ConnectionError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await asyncio.wait_for(self.waiter, timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _parse_response(buffer: bytearray) -> Reply | None:
    """Consume one complete response from `buffer`, or return None if it is not all there."""
    end = buffer.find(_HEAD_END)
    if end < 0:
        return None
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0][9:12])
    length = 0
    chunked = False
    kept: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name.startswith(_KEPT_PREFIX):
            kept[name] = value.strip()
    start = end + len(_HEAD_END)
    stop = _chunked_end(buffer, start) if chunked else start + length
    if stop < 0 or len(buffer) < stop:
        return None
    del buffer[:stop]
    return Reply(status, kept)


def _chunked_end(buffer: bytearray, position: int) -> int:
    """Where a chunked body starting at `position` ends, or -1 if it is incomplete."""
    while True:
        eol = buffer.find(b"\r\n", position)
        if eol < 0:
            return -1
        size = int(bytes(buffer[position:eol]).split(b";")[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n", eol + 2)  # no trailers: the empty line follows
            return -1 if trailer_end < 0 else trailer_end + 2
        position = eol + 2 + size + 2
        if position > len(buffer):
            return -1


@dataclass
class LevelResult:
    """One concurrency level: the latencies (ns) of successful requests and what went wrong."""

    concurrency: int
    latencies_ns: list[int] = field(default_factory=list)
    # Of the replies that were not a 200 (a refusal answered at once, or after a wait).
    failed_ns: list[int] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    loadgen_cpu_s: float = 0.0
    probes: tuple[Any, Any] = (None, None)
    last_headers: dict[str, str] = field(default_factory=dict)
    # How the router decided (x-meritorder-decision, plus any fallback, classifier or degraded
    # note of x-meritorder-reason), for every reply that carries a decision, the router's own
    # refusals (503 signals_unavailable) too: a timeout fallback under load shows up here, not
    # only as an error.
    decisions: dict[str, int] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        return len(self.latencies_ns) + self.errors

    def fail(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def _decision_key(headers: Mapping[str, str]) -> str:
    notes = [
        note.strip()
        for note in headers.get("x-meritorder-reason", "").split(";")
        if note.strip().startswith(("fallback=", "classifier=", "degraded="))
    ]
    return ";".join([headers.get("x-meritorder-decision", "-"), *notes])


class _Budget:
    """Hands out request slots until the count or the deadline runs out."""

    def __init__(self, requests: int, seconds: float) -> None:
        self.left = requests
        self.deadline = time.monotonic() + seconds

    def take(self) -> bool:
        if self.left <= 0 or time.monotonic() > self.deadline:
            return False
        self.left -= 1
        return True


async def _connect(host: str, port: int) -> _Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_Connection, host, port)
    return protocol


async def _worker(
    host: str,
    port: int,
    conn: _Connection,
    requests: Iterator[bytes],
    budget: _Budget,
    result: LevelResult | None,
    timeout: float,
) -> _Connection:
    clock = time.perf_counter_ns
    while budget.take():
        started = clock()
        try:
            reply = await conn.send(next(requests), timeout)
        except (OSError, TimeoutError) as error:
            if result is not None:
                result.fail(type(error).__name__)
            conn.close()
            conn = await _connect(host, port)
            continue
        elapsed = clock() - started
        if result is None:
            continue
        if reply.status == 200:
            result.latencies_ns.append(elapsed)
            result.last_headers = reply.headers
        else:
            result.fail(f"http_{reply.status}")
            result.failed_ns.append(elapsed)
        if "x-meritorder-decision" in reply.headers:
            key = _decision_key(reply.headers)
            result.decisions[key] = result.decisions.get(key, 0) + 1
    return conn


async def run_level(
    host: str,
    port: int,
    request: bytes | Sequence[bytes],
    *,
    concurrency: int,
    requests: int,
    warmup: int,
    max_seconds: float,
    probe: Callable[[], Any] = lambda: None,
    timeout: float = 30.0,
) -> LevelResult:
    """Warm up, then send `requests` requests (or stop at `max_seconds`) from `concurrency`
    closed-loop workers; `probe` is called just before and just after the measured part.
    Several `request`s are sent in turn (all workers take the next one), e.g. distinct prompts
    that no cache or batch can serve from another's work."""
    bodies = itertools.cycle([request] if isinstance(request, bytes) else request)
    conns = list(await asyncio.gather(*(_connect(host, port) for _ in range(concurrency))))
    result = LevelResult(concurrency)
    try:
        warm = _Budget(max(warmup, concurrency), max_seconds)
        conns = list(
            await asyncio.gather(
                *(_worker(host, port, c, bodies, warm, None, timeout) for c in conns)
            )
        )
        budget = _Budget(requests, max_seconds)
        before = probe()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        conns = list(
            await asyncio.gather(
                *(_worker(host, port, c, bodies, budget, result, timeout) for c in conns)
            )
        )
        result.elapsed_s = time.perf_counter() - t0
        result.loadgen_cpu_s = time.process_time() - cpu0
        result.probes = (before, probe())
    finally:
        for conn in conns:
            conn.close()
    return result


# --- the trivial server: a fixed reply of the mock's size, to measure the generator alone ----

_TRIVIAL_BODY = (
    b'{"id":"chatcmpl-trivial","object":"chat.completion","created":0,"model":"trivial",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the trivial '
    b'server."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,'
    b'"total_tokens":2}}'
)
_TRIVIAL_REPLY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(_TRIVIAL_BODY)}\r\n\r\n".encode()
    + _TRIVIAL_BODY
)


class _TrivialServer(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies = 0
        while (end := self.buffer.find(_HEAD_END)) >= 0:
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            stop = end + len(_HEAD_END) + length
            if len(self.buffer) < stop:
                break
            del self.buffer[:stop]
            replies += 1
        if replies and self.transport is not None:
            self.transport.write(_TRIVIAL_REPLY * replies)


async def serve_trivial(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_TrivialServer, host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve one fixed reply to every request")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_trivial(args.host, args.port))


if __name__ == "__main__":
    main()
