"""One home for what a Redis-backed store does when Redis fails: count it, log it, and either
answer from this process's own store or raise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from prometheus_client import Counter
from redis.exceptions import RedisError
from structlog.typing import FilteringBoundLogger

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
