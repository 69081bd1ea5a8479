#!/usr/bin/env python3
"""MOCK model servers for the demo and the tests. Not a model: it generates nothing. It answers
the five APIs the router serves, plain JSON or SSE, in each API's real shape (ids, usage, tool
calls when tools are given, Anthropic content blocks and event names), with a reply that names
the mock that served it and the model id it was sent:

    POST /v1/chat/completions, /v1/completions   OpenAI chat and text completions
    POST /v1/embeddings                           OpenAI embeddings (floats or base64)
    POST /v1/responses                            OpenAI Responses API
    POST /v1/messages                             Anthropic Messages API

    python deploy/demo/mock_upstream.py small=8101 coder=8102 large=8103

Standard library only. Each response is sent in one write with TCP_NODELAY, so the mock does not
distort latency measurements. Test hooks:
  - `x-mock-status: 503` on a request makes the mock answer with that status;
  - `x-mock-stream-delay-ms: 50` spaces SSE events out (default: the whole stream in one write);
  - `x-mock-stream-hold: 1` sends a stream's first content event, then holds the rest until
    `POST /__mock/release` (so a test sees an event arrive before the last one exists);
  - `GET /__mock/requests` lists the requests it received, on any path and method, answered or
    not (`DELETE` clears the list); `/__mock/*` and `/health*` are not recorded;
  - `x-mock-hold: 1` keeps the request's slot of the load model (below) taken, before answering,
    until `POST /__mock/release` (which also releases held streams).

A load model per mock, so that it behaves like a (tiny) inference pool: `--load NAME:OPTIONS`
with `concurrency=N` (requests served at once; beyond it they wait in a FIFO queue),
`token_ms=MS` (service time per output token) and `kv_tokens=N` (the KV-cache capacity, in
tokens of the running requests). Without `--load` a mock serves everything at once, at once.
`GET /metrics` reports that real state in vLLM's Prometheus format (it is still a MOCK):
`vllm:num_requests_running`, `vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc` and the
`vllm:time_to_first_token_seconds` histogram.

    python deploy/demo/mock_upstream.py small=8101 large=8103 --load small:concurrency=2,token_ms=20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import socket
import struct
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
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


# vLLM's buckets for time to first token (vllm/engine/metrics.py), in seconds.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
# vLLM's buckets for inter-token latency, in seconds.
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
               7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip


@dataclass(frozen=True)
class Load:
    """A mock's load model: `concurrency` slots (None: unlimited), `token_ms` of service per
    output token, and a KV cache of `kv_tokens` tokens shared by the running requests."""

    concurrency: int | None = None
    token_ms: float = 0.0
    kv_tokens: int = 8192

    @classmethod
    def parse(cls, options: str) -> Load:
        """`concurrency=2,token_ms=20,kv_tokens=4096` (any subset)."""
        values: dict[str, Any] = {}
        for option in filter(None, options.split(",")):
            key, _, value = option.partition("=")
            if key not in ("concurrency", "token_ms", "kv_tokens"):
                raise ValueError(f"unknown load option {key!r}: concurrency, token_ms, kv_tokens")
            values[key] = float(value) if key == "token_ms" else int(value)
        return cls(**values)


@dataclass
class Slots:
    """A FIFO queue in front of the load model's slots: a request waits while all are taken, and
    a leaving request hands its slot to the longest waiting one."""

    load: Load = field(default_factory=Load)
    running: dict[int, int] = field(default_factory=dict)  # ticket -> its tokens in the KV cache
    waiting: deque[tuple[int, int, asyncio.Future[None]]] = field(default_factory=deque)
    ttft_counts: list[int] = field(default_factory=lambda: [0] * len(TTFT_BUCKETS))
    ttft_sum: float = 0.0
    ttft_count: int = 0
    itl_counts: list[int] = field(default_factory=lambda: [0] * len(ITL_BUCKETS))
    itl_sum: float = 0.0
    itl_count: int = 0
    _next: int = 0

    def _free(self) -> bool:
        limit = self.load.concurrency
        return limit is None or len(self.running) < limit

    async def enter(self, tokens: int) -> int:
        """Take a slot for a request of `tokens` tokens, waiting in line if none is free."""
        self._next += 1
        ticket = self._next
        if self._free() and not self.waiting:
            self.running[ticket] = tokens
            return ticket
        admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((ticket, tokens, admitted))
        try:
            await admitted
        except asyncio.CancelledError:  # the client went away while it waited
            self.waiting = deque(w for w in self.waiting if w[0] != ticket)
            self.leave(ticket)
            raise
        return ticket

    def leave(self, ticket: int) -> None:
        """Free `ticket`'s slot and admit the waiting requests it makes room for, in order."""
        self.running.pop(ticket, None)
        while self.waiting and self._free():
            waiter, tokens, admitted = self.waiting.popleft()
            if admitted.done():
                continue
            self.running[waiter] = tokens
            admitted.set_result(None)

    def observe_ttft(self, seconds: float) -> None:
        self.ttft_sum += seconds
        self.ttft_count += 1
        for i, bound in enumerate(TTFT_BUCKETS):
            if seconds <= bound:
                self.ttft_counts[i] += 1

    def observe_itl(self, seconds: float, tokens: int) -> None:
        """`tokens` decoded at `seconds` apart (vLLM counts one observation per token gap)."""
        self.itl_sum += seconds * tokens
        self.itl_count += tokens
        for i, bound in enumerate(ITL_BUCKETS):
            if seconds <= bound:
                self.itl_counts[i] += tokens

    def kv_usage(self) -> float:
        return min(1.0, sum(self.running.values()) / self.load.kv_tokens)

    def metrics(self, model: str) -> str:
        """This state in vLLM's Prometheus text format."""
        label = f'model_name="{model}"'
        lines = []
        for name, kind, help_, value in (
            ("vllm:num_requests_running", "gauge", "Number of requests in model execution "
             "batches.", len(self.running)),
            ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
             len(self.waiting)),
            ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
             self.kv_usage()),
        ):  # fmt: skip
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
            lines.append(f"{name}{{{label}}} {value}")
        for name, help_, buckets, counts, count, total in (
            ("vllm:time_to_first_token_seconds", "time to first token", TTFT_BUCKETS,
             self.ttft_counts, self.ttft_count, self.ttft_sum),
            ("vllm:inter_token_latency_seconds", "inter-token latency", ITL_BUCKETS,
             self.itl_counts, self.itl_count, self.itl_sum),
        ):  # fmt: skip
            lines += [f"# HELP {name} Histogram of {help_} in seconds.", f"# TYPE {name} histogram"]
            for bound, n in zip(buckets, counts, strict=True):
                lines.append(f'{name}_bucket{{{label},le="{bound}"}} {float(n)}')
            lines.append(f'{name}_bucket{{{label},le="+Inf"}} {float(count)}')
            lines.append(f"{name}_count{{{label}}} {float(count)}")
            lines.append(f"{name}_sum{{{label}}} {total}")
        return "\n".join(lines) + "\n"


