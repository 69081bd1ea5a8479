"""Envoy's gRPC access log service (ALS): what happened after the decision.

Envoy streams one entry per finished request, off the request path. A routed request's entry
carries the decision's facts (the `meritorder.decision` dynamic metadata the processor set, see
`meritorder.outcomes`) and, for non-streaming JSON responses, the token usage that Envoy's
json_to_metadata filter read into the `meritorder.usage` namespace. This adapter turns the entry
into an `Outcome` and hands it to the core, which settles it (health, budget, telemetry): any
router process can, whichever one decided the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import grpc
from envoy.data.accesslog.v3.accesslog_pb2 import AccessLogCommon, HTTPAccessLogEntry
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage, StreamAccessLogsResponse
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct, Value

from extproc.streams import next_unless
from meritorder.endpoints import usage_tokens
from meritorder.outcomes import DECISION_NAMESPACE, Outcome, Pending
from meritorder.ports import RoutingCore

USAGE_NAMESPACE = "meritorder.usage"
# Entries settled between two turns of the event loop: a batch of hundreds (a busy second's
# worth) would otherwise hold every request in flight for milliseconds.
YIELD_EVERY = 8


class AccessLogService(als_pb2_grpc.AccessLogServiceServicer):
    def __init__(self, core: RoutingCore) -> None:
        self.core = core
        self._end = asyncio.Event()

    def end_streams(self) -> None:
        """End the open log streams (status OK); a stream opened later is served as usual.

        Envoy keeps one log stream open for as long as the server lets it, which would hold a
        stopping server for its whole grace period; once ended, Envoy opens a new stream on its
        next flush, to a healthy router if it has one.
        """
        self._end.set()
        self._end = asyncio.Event()

    async def StreamAccessLogs(
        self,
        request_iterator: AsyncIterator[StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext,
    ) -> StreamAccessLogsResponse:
        end = self._end
        requests = aiter(request_iterator)
        while (message := await next_unless(requests, end)) is not None:
            for index, entry in enumerate(message.http_logs.log_entry):
                if index and not index % YIELD_EVERY:
                    # Envoy flushes a batch of entries at once (every 0.2 s in deploy/envoy):
                    # let the requests waiting on this event loop through between them.
                    await asyncio.sleep(0)
                await self.record(entry)
        return StreamAccessLogsResponse()

    async def record(self, entry: HTTPAccessLogEntry) -> None:
        outcome = outcome_of(entry)
        if outcome is not None:
            await self.core.settle(outcome)


def outcome_of(entry: HTTPAccessLogEntry) -> Outcome | None:
    """The outcome of a routed request that was sent to an upstream; None for anything else
    (requests the router answered itself, passed through, or never routed)."""
    metadata = entry.common_properties.metadata.filter_metadata
    if DECISION_NAMESPACE not in metadata or not entry.common_properties.upstream_cluster:
        return None
    pending = Pending.from_fields(struct_values(metadata[DECISION_NAMESPACE]))
    if pending is None:
        return None
    usage: Mapping[str, Value] = (
        metadata[USAGE_NAMESPACE].fields if USAGE_NAMESPACE in metadata else {}
    )
    # A streamed answer's usage is in its events: the response observer settles it.
    counts = {k: v.number_value for k, v in usage.items() if v.HasField("number_value")}
    prompt, completion = usage_tokens(counts)
    timing = entry.common_properties
    return Outcome(
        request_id=entry.request.request_id,
        pending=pending,
        status=entry.response.response_code.value,
        prompt_tokens=prompt,
        completion_tokens=completion,
        duration_s=_seconds(timing, "time_to_last_downstream_tx_byte"),
        first_byte_s=_seconds(timing, "time_to_first_upstream_rx_byte"),
        response_id=(usage["response_id"].string_value if "response_id" in usage else "") or None,
    )


def struct_values(struct: Struct) -> dict[str, str | float | None]:
    """A flat Struct's strings and numbers (what the decision's facts are made of), without
    json_format's generic walk (it costs more than the rest of an outcome)."""
    out: dict[str, str | float | None] = {}
    for key, value in struct.fields.items():
        kind = value.WhichOneof("kind")
        out[key] = (
            value.string_value
            if kind == "string_value"
            else value.number_value
            if kind == "number_value"
            else None
        )
    return out


def _seconds(timing: AccessLogCommon, name: str) -> float | None:
    if not timing.HasField(name):
        return None
    duration: Duration = getattr(timing, name)
    return float(duration.seconds) + float(duration.nanos) / 1e9
