"""Upstream health, learned from periodic checks of each model's `health_url` and from the
statuses its responses carry. The policy only reads the resulting set of unhealthy models."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import structlog

from meritorder.config import ModelConfig

log = structlog.get_logger("meritorder.health")


class HealthMonitor:
    """A model is unhealthy after `failures` consecutive failed checks or 5xx responses, and
    healthy again after one success."""

    def __init__(self, failures: int = 2, timeout_s: float = 1.0) -> None:
        self.failures = failures
        self.timeout_s = timeout_s
        self._failed: dict[str, int] = {}

    @property
    def unhealthy(self) -> frozenset[str]:
        return frozenset(m for m, n in self._failed.items() if n >= self.failures)

    def observe(self, model: str, ok: bool) -> None:
        """Record one check or response outcome for `model`."""
        before = model in self.unhealthy
        self._failed[model] = 0 if ok else self._failed.get(model, 0) + 1
        after = model in self.unhealthy
        if before != after:
            log.warning("upstream health changed", model=model, healthy=not after)

    def observe_status(self, model: str, status: int) -> None:
        """A response status: 5xx, or none at all (0: the connection failed or was reset),
        counts against the upstream; anything else for it."""
        self.observe(model, 0 < status < 500)

    async def check(self, models: Iterable[ModelConfig]) -> None:
        """Probe every model with a `health_url` once, concurrently."""
        probes = [(m.name, m.health_url) for m in models if m.health_url]
        results = await asyncio.gather(*(self._probe(url) for _, url in probes))
        for (name, _), ok in zip(probes, results, strict=True):
            self.observe(name, ok)

    async def run(self, models: Callable[[], Iterable[ModelConfig]], interval_s: float) -> None:
        """Check the models of the current policy every `interval_s` seconds."""
        while True:
            await self.check(models())
            await asyncio.sleep(interval_s)

    async def _probe(self, url: str) -> bool:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, port, ssl=parts.scheme == "https"),
                self.timeout_s,
            )
        except (OSError, TimeoutError):
            return False
        try:
            path = parts.path or "/"
            request = f"GET {path} HTTP/1.1\r\nhost: {parts.netloc}\r\nconnection: close\r\n\r\n"
            writer.write(request.encode())
            status_line = await asyncio.wait_for(reader.readline(), self.timeout_s)
            fields = status_line.split()
            return len(fields) >= 2 and fields[1].isdigit() and 200 <= int(fields[1]) < 400
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