class MockModel:
    def __init__(self, name: str, load: Load | None = None) -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        self._release = asyncio.Event()  # a held stream goes on when this is set
        self.slots = Slots(load or Load())
        self._holds: list[asyncio.Event] = []  # requests holding their slot until a release

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
        method, path, version = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = header.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        body = await _read_body(reader, headers)
        connection = headers.get("connection", "").lower()
        # HTTP/1.0 closes after each answer unless asked not to (how metrics scrapers read it).
        old_http = version.strip() == "HTTP/1.0"
        keep_alive = connection == "keep-alive" if old_http else connection != "close"

        if path.startswith("/__mock/release"):
            self._release.set()
            for hold in self._holds:
                hold.set()
            self._holds.clear()
            writer.write(_response(200, b'{"released":true}'))
        elif path.split("?")[0] == "/metrics":
            text = self.slots.metrics(self.name).encode()
            writer.write(_response(200, text, content_type="text/plain; version=0.0.4"))
        elif path.startswith("/__mock/requests"):
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
            if method == "POST" and path.split("?")[0] in _APIS:
                await self._serve(writer, path, headers, body)
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

    async def _serve(
        self, writer: asyncio.StreamWriter, path: str, headers: dict[str, str], raw: bytes
    ) -> None:
        """Answer through the load model: wait for a slot, hold it for the service time, answer."""
        hold = asyncio.Event() if headers.get("x-mock-hold") == "1" else None
        if hold is not None:
            self._holds.append(hold)  # registered on arrival: a release frees queued ones too
        output = len(REPLY.split())  # about the reply's length in tokens
        arrived = time.monotonic()
        ticket = await self.slots.enter(max(1, len(raw) // 4) + output)
        try:
            token_s = self.slots.load.token_ms / 1000
            self.slots.observe_ttft(time.monotonic() - arrived + token_s)
            if hold is not None:
                await hold.wait()
            if token_s:
                decoding = time.monotonic()
                await asyncio.sleep(token_s * output)  # the simulated decoding
                # measured, not assumed: a busy event loop stretches the gaps as a busy GPU would
                self.slots.observe_itl((time.monotonic() - decoding) / output, output)
            await self._complete(writer, path, headers, raw)
        finally:
            self.slots.leave(ticket)

    async def _complete(
        self, writer: asyncio.StreamWriter, path: str, headers: dict[str, str], raw: bytes
    ) -> None:
        api = _APIS[path.split("?")[0]]
        forced = headers.get("x-mock-status")
        if forced and forced != "200":
            status = int(forced)
            message = f"mock {self.name}: forced {status}"
            writer.write(_response(status, _error(api, message, "server_error")))
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            writer.write(_response(400, _error(api, "mock: invalid JSON", "invalid_request_error")))
            return
        model = str(body.get("model"))
        text = REPLY.format(name=self.name, model=model)
        usage = (max(1, len(raw) // 4), len(text.split()))
        if body.get("stream") and api != "embeddings":
            head, events = _sse(api, self.name, model, text, body, usage)
            delay = float(headers.get("x-mock-stream-delay-ms", "0")) / 1000
            hold = headers.get("x-mock-stream-hold") == "1"
            if hold:
                self._release.clear()  # before the first event: a release answers this stream
            if not delay and not hold:
                writer.write(head + b"".join(events))
                return
            writer.write(head)
            for i, event in enumerate(events):
                await writer.drain()
                if hold and i == _FIRST_CONTENT[api]:
                    await self._release.wait()
                elif delay:
                    await asyncio.sleep(delay)
                writer.write(event)
            return
        reply = _REPLIES[api](model, text, body, usage)
        writer.write(_response(200, json.dumps(reply).encode(), extra={"x-mock-model": self.name}))


REPLY = "Hello from the mock model '{name}' (served as model={model})."
_APIS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
}
# The index of the event after an API stream's first content event (where a hold waits).
_FIRST_CONTENT = {"chat": 1, "completions": 1, "responses": 5, "messages": 4}
_EMBEDDING_DIMENSIONS = 8


def _error(api: str, message: str, kind: str) -> bytes:
    if api == "messages":
        anthropic = "api_error" if kind == "server_error" else kind
        return json.dumps(
            {"type": "error", "error": {"type": anthropic, "message": message}}
        ).encode()
    return json.dumps({"error": {"message": message, "type": kind}}).encode()


def _tool_name(body: dict[str, Any], api: str) -> str | None:
    """The first tool's name when the request offers tools and no tool result came back yet."""
    tools = body.get("tools") or []
    if not tools or not isinstance(tools[0], dict):
        return None
    if api == "chat":
        if any(m.get("role") == "tool" for m in body.get("messages", []) if isinstance(m, dict)):
            return None
        return str((tools[0].get("function") or {}).get("name", "tool"))
    if api == "responses":
        given = body.get("input")
        items: list[Any] = given if isinstance(given, list) else []
        if any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items):
            return None
        return str(tools[0].get("name", "tool"))
    for message in body.get("messages", []):  # messages: a tool_result block came back
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        ):
            return None
    return str(tools[0].get("name", "tool"))


def _chat(model: str, text: str, body: dict[str, Any], usage: tuple[int, int]) -> dict[str, Any]:
    tool = _tool_name(body, "chat")
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool is not None:
        call = {
            "id": "call_mock_1",
            "type": "function",
            "function": {"name": tool, "arguments": "{}"},
        }
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if tool else "stop"}
    return _openai_reply("chatcmpl", "chat.completion", model, choice, usage)


