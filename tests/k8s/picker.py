"""A stand-in for the Gateway API Inference Extension's endpoint picker (EPP).

Like the real one it is an ext_proc server: it reads the request (headers, then the buffered body),
picks one replica of the pool that serves the request's model, and names it the way the EPP
protocol says, in the `x-gateway-destination-endpoint` header and in `envoy.lb` dynamic metadata.
It picks round-robin; the real EPP scores queue depth, KV-cache use and LoRA adapters.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ImmediateResponse,
    ProcessingRequest,
    ProcessingResponse,
    TrailersResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct

DESTINATION = "x-gateway-destination-endpoint"


@dataclass(frozen=True)
class Pick:
    """What the picker saw of one request and which endpoint it chose."""

    routed_model: str | None  # x-meritorder-model as it reached the picker
    body_model: str | None  # the body's `model` as it reached the picker
    endpoint: str | None
    client_destination: str | None  # an x-gateway-destination-endpoint already on the request


class EndpointPicker(external_processor_pb2_grpc.ExternalProcessorServicer):
    def __init__(self, pools: Mapping[str, Sequence[str]]) -> None:
        """`pools`: model name (as meritorder names it) -> the pool's "ip:port" endpoints."""
        self._cycles: dict[str, Iterator[str]] = {m: itertools.cycle(p) for m, p in pools.items()}
        self.picks: list[Pick] = []

    async def Process(
        self, request_iterator: AsyncIterator[ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ProcessingResponse]:
        headers: dict[str, str] = {}
        async for request in request_iterator:
            phase = request.WhichOneof("request")
            if phase == "request_headers":
                headers = {
                    h.key: h.raw_value.decode() for h in request.request_headers.headers.headers
                }
                yield ProcessingResponse(request_headers=HeadersResponse())
            elif phase == "request_body":
                yield self._pick(headers, request.request_body.body)
            else:  # not configured to receive other phases; answer them unchanged
                yield ProcessingResponse(**{phase: _EMPTY[phase]})

    def _pick(self, headers: Mapping[str, str], body: bytes) -> ProcessingResponse:
        try:
            body_model = json.loads(body).get("model")
        except ValueError:
            body_model = None
        routed = headers.get("x-meritorder-model")
        cycle = self._cycles.get(routed or "")
        endpoint = next(cycle) if cycle else None
        self.picks.append(Pick(routed, body_model, endpoint, headers.get(DESTINATION)))
        if endpoint is None:  # the EPP protocol: nothing eligible -> 503
            return ProcessingResponse(
                immediate_response=ImmediateResponse(
                    status=HttpStatus(code=503), body=b"no endpoint", details="no_endpoint"
                )
            )
        metadata = Struct()
        metadata.update({"envoy.lb": {DESTINATION: endpoint}})
        mutation = HeaderMutation(
            set_headers=[
                HeaderValueOption(
                    header=HeaderValue(key=DESTINATION, raw_value=endpoint.encode()),
                    append_action=HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
                )
            ]
        )
        return ProcessingResponse(
            request_body=BodyResponse(response=CommonResponse(header_mutation=mutation)),
            dynamic_metadata=metadata,
        )


_EMPTY = {
    "request_trailers": TrailersResponse(),
    "response_trailers": TrailersResponse(),
    "response_headers": HeadersResponse(),
    "response_body": BodyResponse(),
}


class PickerServer:
    """Serves an EndpointPicker on 127.0.0.1:port from a background thread's event loop."""

    def __init__(self, picker: EndpointPicker, port: int) -> None:
        self.picker = picker
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: grpc.aio.Server | None = None

    def start(self) -> PickerServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._server = grpc.aio.server()
        external_processor_pb2_grpc.add_ExternalProcessorServicer_to_server(
            self.picker, self._server
        )
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(1), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
