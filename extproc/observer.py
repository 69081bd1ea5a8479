"""Usage of streamed responses: a second, observe-only ext_proc stream per response.

Envoy's json_to_metadata filter reads usage from JSON response bodies only; an SSE stream's
usage is in its events (the chat `usage` chunk, Responses `response.completed`, Anthropic
`message_start`/`message_delta`). deploy/envoy/envoy.yaml runs a second ext_proc filter in
`observability_mode`: Envoy sends it copies of the response headers and body chunks and never
waits for an answer, so the stream is neither delayed nor buffered. The observer parses the
events with the API's spec and leaves the usage in a `UsageBook` under the request id, where the
access log takes it when Envoy reports the finished request.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest

from meritorder import telemetry
from meritorder.endpoints import StreamUsage, Usage, spec_for

log = structlog.get_logger("meritorder.observer")

# gRPC metadata that deploy/envoy/envoy.yaml sets on the observer filter's streams.
OBSERVER_METADATA = ("x-meritorder-observer", "usage")
# Sent with the response headers (response_attributes in deploy/envoy/envoy.yaml).
_ATTRIBUTES = ("request.method", "request.path", "request.id")


class UsageBook:
    """Streamed usage by request id, from the observer to the access log (one process: both
    gRPC streams of one request come from the same Envoy to the same router endpoint only when
    it has one; see docs for several)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = (
            capacity  # reports nobody takes (an unrouted stream) are dropped oldest first
        )
        self._reports: OrderedDict[str, Usage] = OrderedDict()
        self._waiting: dict[str, asyncio.Future[Usage]] = {}

    def report(self, request_id: str, usage: Usage) -> None:
        waiter = self._waiting.pop(request_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(usage)
            return
        self._reports[request_id] = usage
        while len(self._reports) > self.capacity:
            self._reports.popitem(last=False)

    async def take(self, request_id: str, timeout_s: float) -> Usage | None:
        """The usage reported for a request, waiting up to `timeout_s` for the report (the
        access log entry and the observer's last chunk race: both follow the stream's end)."""
        if request_id in self._reports:
            return self._reports.pop(request_id)
        waiter = self._waiting.setdefault(request_id, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(request_id, None)


@dataclass
class _Observed:
    request_id: str = ""
    api: str = ""
    parser: StreamUsage | None = None


class ResponseObserver:
    """Reads one observe-only ext_proc stream; answers nothing (Envoy expects no answer)."""

    def __init__(self, book: UsageBook) -> None:
        self.book = book

    async def observe(self, requests: AsyncIterator[ProcessingRequest]) -> None:
        seen = _Observed()
        try:
            async for message in requests:
                phase = message.WhichOneof("request")
                if phase == "response_headers":
                    self._headers(seen, message)
                elif phase == "response_body" and seen.parser is not None:
                    seen.parser.feed(message.response_body.body)
                    if message.response_body.end_of_stream:
                        self._report(seen)
        finally:
            if seen.parser is not None:  # the stream ended without its last chunk (a reset)
                self._report(seen)

    def _headers(self, seen: _Observed, message: ProcessingRequest) -> None:
        attributes: dict[str, str] = {}
        for struct in message.attributes.values():
            for key in _ATTRIBUTES:
                if key in struct.fields:
                    attributes[key] = struct.fields[key].string_value
        headers = {
            h.key.lower(): (h.raw_value.decode("latin-1") if h.raw_value else h.value)
            for h in message.response_headers.headers.headers
        }
        spec = spec_for(attributes.get("request.method", ""), attributes.get("request.path", ""))
        if spec is None or not headers.get("content-type", "").startswith("text/event-stream"):
            return  # not a routed API's stream: JSON usage is read by json_to_metadata
        seen.request_id = attributes.get("request.id", "")
        seen.api = spec.api
        seen.parser = spec.stream_usage()

    def _report(self, seen: _Observed) -> None:
        assert seen.parser is not None
        usage = seen.parser.finish()
        if seen.parser.skipped:
            telemetry.METRICS.errors.labels(type="stream_event_unreadable").inc(seen.parser.skipped)
        seen.parser = None
        if seen.request_id:
            self.book.report(seen.request_id, usage)
            log.debug("stream usage", request_id=seen.request_id, api=seen.api, usage=usage)