def _completion(
    model: str, text: str, body: dict[str, Any], usage: tuple[int, int]
) -> dict[str, Any]:
    choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
    return _openai_reply("cmpl", "text_completion", model, choice, usage)


def _openai_reply(
    prefix: str, kind: str, model: str, choice: dict[str, Any], usage: tuple[int, int]
) -> dict[str, Any]:
    """A non-streamed OpenAI completion object (`kind`) holding one choice."""
    return {
        "id": f"{prefix}-mock-{_unique()}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": _openai_usage(usage),
    }


def _embeddings(
    model: str, text: str, body: dict[str, Any], usage: tuple[int, int]
) -> dict[str, Any]:
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) and not isinstance(inputs[0], int) else 1
    data = []
    for i in range(count):
        vector = [round((i + 1) / (d + 2), 6) for d in range(_EMBEDDING_DIMENSIONS)]
        encoded: Any = vector
        if body.get("encoding_format") == "base64":  # the openai SDK asks for base64 by default
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    prompt = usage[0]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }


def _unique() -> str:
    """An answer's own id, unique like a real server's (feedback may name a request by it)."""
    return uuid.uuid4().hex[:24]


def _response_object(
    model: str, text: str, body: dict[str, Any], usage: tuple[int, int], status: str
) -> dict[str, Any]:
    created = int(time.time())
    tool = _tool_name(body, "responses")
    output: list[dict[str, Any]] = []
    if status == "completed":
        if tool is not None:
            output = [
                {
                    "type": "function_call",
                    "id": "fc_mock_1",
                    "call_id": "call_mock_1",
                    "name": tool,
                    "arguments": "{}",
                    "status": "completed",
                }
            ]
        else:
            output = [_output_message(text)]
    return {
        "id": f"resp_mock_{_unique()}",
        "object": "response",
        "created_at": created,
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": body.get("tools", []),
        "usage": (
            {
                "input_tokens": usage[0],
                "output_tokens": usage[1],
                "total_tokens": sum(usage),
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            }
            if status == "completed"
            else None
        ),
    }


