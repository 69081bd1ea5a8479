"""The pool-state source: reads every model's `metrics_url`s off the request path, and merges
them with what the router sees itself (in flight, TTFT and duration from outcomes) into the
`ModelLoad` snapshot each decision reads."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog

from meritorder.config import ModelConfig
from meritorder.pool.metrics import ReplicaMetrics, parse_metrics
from meritorder.pool.state import ModelLoad

log = structlog.get_logger("meritorder.pool")

MAX_METRICS_BYTES = 8 << 20  # a metrics page larger than this is not a model server's
_EWMA = 0.3  # weight of the newest outcome in the router's own latency means

Fetch = Callable[[str, float], Awaitable[str]]


@dataclass
class _Replica:
    metrics: ReplicaMetrics | None = None
    read_at: float | None = None  # monotonic time of the last successful read
    ttft_s: float | None = None  # mean TTFT of the first tokens between the last two reads
    itl_s: float | None = None  # mean inter-token latency of the tokens between them
    failing: bool = False


class PoolMonitor:
    """Each model's load, from its servers' metrics (refreshed by `run`) and the router's own
    dispatches and outcomes (`dispatched`, `settled`)."""

    def __init__(
        self,
        timeout_s: float = 1.0,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_read: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._fetch = fetch or fetch_text
        self._clock = clock
        self._on_read = on_read  # (model, ok) per read: telemetry counts them
        self._replicas: dict[tuple[str, str], _Replica] = {}
        self._in_flight: dict[str, int] = {}
        self._ttft: dict[str, float] = {}
        self._duration: dict[str, float] = {}

    async def refresh(self, models: Iterable[ModelConfig]) -> None:
        """Read every metrics endpoint of `models` once, concurrently."""
        targets = [(m.name, url) for m in models for url in m.metrics_url]
        await asyncio.gather(*(self._read(model, url) for model, url in targets))

    async def run(
        self,
        models: Callable[[], Iterable[ModelConfig]],
        interval_s: Callable[[], float],
        stale_s: Callable[[], float],
        on_refresh: Callable[[Mapping[str, ModelLoad]], None] | None = None,
    ) -> None:
        """Refresh the models of the current policy every `interval_s()` seconds, handing each
        refreshed snapshot to `on_refresh` (telemetry)."""
        while True:
            current = list(models())
            if any(m.metrics_url for m in current):
                await self.refresh(current)
                if on_refresh is not None:
                    on_refresh(self.snapshot(current, stale_s()))
            await asyncio.sleep(interval_s())

    async def _read(self, model: str, url: str) -> None:
        replica = self._replicas.setdefault((model, url), _Replica())
        try:
            metrics = parse_metrics(await self._fetch(url, self.timeout_s))
        except (OSError, TimeoutError, ValueError) as error:
            if not replica.failing:
                log.warning("pool metrics unreadable", model=model, url=url, error=str(error))
            replica.failing = True
            if self._on_read:
                self._on_read(model, False)
            return
        if replica.failing:
            log.info("pool metrics readable again", model=model, url=url)
        before = replica.metrics
        replica.ttft_s = _recent_mean(
            replica.ttft_s,
            (metrics.ttft_sum, metrics.ttft_count),
            (before.ttft_sum, before.ttft_count) if before else None,
        )
        replica.itl_s = _recent_mean(
            replica.itl_s,
            (metrics.itl_sum, metrics.itl_count),
            (before.itl_sum, before.itl_count) if before else None,
        )
        replica.metrics, replica.read_at, replica.failing = metrics, self._clock(), False
        if self._on_read:
            self._on_read(model, True)

    def dispatched(self, model: str) -> None:
        self._in_flight[model] = self._in_flight.get(model, 0) + 1

    def settled(self, model: str, first_byte_s: float | None, duration_s: float | None) -> None:
        """A request to `model` ended; its latencies join the router's own means."""
        # Clamped: an outcome may reach a process other than the one that dispatched it.
        self._in_flight[model] = max(0, self._in_flight.get(model, 0) - 1)
        for means, value in ((self._ttft, first_byte_s), (self._duration, duration_s)):
            if value is not None:
                old = means.get(model)
                means[model] = value if old is None else old + _EWMA * (value - old)

    def snapshot(self, models: Iterable[ModelConfig], stale_s: float) -> Mapping[str, ModelLoad]:
        """Each model's load now; metrics older than `stale_s` count as missing (`stale`)."""
        now = self._clock()
        loads = {}
        for model in models:
            replicas = [self._replicas.get((model.name, url)) for url in model.metrics_url]
            read = [r for r in replicas if r is not None and r.read_at is not None]
            fresh = [r for r in read if now - (r.read_at or now) <= stale_s]
            used = fresh or read
            ages = [now - (r.read_at or now) for r in used]
            kv = [r.metrics.kv_cache for r in fresh if r.metrics and r.metrics.kv_cache is not None]
            ttfts = [r.ttft_s for r in fresh if r.ttft_s is not None]
            itls = [r.itl_s for r in fresh if r.itl_s is not None]
            loads[model.name] = ModelLoad(
                replicas=len(model.metrics_url),
                reachable=len(fresh),
                running=sum(r.metrics.running for r in fresh if r.metrics),
                waiting=sum(r.metrics.waiting for r in fresh if r.metrics),
                kv_cache=sum(kv) / len(kv) if kv else None,
                ttft_s=sum(ttfts) / len(ttfts) if ttfts else self._ttft.get(model.name),
                itl_s=sum(itls) / len(itls) if itls else None,
                duration_s=self._duration.get(model.name),
                age_s=max(ages) if fresh else (min(ages) if ages else None),
                stale=bool(model.metrics_url) and not fresh,
                in_flight=self._in_flight.get(model.name, 0),
            )
        return loads


def _recent_mean(
    last: float | None, now: tuple[float, float], before: tuple[float, float] | None
) -> float | None:
    """A histogram's mean over the observations between two reads (`sum`, `count` totals); the
    mean of all of them on the first read or after a restart (the totals went down); the last
    mean when nothing new was observed."""
    total, count = now
    if before is not None and count > before[1]:
        return (total - before[0]) / (count - before[1])
    if before is None or count < before[1]:
        return total / count if count else None
    return last


async def fetch_text(url: str, timeout_s: float) -> str:
    """GET `url` over HTTP/1.0 (no chunked answer to decode) within `timeout_s`; its body, if
    the status is 200."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(
            parts.hostname, port, ssl=parts.scheme == "https"
        )
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            writer.write(f"GET {path} HTTP/1.0\r\nhost: {parts.netloc}\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            status = head.split("\r\n", 1)[0].split()
            if len(status) < 2 or status[1] != "200":
                raise ValueError(f"the metrics endpoint answered {head[:40]!r}")
            length = next(
                (
                    int(line.partition(":")[2])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length:")
                ),
                None,
            )
            if length is not None and length > MAX_METRICS_BYTES:
                raise ValueError(f"the metrics page is larger than {MAX_METRICS_BYTES} bytes")
            if length is not None:
                body = await reader.readexactly(length)
            else:
                body = await reader.read(MAX_METRICS_BYTES + 1)
                while len(body) <= MAX_METRICS_BYTES and (chunk := await reader.read(1 << 16)):
                    body += chunk
                if len(body) > MAX_METRICS_BYTES:
                    raise ValueError(f"the metrics page is larger than {MAX_METRICS_BYTES} bytes")
        except asyncio.IncompleteReadError as error:
            raise ValueError("the metrics endpoint closed the connection early") from error
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return body.decode("utf-8", "replace")
