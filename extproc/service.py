"""The grpc.aio servicer that drives one ext_proc stream per HTTP request."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest, ProcessingResponse

from extproc.processor import Processor, StreamState
from meritorder.telemetry import record_error


class ExternalProcessorService(external_processor_pb2_grpc.ExternalProcessorServicer):
    def __init__(self, processor: Processor) -> None:
        self.processor = processor

    async def Process(
        self,
        request_iterator: AsyncIterator[ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ProcessingResponse]:
        state = StreamState()
        for key, value in context.invocation_metadata() or ():
            if key in ("traceparent", "tracestate") and isinstance(value, str):
                state.envoy_trace[key] = value
        try:
            async for request in request_iterator:
                yield await self.processor.process(state, request)
        finally:
            if state.span is not None:  # the client or Envoy gave up before a decision
                record_error(state.span, "stream_closed", 499)
                state.end_span()