def _output_message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_mock_1",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _responses(
    model: str, text: str, body: dict[str, Any], usage: tuple[int, int]
) -> dict[str, Any]:
    return _response_object(model, text, body, usage, "completed")


def _message(model: str, text: str, body: dict[str, Any], usage: tuple[int, int]) -> dict[str, Any]:
    tool = _tool_name(body, "messages")
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if tool is not None:
        content = [{"type": "tool_use", "id": "toolu_mock_1", "name": tool, "input": {}}]
    return {
        "id": f"msg_mock_{_unique()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if tool else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


_REPLIES = {
    "chat": _chat,
    "completions": _completion,
    "embeddings": _embeddings,
    "responses": _responses,
    "messages": _message,
}


def _openai_usage(usage: tuple[int, int]) -> dict[str, int]:
    return {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return b"".join(chunks)
            chunks.append(chunk[:-2])
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


def _response(
    status: int,
    body: bytes,
    extra: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> bytes:
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        f"content-type: {content_type}",
        f"content-length: {len(body)}",
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _sse(
    api: str, name: str, model: str, text: str, body: dict[str, Any], usage: tuple[int, int]
) -> tuple[bytes, list[bytes]]:
    """The head and the HTTP chunks of an SSE response: one chunk per event, then the last chunk."""
    words = text.split(" ")
    step = max(1, -(-len(words) // STREAM_CHUNKS))
    pieces = [" ".join(words[i : i + step]) + " " for i in range(0, len(words), step)]
    events = _EVENTS[api](model, text, pieces, body, usage)
    head = (
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        f"x-mock-model: {name}\r\ntransfer-encoding: chunked\r\n\r\n"
    ).encode()
    chunks = [f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in events]
    return head, [*chunks, b"0\r\n\r\n"]


def _data(event: dict[str, Any], name: str | None = None) -> bytes:
    line = f"data: {json.dumps(event)}\n\n"
    return (f"event: {name}\n" + line if name else line).encode()


def _openai_events(
    model: str, text: str, pieces: list[str], body: dict[str, Any], usage: tuple[int, int]
) -> list[bytes]:
    chat = "messages" in body
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
        else:
            choice = {
                "index": 0,
                "text": piece,
                "finish_reason": "stop" if last else None,
                "logprobs": None,
            }
        events.append(_data(_chunk(chat, created, model, [choice])))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        events.append(_data({**_chunk(chat, created, model, []), "usage": _openai_usage(usage)}))
    events.append(b"data: [DONE]\n\n")
    return events


def _chunk(chat: bool, created: int, model: str, choices: list[Any]) -> dict[str, Any]:
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-mock-{created}",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
    }


def _responses_events(
    model: str, text: str, pieces: list[str], body: dict[str, Any], usage: tuple[int, int]
) -> list[bytes]:
    """The Responses API's typed events, in the order OpenAI sends them."""
    events: list[tuple[str, dict[str, Any]]] = []
    started = _response_object(model, text, body, usage, "in_progress")
    done = _response_object(model, text, body, usage, "completed")
    item = {**_output_message(""), "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": item["id"], "output_index": 0}
    events.append(("response.created", {"response": started}))
    events.append(("response.in_progress", {"response": started}))
    events.append(("response.output_item.added", {"output_index": 0, "item": item}))
    events.append(("response.content_part.added", {**where, "content_index": 0, "part": part}))
    for piece in pieces:
        events.append(("response.output_text.delta", {**where, "content_index": 0, "delta": piece}))
    events.append(("response.output_text.done", {**where, "content_index": 0, "text": text}))
    final_part = {**part, "text": text}
    events.append(("response.content_part.done", {**where, "content_index": 0, "part": final_part}))
    events.append(("response.output_item.done", {"output_index": 0, "item": _output_message(text)}))
    events.append(("response.completed", {"response": {**done, "output": [_output_message(text)]}}))
    return [
        _data({"type": kind, "sequence_number": n, **fields}, kind)
        for n, (kind, fields) in enumerate(events)
    ]


def _messages_events(
    model: str, text: str, pieces: list[str], body: dict[str, Any], usage: tuple[int, int]
) -> list[bytes]:
    """Anthropic's named events: message_start, content blocks, message_delta, message_stop."""
    message = {**_message(model, text, {}, usage), "content": [], "stop_reason": None}
    message["usage"] = {"input_tokens": usage[0], "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"message": message}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {}),
    ]
    for piece in pieces:
        delta = {"type": "text_delta", "text": piece}
        events.append(("content_block_delta", {"index": 0, "delta": delta}))
    events.append(("content_block_stop", {"index": 0}))
    stop = {"stop_reason": "end_turn", "stop_sequence": None}
    events.append(("message_delta", {"delta": stop, "usage": {"output_tokens": usage[1]}}))
    events.append(("message_stop", {}))
    return [_data({"type": kind, **fields}, kind) for kind, fields in events]


_EVENTS = {
    "chat": _openai_events,
    "completions": _openai_events,
    "responses": _responses_events,
    "messages": _messages_events,
}


async def main(specs: list[str], host: str, loads: dict[str, Load] | None = None) -> None:
    servers = []
    for spec in specs:
        name, _, port = spec.partition("=")
        model = MockModel(name, (loads or {}).get(name))
        servers.append(await asyncio.start_server(model.handle, host, int(port)))
        print(f"mock model {name!r} listening on http://{host}:{port}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help="NAME=PORT for each mock model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--load",
        action="append",
        default=[],
        metavar="NAME:OPTIONS",
        help="a mock's load model: concurrency=N,token_ms=MS,kv_tokens=N",
    )
    args = parser.parse_args()
    loads = {}
    for spec in args.load:
        name, _, options = spec.partition(":")
        loads[name] = Load.parse(options)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.models, args.host, loads))
