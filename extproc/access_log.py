"""Envoy's gRPC access log service (ALS): learn upstream health from the responses Envoy saw.

Envoy streams one entry per finished request, off the request path, so the router learns each
model's response statuses without a response-phase round trip through ext_proc.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage, StreamAccessLogsResponse

from extproc.processor import MODEL_HEADER
from meritorder.health import HealthMonitor


class AccessLogService(als_pb2_grpc.AccessLogServiceServicer):
    def __init__(self, health: HealthMonitor) -> None:
        self.health = health

    async def StreamAccessLogs(
        self,
        request_iterator: AsyncIterator[StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext,
    ) -> StreamAccessLogsResponse:
        async for message in request_iterator:
            for entry in message.http_logs.log_entry:
                model = entry.request.request_headers.get(MODEL_HEADER)
                # Only requests that were routed and sent to a cluster say anything about it.
                if model and entry.common_properties.upstream_cluster:
                    self.health.observe_status(model, entry.response.response_code.value)
        return StreamAccessLogsResponse()
