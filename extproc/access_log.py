"""Envoy's gRPC access log service (ALS): what happened after the decision.

Envoy streams one entry per finished request, off the request path. For each routed request the
router learns the model's health from the response status, and records on the decision's trace
what the upstream reported: status, and token usage (which Envoy's json_to_metadata filter reads
from non-streaming JSON responses into the `meritorder.usage` metadata namespace, in OpenAI's
naming or the Responses/Anthropic one). The tenant's
budget is then corrected from the estimate to the measured cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import structlog
from envoy.data.accesslog.v3.accesslog_pb2 import HTTPAccessLogEntry
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage, StreamAccessLogsResponse
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Status, StatusCode

from extproc.observer import UsageBook
from extproc.processor import MODEL_HEADER
from extproc.streams import next_unless
from meritorder import telemetry
from meritorder.endpoints import usage_tokens
from meritorder.router import Router

log = structlog.get_logger("meritorder.access_log")

USAGE_NAMESPACE = "meritorder.usage"
# How long an SSE response's entry waits for the observer's report (extproc/observer.py): both
# follow the stream's end, the observer's usually first (the log is flushed every 0.2 s).
STREAM_USAGE_WAIT_S = 2.0


class AccessLogService(als_pb2_grpc.AccessLogServiceServicer):
    def __init__(self, router: Router, usage_book: UsageBook | None = None) -> None:
        self.router = router
        self.usage_book = usage_book  # streamed usage, from the response observer
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
            for entry in message.http_logs.log_entry:
                await self.record(entry)
        return StreamAccessLogsResponse()

    async def record(self, entry: HTTPAccessLogEntry) -> None:
        model = entry.request.request_headers.get(MODEL_HEADER)
        # Only requests that were routed and sent to a cluster say anything about a model.
        if not model or not entry.common_properties.upstream_cluster:
            return
        status = entry.response.response_code.value
        self.router.health.observe_status(model, status)
        pending = self.router.ledger.pop(entry.request.request_id)
        if pending is None:
            return
        usage = entry.common_properties.metadata.filter_metadata.get(USAGE_NAMESPACE)
        fields = usage.fields if usage is not None else {}
        prompt, completion = usage_tokens({k: v.number_value for k, v in fields.items()})
        missing = None
        if (prompt is None or completion is None) and _is_stream(entry):
            streamed = None
            if self.usage_book is not None:
                streamed = await self.usage_book.take(entry.request.request_id, STREAM_USAGE_WAIT_S)
            if streamed is not None:
                prompt, completion = streamed.prompt_tokens, streamed.completion_tokens
            if prompt is None or completion is None:
                # Not counted as measured: the estimate stands in the budget. Counted and marked.
                missing = "not_observed" if streamed is None else "not_in_stream"
                telemetry.METRICS.errors.labels(type=f"stream_usage_{missing}").inc()
                log.warning(
                    "stream usage missing", request_id=entry.request.request_id, why=missing
                )
        measured = None
        if prompt is not None and completion is not None:
            measured = (prompt + completion) * pending.cost_per_million / 1e6
            telemetry.METRICS.tokens.labels(model=model, kind="input").inc(prompt)
            telemetry.METRICS.tokens.labels(model=model, kind="output").inc(completion)
        telemetry.METRICS.upstream_responses.labels(model=model, status=str(status)).inc()

        parent = pending.span_context
        ctx = trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        with telemetry.tracer().start_as_current_span("meritorder.response", context=ctx) as span:
            span.set_attribute("meritorder.model", model)
            span.set_attribute("http.response.status_code", status)
            span.set_attribute("meritorder.cost.estimate", pending.estimated_cost)
            if prompt is not None:
                span.set_attribute("gen_ai.usage.input_tokens", prompt)
            if completion is not None:
                span.set_attribute("gen_ai.usage.output_tokens", completion)
            if measured is not None:
                span.set_attribute("meritorder.cost.measured", measured)
            if missing is not None:
                span.set_attribute("meritorder.usage.missing", missing)
            if status >= 500 or status == 0:
                span.set_status(Status(StatusCode.ERROR, f"upstream status {status}"))
                span.set_attribute("error.type", str(status))

        if measured is not None and pending.tenant is not None and pending.budget_window_s:
            correction = measured - pending.estimated_cost
            await self.router.budgets.charge(pending.tenant, correction, pending.budget_window_s)


def _is_stream(entry: HTTPAccessLogEntry) -> bool:
    """An SSE response (its content-type: additional_response_headers_to_log in deploy/envoy)."""
    content_type: str = entry.response.response_headers.get("content-type", "")
    return content_type.startswith("text/event-stream")
