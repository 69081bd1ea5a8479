"""Processes for the Kubernetes-topology tests: the demo stack's process group, free ports, the
router command line."""

from __future__ import annotations

import sys
from pathlib import Path

from devstack import Processes, free_port, free_ports

REPO = Path(__file__).resolve().parents[2]

__all__ = ["REPO", "Processes", "free_port", "free_ports", "router_command"]


def router_command(config: Path, port: int, *extra: str) -> list[str]:
    """`meritorder serve` as the tests run it: keyword signals only, so it starts in a second."""
    return [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--no-classifier",
        *extra,
    ]
