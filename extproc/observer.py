"""Usage of streamed responses: a second, observe-only ext_proc stream per response.

Envoy's json_to_metadata filter reads usage from JSON response bodies only; an SSE stream's
usage is in its events (the chat `usage` chunk, Responses `response.completed`, Anthropic
`message_start`/`message_delta`). deploy/envoy/envoy.yaml runs a second ext_proc filter in
`observability_mode`: Envoy sends it copies of the response headers and body chunks and never
waits for an answer, so the stream is neither delayed nor buffered. The observer parses the
events with the API's spec; the filter forwards the request's `meritorder.decision` dynamic
metadata (the decision's facts, `meritorder.outcomes.Pending`), so whichever router process
this stream reaches settles the measured usage with the core (`RoutingCore.settle_usage`), as
the access log does for JSON responses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest

from extproc.access_log import struct_values
from meritorder import telemetry
from meritorder.endpoints import StreamUsage, spec_for
from meritorder.outcomes import DECISION_NAMESPACE, Pending
from meritorder.ports import RoutingCore

log = structlog.get_logger("meritorder.observer")

# gRPC metadata that deploy/envoy/envoy.yaml sets on the observer filter's streams.
OBSERVER_METADATA = ("x-meritorder-observer", "usage")
# Sent with the response headers (response_attributes in deploy/envoy/envoy.yaml).
_ATTRIBUTES = ("request.method", "request.path", "request.id")


@dataclass
class _Observed:
    request_id: str = ""
    api: str = ""
    parser: StreamUsage | None = None
    pending: Pending | None = None


class ResponseObserver:
    """Reads one observe-only ext_proc stream; answers nothing (Envoy expects no answer)."""

    def __init__(self, core: RoutingCore) -> None:
        self.core = core

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
                        await self._report(seen)
        finally:
            if seen.parser is not None:  # the stream ended without its last chunk (a reset)
                await self._report(seen)

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
        metadata = message.metadata_context.filter_metadata
        facts = metadata.get(DECISION_NAMESPACE)
        seen.pending = Pending.from_fields(struct_values(facts)) if facts is not None else None
        if seen.pending is None:
            return  # a stream the router did not route
        seen.request_id = attributes.get("request.id", "")
        seen.api = spec.api
        seen.parser = spec.stream_usage()

    async def _report(self, seen: _Observed) -> None:
        assert seen.parser is not None and seen.pending is not None
        usage = seen.parser.finish()
        if seen.parser.skipped:
            telemetry.METRICS.errors.labels(type="stream_event_unreadable").inc(seen.parser.skipped)
        seen.parser = None
        if usage.prompt_tokens is None or usage.completion_tokens is None:
            # The estimate stands in the budget (the client may have declined include_usage, or
            # the stream was cut): counted and logged, never silent.
            telemetry.METRICS.errors.labels(type="stream_usage_not_in_stream").inc()
            log.warning("stream usage missing", request_id=seen.request_id, api=seen.api)
            return
        await self.core.settle_usage(
            seen.request_id, seen.pending, usage.prompt_tokens, usage.completion_tokens
        )
