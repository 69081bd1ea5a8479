"""A no-op ext_proc server: the floor that any grpc.aio processor in the router's mode pays.

Same processing mode and Envoy config as the router (request headers SEND, body BUFFERED, the
gRPC access log on the same port), but no parsing, signals, policy, telemetry or logging: the
headers are let through, and the body reply sets `x-meritorder-model: small` with
`clear_route_cache`, as the router's does. Comparing it with (b) splits the router's cost into
the gRPC transport and the router's own work.

    python bench/noop_extproc.py --port 50051
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage, StreamAccessLogsResponse
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ProcessingRequest,
    ProcessingResponse,
)

_OVERWRITE = HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
_HEADERS = ProcessingResponse(request_headers=HeadersResponse(response=CommonResponse()))
_BODY = ProcessingResponse(
    request_body=BodyResponse(
        response=CommonResponse(
            header_mutation=HeaderMutation(
                set_headers=[
                    HeaderValueOption(
                        header=HeaderValue(key="x-meritorder-model", raw_value=b"small"),
                        append_action=_OVERWRITE,
                    )
                ]
            ),
            clear_route_cache=True,
        )
    )
)
_EMPTY = ProcessingResponse()


class NoopProcessor(external_processor_pb2_grpc.ExternalProcessorServicer):
    async def Process(
        self,
        request_iterator: AsyncIterator[ProcessingRequest],
        context: grpc.aio.ServicerContext[ProcessingRequest, ProcessingResponse],
    ) -> AsyncIterator[ProcessingResponse]:
        async for request in request_iterator:
            phase = request.WhichOneof("request")
            if phase == "request_headers":
                yield _HEADERS
            elif phase == "request_body":
                yield _BODY
            else:
                yield _EMPTY


class DrainAccessLogs(als_pb2_grpc.AccessLogServiceServicer):
    async def StreamAccessLogs(
        self,
        request_iterator: AsyncIterator[StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext[StreamAccessLogsMessage, StreamAccessLogsResponse],
    ) -> StreamAccessLogsResponse:
        async for _ in request_iterator:
            pass
        return StreamAccessLogsResponse()


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server()
    external_processor_pb2_grpc.add_ExternalProcessorServicer_to_server(NoopProcessor(), server)
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(DrainAccessLogs(), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
