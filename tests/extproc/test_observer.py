"""The response observer: streamed usage parsed off the observe-only ext_proc stream, and the
book the access log takes it from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from envoy.config.core.v3.base_pb2 import HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest
from google.protobuf.struct_pb2 import Struct

from extproc.observer import ResponseObserver, UsageBook
from meritorder.endpoints import Usage


def response_headers(path: str, content_type: str, request_id: str = "r1") -> ProcessingRequest:
    message = ProcessingRequest()
    header = HeaderValue(key="content-type", raw_value=content_type.encode())
    message.response_headers.headers.headers.append(header)
    attributes = Struct()
    attributes.update({"request.method": "POST", "request.path": path, "request.id": request_id})
    message.attributes["envoy.filters.http.ext_proc"].CopyFrom(attributes)
    return message


def body(chunk: bytes, end: bool = False) -> ProcessingRequest:
    message = ProcessingRequest()
    message.response_body.body = chunk
    message.response_body.end_of_stream = end
    return message


async def stream(messages: Iterable[ProcessingRequest]) -> AsyncIterator[ProcessingRequest]:
    for message in messages:
        yield message


MESSAGES_SSE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
    b'{"input_tokens":11,"output_tokens":1}}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":6}}\n\n'
)


async def test_an_sse_response_leaves_its_usage_under_the_request_id() -> None:
    book = UsageBook()
    chunks = [MESSAGES_SSE[:30], MESSAGES_SSE[30:100], MESSAGES_SSE[100:]]
    messages = [response_headers("/v1/messages?beta=true", "text/event-stream; charset=utf-8")]
    messages += [body(c, end=i == len(chunks) - 1) for i, c in enumerate(chunks)]
    await ResponseObserver(book).observe(stream(messages))
    assert await book.take("r1", timeout_s=0) == Usage(11, 6)
    assert await book.take("r1", timeout_s=0) is None  # taken once


async def test_a_stream_cut_short_still_reports_what_it_read() -> None:
    book = UsageBook()
    messages = [
        response_headers("/v1/messages", "text/event-stream"),
        body(MESSAGES_SSE[: MESSAGES_SSE.index(b"\n\n") + 2]),
    ]
    await ResponseObserver(book).observe(stream(messages))
    assert await book.take("r1", timeout_s=0) == Usage(11, 1)


async def test_json_responses_and_unrouted_paths_are_left_to_the_access_log() -> None:
    book = UsageBook()
    json_reply = [response_headers("/v1/messages", "application/json"), body(b"{}", end=True)]
    unrouted = [response_headers("/v1/other", "text/event-stream", "r2"), body(b"x", end=True)]
    for messages in (json_reply, unrouted):
        await ResponseObserver(book).observe(stream(messages))
    assert await book.take("r1", timeout_s=0) is None
    assert await book.take("r2", timeout_s=0) is None


async def test_the_access_log_may_ask_before_the_observer_reports() -> None:
    book = UsageBook()
    waiting = asyncio.ensure_future(book.take("r1", timeout_s=5))
    await asyncio.sleep(0)  # the access log is waiting now
    book.report("r1", Usage(1, 2))
    assert await waiting == Usage(1, 2)


async def test_unclaimed_reports_are_dropped_oldest_first() -> None:
    book = UsageBook(capacity=2)
    for i in range(3):
        book.report(f"r{i}", Usage(i, i))
    assert await book.take("r0", timeout_s=0) is None
    assert await book.take("r2", timeout_s=0) == Usage(2, 2)
