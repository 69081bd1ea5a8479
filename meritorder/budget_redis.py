"""Tenant budgets in Redis: one budget for every router process and replica that shares it.

The same fixed windows as `InMemoryBudgetStore` (the window of `now` is `floor(now / window_s)`),
one key per tenant and window (`meritorder:budget:<window_s>:<window>:<tenant>`, a float that
INCRBYFLOAT adds to, expiring two windows later). `reserve` is one Lua script, so its read,
compare and add are one atomic step in Redis: concurrent requests on any number of routers
cannot together spend past a limit.

When Redis cannot be reached, each call either falls back to a local store (`fallback`: this
process then counts alone, as without Redis; counted in
`meritorder_budget_store_fallbacks_total` and marked `budget_store=local` on the decision) or
raises, and deciding fails as `routing.on_error` says.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from meritorder import telemetry
from meritorder.budget import FIT_TOLERANCE, BudgetStore, Reservation

log = structlog.get_logger("meritorder.budget")

T = TypeVar("T")

# KEYS[1]: the tenant's window; ARGV: amount, limit ('' for none), ttl seconds, tolerance.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if ARGV[2] ~= '' then
  local limit = tonumber(ARGV[2])
  if spent + amount > limit + tonumber(ARGV[4]) * math.max(1.0, math.abs(limit)) then
    return {0, tostring(spent)}
  end
end
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, total}
"""
_SETTLE = """
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return total
"""


class RedisBudgetStore:
    """A `BudgetStore` in Redis (`url`: redis://host:port/db), shared by every router on it."""

    def __init__(
        self,
        url: str,
        *,
        fallback: BudgetStore | None = None,
        timeout_s: float = 0.5,
        prefix: str = "meritorder:budget",
    ) -> None:
        self.url = url
        self.fallback = fallback
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)

    async def spent(self, tenant: str, window_s: int, now: float | None = None) -> float:
        key = self._key(tenant, window_s, now)

        async def shared() -> float:
            value = await self._redis.get(key)
            return float(value) if value is not None else 0.0

        return await self._guard("spent", shared, lambda local: local.spent(tenant, window_s, now))

    async def reserve(
        self,
        tenant: str,
        amount: float,
        limit: float | None,
        window_s: int,
        now: float | None = None,
    ) -> Reservation:
        now = time.time() if now is None else now  # one window for the check and the add
        key = self._key(tenant, window_s, now)
        args: list[str | float] = [
            repr(amount),
            "" if limit is None else repr(limit),
            2 * window_s,
            FIT_TOLERANCE,
        ]

        async def shared() -> Reservation:
            fitted, total = await self._reserve(keys=[key], args=args)
            return Reservation(bool(fitted), float(total))

        async def local(store: BudgetStore) -> Reservation:
            held = await store.reserve(tenant, amount, limit, window_s, now)
            return held._replace(local=True)

        return await self._guard("reserve", shared, local)

    async def settle(
        self,
        tenant: str,
        reserved: float,
        measured: float,
        window_s: int,
        now: float | None = None,
    ) -> None:
        key = self._key(tenant, window_s, now)

        async def shared() -> None:
            await self._settle(keys=[key], args=[repr(measured - reserved), 2 * window_s])

        await self._guard(
            "settle",
            shared,
            lambda local: local.settle(tenant, reserved, measured, window_s, now),
        )

    async def close(self) -> None:
        await self._redis.aclose()

    def _key(self, tenant: str, window_s: int, now: float | None) -> str:
        window = int((time.time() if now is None else now) // window_s)
        return f"{self.prefix}:{window_s}:{window}:{tenant}"

    async def _guard(
        self,
        op: str,
        shared: Callable[[], Awaitable[T]],
        local: Callable[[BudgetStore], Awaitable[T]],
    ) -> T:
        try:
            return await shared()
        except (RedisError, OSError) as error:
            telemetry.METRICS.budget_store_fallbacks.labels(
                op=op, to="local" if self.fallback else "error"
            ).inc()
            if self.fallback is None:
                log.error("budget store unavailable", op=op, url=self.url, error=str(error))
                raise
            log.warning("budget store unavailable, using this process's", op=op, error=str(error))
            return await local(self.fallback)
