"""Processes for the Kubernetes-topology tests: free ports, spawn with a log file, wait, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def router_command(config: Path, port: int, *extra: str) -> list[str]:
    """`meritorder serve` as the tests run it: keyword signals only, so it starts in a second."""
    return [
        sys.executable,
        "-m",
        "meritorder.cli",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--no-classifier",
        *extra,
    ]


class Processes:
    """Named child processes, each logging to workdir/NAME.log; stopped in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(
        self, name: str, cmd: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=REPO,
        )
        self.running[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_port(self, name: str, port: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(name)
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{name} not listening on {port} after {timeout}s:\n{self.log(name)}")

    def wait_http(self, name: str, url: str, timeout: float = 30) -> None:
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
        raise RuntimeError(f"{name} not ready at {url} after {timeout}s:\n{self.log(name)}")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int | None:
        process = self.running.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop_all()

    def _check_alive(self, name: str) -> None:
        code = self.running[name].poll()
        if code is not None:
            raise RuntimeError(f"{name} exited with {code}:\n{self.log(name)[-3000:]}")
