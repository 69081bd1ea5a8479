#!/usr/bin/env python3
"""MOCK OpenAI-compatible model servers for the demo and the tests. Not a model: it generates
nothing, it answers chat and text completions (plain JSON or SSE) with a reply that names the
mock that served it and the model id it was sent.

    python deploy/demo/mock_upstream.py small=8101 coder=8102 large=8103

Standard library only. Each response is sent in one write with TCP_NODELAY, so the mock does not
distort latency measurements. Test hooks:
  - `x-mock-status: 503` on a request makes the mock answer with that status;
  - `x-mock-stream-delay-ms: 50` spaces SSE events out (default: the whole stream in one write);
  - `GET /__mock/requests` lists the requests it received, on any path and method, answered or
    not (`DELETE` clears the list); `/__mock/*` and `/health*` are not recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import time
from typing import Any

STREAM_CHUNKS = 5
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class MockModel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        line = await reader.readline()
        if not line:
            return False
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = header.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        body = await _read_body(reader, headers)
        keep_alive = headers.get("connection", "").lower() != "close"

        if path.startswith("/__mock/requests"):
            if method == "DELETE":
                self.requests.clear()
            writer.write(_response(200, json.dumps(self.requests).encode()))
        elif path.startswith("/health"):
            writer.write(_response(200, b'{"status":"ok"}'))
        else:
            # Everything that reaches the mock, so a test can tell that nothing should have.
            self.requests.append(
                {
                    "method": method,
                    "path": path,
                    "headers": headers,
                    "body": body.decode("utf-8", "replace"),
                }
            )
            if method == "POST" and path.split("?")[0] in (
                "/v1/chat/completions",
                "/v1/completions",
            ):
                await self._complete(writer, path, headers, body)
            else:
                writer.write(
                    _response(
                        404,
                        b'{"error":{"message":"mock: no such endpoint",'
                        b'"type":"invalid_request_error"}}',
                    )
                )
        await writer.drain()
        return keep_alive

    async def _complete(
        self, writer: asyncio.StreamWriter, path: str, headers: dict[str, str], raw: bytes
    ) -> None:
        forced = headers.get("x-mock-status")
        if forced and forced != "200":
            status = int(forced)
            writer.write(
                _response(
                    status,
                    json.dumps(
                        {
                            "error": {
                                "message": f"mock {self.name}: forced {status}",
                                "type": "server_error",
                            }
                        }
                    ).encode(),
                )
            )
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            writer.write(
                _response(
                    400,
                    b'{"error":{"message":"mock: invalid JSON","type":"invalid_request_error"}}',
                )
            )
            return
        model = str(body.get("model"))
        text = f"Hello from the mock model '{self.name}' (served as model={model})."
        chat = path.startswith("/v1/chat")
        if body.get("stream"):
            head, events = _sse(self.name, model, text, chat)
            delay = float(headers.get("x-mock-stream-delay-ms", "0")) / 1000
            if not delay:
                writer.write(head + b"".join(events))
                return
            writer.write(head)
            for event in events:
                await writer.drain()
                await asyncio.sleep(delay)
                writer.write(event)
            return
        created = int(time.time())
        usage = {
            "prompt_tokens": max(1, len(raw) // 4),
            "completion_tokens": len(text.split()),
            "total_tokens": max(1, len(raw) // 4) + len(text.split()),
        }
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
            reply = {
                "id": f"chatcmpl-mock-{created}",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
            reply = {
                "id": f"cmpl-mock-{created}",
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
        writer.write(_response(200, json.dumps(reply).encode(), extra={"x-mock-model": self.name}))


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return b"".join(chunks)
            chunks.append(chunk[:-2])
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


def _response(status: int, body: bytes, extra: dict[str, str] | None = None) -> bytes:
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _sse(name: str, model: str, text: str, chat: bool) -> tuple[bytes, list[bytes]]:
    """The head and the HTTP chunks of an SSE response: one chunk per event, then the last chunk."""
    words = text.split(" ")
    step = max(1, -(-len(words) // STREAM_CHUNKS))
    pieces = [" ".join(words[i : i + step]) + " " for i in range(0, len(words), step)]
    created = int(time.time())
    events = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if chat:
            delta: dict[str, Any] = (
                {"content": piece} if i else {"role": "assistant", "content": piece}
            )
            choice: dict[str, Any] = {
                "index": 0,
                "delta": delta,
                "finish_reason": "stop" if last else None,
            }
            event = {
                "id": f"chatcmpl-mock-{created}",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }
        else:
            choice = {
                "index": 0,
                "text": piece,
                "finish_reason": "stop" if last else None,
                "logprobs": None,
            }
            event = {
                "id": f"cmpl-mock-{created}",
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [choice],
            }
        events.append(f"data: {json.dumps(event)}\n\n".encode())
    events.append(b"data: [DONE]\n\n")
    head = (
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        f"x-mock-model: {name}\r\ntransfer-encoding: chunked\r\n\r\n"
    ).encode()
    chunks = [f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in events]
    return head, [*chunks, b"0\r\n\r\n"]


async def main(specs: list[str], host: str) -> None:
    servers = []
    for spec in specs:
        name, _, port = spec.partition("=")
        model = MockModel(name)
        servers.append(await asyncio.start_server(model.handle, host, int(port)))
        print(f"mock model {name!r} listening on http://{host}:{port}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help="NAME=PORT for each mock model")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.models, args.host))
