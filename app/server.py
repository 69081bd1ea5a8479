"""The gRPC server: ext_proc, the meritorder.v1.Router API and health on one port.

Also owns the process lifecycle: policy hot reload, returning freed memory to the OS, and the
drain on SIGTERM (`RouterServer.shutdown`).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import grpc
import structlog
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extproc.access_log import AccessLogService
from extproc.observer import ResponseObserver
from extproc.processor import Processor
from extproc.service import ExternalProcessorService
from meritorder import memory, telemetry
from meritorder.api import RouterService
from meritorder.budget import BudgetStore, InMemoryBudgetStore
from meritorder.budget_redis import RedisBudgetStore
from meritorder.classify import (
    SIGNAL_CACHE_ENTRIES,
    SIGNAL_CACHE_TTL_S,
    EngineClassifier,
    load_classifier,
)
from meritorder.config import MAX_BODY_BYTES_CEILING, ConfigError, RouterConfig, load_config
from meritorder.learning.store import open_store
from meritorder.outcomes_redis import RedisOutcomes
from meritorder.pool import PoolMonitor
from meritorder.router import Router
from meritorder.sessions_redis import RedisSessions
from meritorder.v1 import router_pb2_grpc

log = structlog.get_logger("meritorder.server")

# gRPC's own default (4 MiB) would fail the stream on a long prompt before the router could answer
# with a JSON 413. Accept twice the largest body a policy may allow (a reload may raise the limit),
# which also covers any Envoy buffer limit below it (deploy/envoy uses 8 MiB).
_GRPC_MAX_MESSAGE = 2 * MAX_BODY_BYTES_CEILING + (1 << 20)

# How long the event loop may hold the GIL while the classifier's worker thread waits for it
# (Python's own default is 5 ms). The worker takes the GIL back after each step that releases
# it (tokenizing, every onnxruntime run); while the loop is busy, each such step waits out the
# whole interval. A storm of quick refusals therefore inflated the cost of a row that admission
# measures, and admission kept refusing long after the load that began it had gone: once an 8 s
# CPU hog ended, 99% were refused for 8-16 s more at 5 ms in three runs of three, against
# recovery within 8 s at 0.5 ms (bench/admission_storm.py; docs/BENCHMARKS.md, *Admission
# control*).
GIL_SWITCH_INTERVAL_MS = 0.5


@dataclass
class ServerOptions:
    config_path: Path
    host: str = "127.0.0.1"
    port: int = 50051
    reload_interval_s: float = 1.0
    # After SIGTERM: health says NOT_SERVING at once, but new streams are still served for
    # `drain_s` (load balancers need a moment to notice); then requests still being decided get
    # up to `shutdown_grace_s` before the process exits.
    drain_s: float = 2.0
    shutdown_grace_s: float = 2.0
    reuse_port: bool = False
    metrics_port: int | None = None
    classifier: bool = True
    model_dir: Path | None = None
    force_cpu: bool = False
    classifier_segments: bool = False  # the segment head (opt-in: `--classifier-segments`)
    pii_second_opinion: bool = True  # Rampart confirms model names and addresses
    # The classifier's signal cache: rows already encoded, kept by content (0: off).
    signal_cache_entries: int = SIGNAL_CACHE_ENTRIES
    signal_cache_ttl_s: float = SIGNAL_CACHE_TTL_S
    signal_cache_store: str | None = None  # a Redis URL: the cache shared by every router on it
    gil_switch_interval_ms: float = GIL_SWITCH_INTERVAL_MS  # see GIL_SWITCH_INTERVAL_MS
    state_store: str | None = None  # a Redis URL: budgets and outcomes shared by every router
    state_store_down: Literal["local", "fail"] = "local"
    learning_store: str | None = None  # memory | sqlite:PATH | redis://...; None: the config's
    # The policy file's stamp when the config passed to `serve` was read from it: a change made
    # while the process (or a worker) was starting is then reloaded at the first check.
    config_stamp: tuple[float, int] | None = None
    # Keys the learned picks' draws (Router.seed_key); serve_workers gives every worker one key,
    # so a request id draws the same whichever worker decides it. None: this process's own.
    seed_key: bytes | None = None


def file_stamp(path: Path) -> tuple[float, int] | None:
    """(mtime, size) of the policy file, or None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


