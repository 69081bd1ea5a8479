"""The gRPC server: ext_proc, the meritorder.v1.Router API and health on one port.

Also owns the process lifecycle: policy hot reload and graceful shutdown on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import structlog
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extproc.access_log import AccessLogService
from extproc.processor import Processor
from extproc.service import ExternalProcessorService
from meritorder import telemetry
from meritorder.api import RouterService
from meritorder.classify import load_classifier
from meritorder.config import MAX_BODY_BYTES_CEILING, ConfigError, RouterConfig, load_config
from meritorder.router import Router
from meritorder.v1 import router_pb2_grpc

log = structlog.get_logger("meritorder.server")

# gRPC's own default (4 MiB) would fail the stream on a long prompt before the router could answer
# with a JSON 413. Accept twice the largest body a policy may allow (a reload may raise the limit),
# which also covers any Envoy buffer limit below it (deploy/envoy uses 8 MiB).
_GRPC_MAX_MESSAGE = 2 * MAX_BODY_BYTES_CEILING + (1 << 20)


@dataclass
class ServerOptions:
    config_path: Path
    host: str = "127.0.0.1"
    port: int = 50051
    reload_interval_s: float = 1.0
    shutdown_grace_s: float = 10.0
    reuse_port: bool = False
    metrics_port: int | None = None
    classifier: bool = True
    model_dir: Path | None = None
    force_cpu: bool = False


class ConfigWatcher:
    """Polls the policy file; a new valid file replaces the policy, an invalid one is logged."""

    def __init__(self, path: Path, router: Router) -> None:
        self.path = path
        self.router = router
        self._stamp = self._read_stamp()

    def _read_stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def check(self) -> bool:
        """Reload if the file changed; True when a new policy took effect."""
        stamp = self._read_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            config = load_config(self.path)
        except ConfigError as error:
            log.error(
                "policy rejected, keeping the last good one",
                path=str(self.path),
                problems=error.problems,
            )
            return False
        self.router.replace_config(config)
        log.info("policy reloaded", path=str(self.path))
        return True

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.check()


def build_server(
    router: Router, options: ServerOptions
) -> tuple[grpc.aio.Server, health.HealthServicer]:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE),
            ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE),
            ("grpc.so_reuseport", 1 if options.reuse_port else 0),
        ]
    )
    external_processor_pb2_grpc.add_ExternalProcessorServicer_to_server(
        ExternalProcessorService(Processor(router)), server
    )
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(AccessLogService(router), server)
    router_pb2_grpc.add_RouterServicer_to_server(RouterService(router), server)  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"{options.host}:{options.port}")
    return server, health_servicer


async def serve(config: RouterConfig, options: ServerOptions) -> None:
    """Serve until SIGTERM or SIGINT, then drain open streams for up to the grace period."""
    telemetry.setup_tracing()
    if options.metrics_port is not None:
        telemetry.METRICS.serve(options.metrics_port, options.host)
    classifier = (
        load_classifier(options.model_dir, force_cpu=options.force_cpu)
        if options.classifier
        else None
    )
    router = Router(config, classifier)
    server, health_servicer = build_server(router, options)
    await server.start()
    for service in ("", "envoy.service.ext_proc.v3.ExternalProcessor", "meritorder.v1.Router"):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "router listening",
        address=f"{options.host}:{options.port}",
        models=[m.name for m in config.models],
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = ConfigWatcher(options.config_path, router)
    tasks = [
        asyncio.create_task(watcher.run(options.reload_interval_s)),
        asyncio.create_task(
            router.health.run(lambda: router.config.models, config.routing.health_check_interval_s)
        ),
    ]
    await stop.wait()

    log.info("shutting down, draining open streams", grace_s=options.shutdown_grace_s)
    health_servicer.enter_graceful_shutdown()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await server.stop(options.shutdown_grace_s)
    if classifier is not None:
        classifier.close()
    telemetry.shutdown_tracing()
    log.info("router stopped")


def serve_workers(
    config: RouterConfig, options: ServerOptions, workers: int, json_logs: bool | None = None
) -> int:
    """Run `workers` router processes on one port (SO_REUSEPORT: the kernel spreads Envoy's
    connections over them); SIGTERM or SIGINT is passed on, and each drains its own streams.
    Returns 0 when every worker exited cleanly."""
    context = multiprocessing.get_context("spawn")
    processes = []
    for index in range(workers):
        metrics = None if options.metrics_port is None else options.metrics_port + index
        worker = replace(options, metrics_port=metrics)
        process = context.Process(
            target=_worker, args=(config, worker, json_logs), name=f"router-{index}"
        )
        process.start()
        processes.append(process)
    log.info("router workers started", workers=workers, pids=[p.pid for p in processes])

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.join()
    return 0 if all(p.exitcode == 0 for p in processes) else 1


def _worker(config: RouterConfig, options: ServerOptions, json_logs: bool | None) -> None:
    from meritorder.logs import configure_logging

    configure_logging(json_logs=json_logs)
    asyncio.run(serve(config, options))
