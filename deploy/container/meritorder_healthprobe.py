"""gRPC health probe for the router: exit 0 when the service is SERVING, else non-zero.

    python -m meritorder_healthprobe [--addr 127.0.0.1:50051] [--service NAME] [--timeout 1]

Kubernetes probes the router with its native `grpc:` probe; this is for the image's HEALTHCHECK
(podman, docker), compose files and humans. Exit status: 0 SERVING, 1 any other status
(NOT_SERVING while draining, SERVICE_UNKNOWN), 2 unreachable or no answer in time.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def probe(address: str, service: str = "", timeout_s: float = 1.0) -> tuple[int, str]:
    """(exit status, what to print) for one Health/Check call."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.NOT_FOUND:
                return 1, f"{address}: service {service!r} unknown"
            return 2, f"{address}: {code.name if code else 'error'}: {error.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return (0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1), status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meritorder_healthprobe", description=__doc__)
    default = f"127.0.0.1:{os.environ.get('MERITORDER_PORT', '50051')}"
    parser.add_argument("--addr", default=default, help=f"router address (default {default})")
    parser.add_argument("--service", default="", help="'' is the whole server")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds")
    args = parser.parse_args(argv)
    status, message = probe(args.addr, args.service, args.timeout)
    print(message, file=sys.stdout if status == 0 else sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
