"""The demo and test stack's ports: every server of one stack gets its own."""

from __future__ import annotations

import socket

from devstack import Ports, free_ports


def test_the_free_ports_of_one_stack_are_all_different() -> None:
    for _ in range(20):
        ports = Ports.free()
        chosen = [ports.listener, ports.router, ports.admin, ports.otlp, ports.metrics, ports.redis]
        chosen += list(ports.mocks.values())
        assert len(set(chosen)) == len(chosen)


def test_free_ports_can_be_bound_once_chosen() -> None:
    for port in free_ports(8):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
