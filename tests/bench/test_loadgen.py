"""bench/loadgen.py: several requests are sent in turn, whichever connection is free."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from bench.loadgen import build_request, run_level

REPLY = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def test_several_requests_are_sent_in_turn() -> None:
    received: Counter[bytes] = Counter()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):  # the client hangs up at the end
            await answer(reader, writer)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            received[await reader.readexactly(length)] += 1
            writer.write(REPLY)
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bodies = (b"one", b"two", b"three")
    requests = [build_request("127.0.0.1", port, "/x", body) for body in bodies]
    try:
        result = await run_level(
            "127.0.0.1", port, requests, concurrency=2, requests=21, warmup=0, max_seconds=10
        )
    finally:
        server.close()

    assert result.errors == 0 and len(result.latencies_ns) == 21
    assert set(received) == set(bodies)
    assert max(received.values()) - min(received.values()) <= 1  # each in turn, none favoured
