"""The grpc.aio servicer that drives one ext_proc stream per HTTP request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest, ProcessingResponse

from extproc.observer import OBSERVER_METADATA, ResponseObserver
from extproc.processor import Processor, StreamState
from meritorder.telemetry import record_error


class ExternalProcessorService(external_processor_pb2_grpc.ExternalProcessorServicer):
    def __init__(self, processor: Processor, observer: ResponseObserver | None = None) -> None:
        self.processor = processor
        self.observer = observer  # the observe-only streams of deploy/envoy's second filter
        self._draining = False
        self._waiting: set[asyncio.Task[object]] = set()  # answered, waiting for Envoy to close

    def drain(self) -> None:
        """End every stream whose request has been answered, now and from now on.

        Envoy keeps an ext_proc stream open until the upstream's response has ended (minutes for
        a long completion), though with the request phases answered it has nothing left to ask.
        Ending such a stream with status OK leaves the response untouched (cancelling it instead
        would reset the client's response), so a stopping server need not wait for upstreams.
        A custom Envoy config that also sends response phases loses them for the requests that
        are answered while the server drains.
        """
        self._draining = True
        for task in self._waiting:
            task.cancel(_DRAIN)

    async def Process(
        self,
        request_iterator: AsyncIterator[ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ProcessingResponse]:
        state = StreamState()
        observing = False
        for key, value in context.invocation_metadata() or ():
            if key in ("traceparent", "tracestate") and isinstance(value, str):
                state.envoy_trace[key] = value
            observing = observing or (key, value) == OBSERVER_METADATA
        if observing and self.observer is not None:
            await self._observe(request_iterator)
            return
        requests = aiter(request_iterator)
        answered = False
        try:
            while True:
                if not answered:
                    request = await anext(requests, None)
                elif self._draining:
                    return
                else:
                    request = await self._until_closed_or_drained(requests)
                if request is None:
                    return
                reply = await self.processor.process(state, request)
                yield reply
                answered = _answers_last_request_phase(request, reply)
        finally:
            if state.span is not None:  # the client or Envoy gave up before a decision
                record_error(state.span, "stream_closed", 499)
                state.end_span()

    async def _observe(self, requests: AsyncIterator[ProcessingRequest]) -> None:
        """An observe-only stream (answers nothing: Envoy waits for none), ended like an answered
        one when the server drains: a stream in flight then reports the usage read so far."""
        assert self.observer is not None
        if self._draining:
            return
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            await self.observer.observe(requests)
        except asyncio.CancelledError as cancelled:
            if not (self._draining and cancelled.args == (_DRAIN,)):
                raise
            task.uncancel()
        finally:
            self._waiting.discard(task)

    async def _until_closed_or_drained(
        self, requests: AsyncIterator[ProcessingRequest]
    ) -> ProcessingRequest | None:
        """The stream's next message, or None when Envoy closes it or the server drains.

        `drain` wakes this wait by cancelling the stream's task with a marker, which is taken
        back here: the handler then returns and the call ends with OK. Racing the read against
        an event instead would cost two tasks per request on the hot path.
        """
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            return await anext(requests, None)
        except asyncio.CancelledError as cancelled:
            if not (self._draining and cancelled.args == (_DRAIN,)):
                raise
            task.uncancel()
            return None
        finally:
            self._waiting.discard(task)


_DRAIN = "meritorder: server draining"


def _answers_last_request_phase(request: ProcessingRequest, reply: ProcessingResponse) -> bool:
    """Whether Envoy will send nothing more about the request (deploy/envoy sends no response
    phases): the buffered body was answered, the request was answered by the router itself, or
    it has no body."""
    kind = reply.WhichOneof("response")
    if kind in ("request_body", "immediate_response"):
        return True
    return kind == "request_headers" and bool(request.request_headers.end_of_stream)
