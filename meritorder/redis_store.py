"""What every store in Redis shares: the connection, and what a call does when Redis fails. A
`RedisStore` (budgets, learned estimates) counts it, logs it, and answers from this process's
own store or raises; a `BestEffortRedisStore` (outcomes, sessions) holds what only improves a
request, so its caller carries on without it, counted and logged."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, Generic, TypeVar

from prometheus_client import Counter
from redis import asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from structlog.typing import FilteringBoundLogger

from meritorder import telemetry

T = TypeVar("T")
S = TypeVar("S")


async def shared_or_local(
    shared: Callable[[], Awaitable[T]],
    local: Callable[[S], Awaitable[T]],
    fallback: S | None,
    *,
    op: str,
    store: str,
    url: str,
    fallbacks: Counter,
    log: FilteringBoundLogger,
) -> T:
    """`shared()`, or on a Redis or socket error `local(fallback)`; without a fallback, re-raise.

    Either way the failure is counted in `fallbacks` (labels `op`, `to`: local or error) and
    logged under `store`'s name, so a replica counting alone is never silent."""
    try:
        return await shared()
    except (RedisError, OSError) as error:
        fallbacks.labels(op=op, to="local" if fallback is not None else "error").inc()
        if fallback is None:
            log.error(f"{store} unavailable", op=op, url=url, error=str(error))
            raise
        log.warning(f"{store} unavailable, using this process's", op=op, error=str(error))
        return await local(fallback)


class RedisStore(Generic[S]):
    """A store in Redis (`url`: redis://host:port/db), shared by every router on it; while Redis
    cannot be reached, each call answers from `fallback` (this process's own `S`) or raises.
    Each call gives up after `timeout_s`, connecting included; every key starts with `prefix`."""

    name: ClassVar[str]  # in the logs: "<name> unavailable"
    default_prefix: ClassVar[str]
    log: ClassVar[FilteringBoundLogger]
    # Which `meritorder_<metric>_store_fallbacks_total` counts the calls that Redis failed.
    metric: ClassVar[str]

    def __init__(
        self,
        url: str,
        fallback: S | None = None,
        *,
        timeout_s: float = 0.5,
        prefix: str | None = None,
    ) -> None:
        self.url = url
        self.fallback = fallback
        self.prefix = self.default_prefix if prefix is None else prefix
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._scripts: dict[str, AsyncScript] = {}

    def _script(self, source: str) -> AsyncScript:
        """The Lua script `source`, registered once with this store's client (each call then
        runs it by its SHA, loading it again if Redis restarted without it)."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._redis.register_script(source)
        return script

    @property
    def fallbacks(self) -> Counter:
        """The counter of calls that Redis failed (labels `op`, `to`), looked up when counted:
        the registry's counters are the live ones."""
        counter: Counter = getattr(telemetry.METRICS, f"{self.metric}_store_fallbacks")
        return counter

    async def close(self) -> None:
        await self._redis.aclose()

    def _guard(
        self, op: str, shared: Callable[[], Awaitable[T]], local: Callable[[S], Awaitable[T]]
    ) -> Awaitable[T]:
        """`shared()`, or `local(self.fallback)` while Redis is down (counted and logged)."""
        return shared_or_local(
            shared,
            local,
            self.fallback,
            op=op,
            store=self.name,
            url=self.url,
            fallbacks=self.fallbacks,
            log=self.log,
        )


class BestEffortRedisStore:
    """A store in Redis that no request waits on to be served: a failed call is counted in
    `meritorder_state_store_errors_total{store=<label>,op}` and logged, and the caller decides
    what it costs (a 503 for feedback, a session's first turn); writes that need not hold the
    request run in the background (`_in_background`), and `close` waits for them."""

    label: ClassVar[str]  # the `store` label of the error counter
    name: ClassVar[str]  # in the logs: "<name> unavailable"
    default_prefix: ClassVar[str]
    log: ClassVar[FilteringBoundLogger]

    def __init__(self, url: str, *, prefix: str | None = None, timeout_s: float = 0.25) -> None:
        self.url = url
        self.prefix = self.default_prefix if prefix is None else prefix
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self._writes: set[asyncio.Task[None]] = set()

    def _in_background(self, write: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._redis.aclose()

    def _failed(self, op: str, error: Exception) -> None:
        telemetry.METRICS.state_store_errors.labels(store=self.label, op=op).inc()
        self.log.warning(f"{self.name} unavailable", op=op, url=self.url, error=str(error))