class ConfigWatcher:
    """Polls the policy file; a new valid file replaces the policy, an invalid one is logged.

    `stamp` is the file's stamp when the running policy was read (default: now)."""

    def __init__(self, path: Path, router: Router, stamp: tuple[float, int] | None = None) -> None:
        self.path = path
        self.router = router
        self._stamp = stamp if stamp is not None else file_stamp(path)

    def check(self) -> bool:
        """Reload if the file changed; True when a new policy took effect."""
        stamp = file_stamp(self.path)
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


HEALTH_SERVICES = ("", "envoy.service.ext_proc.v3.ExternalProcessor", "meritorder.v1.Router")


class RouterServer:
    """The gRPC server with its services: ext_proc, access log, Router API and health."""

    def __init__(self, router: Router, options: ServerOptions) -> None:
        self.options = options
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE),
                ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE),
                ("grpc.so_reuseport", 1 if options.reuse_port else 0),
            ]
        )
        self.extproc = ExternalProcessorService(Processor(router), ResponseObserver(router))
        self.access_log = AccessLogService(router)
        self.health = health.HealthServicer()
        external_processor_pb2_grpc.add_ExternalProcessorServicer_to_server(
            self.extproc, self.server
        )
        als_pb2_grpc.add_AccessLogServiceServicer_to_server(self.access_log, self.server)
        router_pb2_grpc.add_RouterServicer_to_server(RouterService(router), self.server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.server.add_insecure_port(f"{options.host}:{options.port}")

    async def start(self) -> None:
        await self.server.start()
        for service in HEALTH_SERVICES:
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def shutdown(self, hurry: asyncio.Event | None = None) -> None:
        """Drain, then stop: what SIGTERM does. Setting `hurry` cuts the drain window short.

        During the window the server reports NOT_SERVING but still serves new streams, so a
        request that Envoy sends before it has noticed is routed, not refused. Streams whose
        request has been answered end at once, and the access log streams end at the start and
        at the end of the window (Envoy would hold them open forever); then the server stops
        taking streams and waits up to the grace period for the requests still being decided.
        """
        self.health.enter_graceful_shutdown()
        self.extproc.drain()
        self.access_log.end_streams()
        if self.options.drain_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for((hurry or asyncio.Event()).wait(), self.options.drain_s)
        self.access_log.end_streams()
        await self.server.stop(self.options.shutdown_grace_s)


def _learning_store(config: RouterConfig, options: ServerOptions) -> str:
    """Where learned estimates live: --learning-store, else the policy's `learning.store`, else
    the shared state store when there is one (so every replica learns together)."""
    if options.learning_store:
        return options.learning_store
    if config.learning.store == "memory" and options.state_store:
        return options.state_store
    return config.learning.store


def _budget_store(options: ServerOptions) -> BudgetStore | None:
    """Redis when a URL is given (with this process's own store to fall back on, if asked), else
    the router's default: this process's own."""
    if options.state_store is None:
        return None
    fallback = InMemoryBudgetStore() if options.state_store_down == "local" else None
    log.info("budgets in Redis", url=options.state_store, when_down=options.state_store_down)
    return RedisBudgetStore(options.state_store, fallback=fallback)


async def serve(config: RouterConfig, options: ServerOptions) -> None:
    """Serve until SIGTERM or SIGINT, then drain (`RouterServer.shutdown`); a second signal
    skips the rest of the drain window."""
    telemetry.setup_tracing()
    sys.setswitchinterval(options.gil_switch_interval_ms / 1000)
    if options.metrics_port is not None:
        telemetry.METRICS.serve(options.metrics_port, options.host)
    classifier = (
        load_classifier(
            options.model_dir,
            force_cpu=options.force_cpu,
            cache_entries=options.signal_cache_entries,
            cache_ttl_s=options.signal_cache_ttl_s,
            cache_url=options.signal_cache_store,
            segments=options.classifier_segments,
            pii_second_opinion=options.pii_second_opinion,
        )
        if options.classifier
        else None
    )
    required = config.required_signals(virtual=True)
    if classifier is None and required:
        log.warning(
            "no classifier: the policy's required signals cannot be computed, so every request "
            "that needs them gets routing.on_unavailable",
            required=required,
            action=config.routing.on_unavailable.action,
        )
    if classifier is not None:
        classifier.check_speed(config.routing, required=bool(required))
        queued = classifier  # bound here: mypy narrows it inside the lambda too
        telemetry.METRICS.classifier_queue.set_function(lambda: queued.queued_rows)
    budgets = _budget_store(options)
    outcomes = RedisOutcomes(options.state_store) if options.state_store else None
    sessions = RedisSessions(options.state_store) if options.state_store else None
    learning = _learning_store(config, options)
    estimates = open_store(learning, on_unavailable=config.learning.on_unavailable)
    log.info("learned estimates", store=learning.split("@")[-1])  # never a URL's password
    router = Router(
        config,
        classifier,
        budgets,
        outcomes=outcomes,
        sessions=sessions,
        estimates=estimates,
        seed_key=options.seed_key,
        pool=PoolMonitor(on_read=telemetry.record_pool_read),
    )
    server = RouterServer(router, options)
    await server.start()
    log.info(
        "router listening",
        address=f"{options.host}:{options.port}",
        models=[m.name for m in config.models],
        gil_switch_interval_ms=options.gil_switch_interval_ms,
    )

    stop, hurry = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: (hurry if stop.is_set() else stop).set())
    watcher = ConfigWatcher(options.config_path, router, options.config_stamp)
    tasks = [
        asyncio.create_task(watcher.run(options.reload_interval_s)),
        asyncio.create_task(
            router.health.run(lambda: router.config.models, config.routing.health_check_interval_s)
        ),
        asyncio.create_task(memory.release_periodically(_releasers(classifier))),
        asyncio.create_task(
            router.pool.run(
                lambda: router.config.models,
                lambda: router.config.routing.pool_refresh_s,
                lambda: router.config.routing.pool_stale_s,
                telemetry.record_pool,
            )
        ),
    ]
    await stop.wait()

    started = time.monotonic()
    log.info(
        "draining: health NOT_SERVING, still serving new streams",
        drain_s=options.drain_s,
        grace_s=options.shutdown_grace_s,
    )
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await server.shutdown(hurry)
    if isinstance(budgets, RedisBudgetStore):
        await budgets.close()
    if outcomes is not None:
        await outcomes.close()
    if sessions is not None:
        await sessions.close()
    await estimates.close()
    telemetry.shutdown_tracing()
    if classifier is not None:
        _close_within(classifier, CLASSIFIER_CLOSE_S, started)
    log.info("router stopped", after_s=round(time.monotonic() - started, 3))


# How long the classifier may take to stop once every request has been answered.
CLASSIFIER_CLOSE_S = 1.0


def _close_within(classifier: EngineClassifier, limit_s: float, started: float) -> None:
    """Close the classifier, or end the process if that takes longer than `limit_s`.

    Closing waits for the batch that is running, and a batch of a huge prompt can run on for
    many seconds (24 s for 200 KB on two cores), though its request was answered long ago
    (the decision fell back on its time budget). Every stream has ended and the spans have been
    flushed by now, so that work is worth nothing: exit with 0 rather than make SIGTERM slow.
    """

    def give_up() -> None:
        log.warning(
            "router stopped without waiting for the classifier's running batch",
            after_s=round(time.monotonic() - started, 3),
            waited_s=limit_s,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    watchdog = threading.Timer(limit_s, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        classifier.close()
    finally:
        watchdog.cancel()


def _releasers(classifier: EngineClassifier | None) -> list[Callable[[], None]]:
    """What holds memory beyond malloc's reach: the classifier's onnxruntime arena."""
    if classifier is None:
        return []
    from classifiers.session import release_arena  # onnxruntime only when a classifier runs

    session = classifier.engine.session
    return [lambda: release_arena(session)]


def serve_workers(
    config: RouterConfig, options: ServerOptions, workers: int, json_logs: bool | None = None
) -> int:
    """Run `workers` router processes on one port (SO_REUSEPORT: the kernel spreads Envoy's
    connections over them); SIGTERM or SIGINT is passed on, and each drains like `serve`.
    Returns 0 when every worker exited cleanly.

    The workers share one seed key (whichever decides a request draws the same) and the stamp
    of the policy file `config` was read from; all else the decision needs is shared only
    through the state store (`--state-store`; docs/architecture.md, "Several workers")."""
    context = multiprocessing.get_context("spawn")
    processes = []
    seed_key = options.seed_key or os.urandom(16)
    for index in range(workers):
        metrics = None if options.metrics_port is None else options.metrics_port + index
        worker = replace(options, metrics_port=metrics, seed_key=seed_key)
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
