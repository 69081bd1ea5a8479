"""Tenant budgets in Redis: one budget for every router process and replica that shares it.

The same fixed windows as `InMemoryBudgetStore` (a `Window`), one key per tenant and window
(`meritorder:budget:<seconds>:<index>:<tenant>`, a float that INCRBYFLOAT adds to, expiring two
windows later). `reserve` is one Lua script, so its read, compare and add are one atomic step in
Redis: concurrent requests on any number of routers cannot together spend past a limit.

When Redis cannot be reached, each call either falls back to a local store (`fallback`: this
process then counts alone, as without Redis; counted in
`meritorder_budget_store_fallbacks_total` and marked `budget_store=local` on the decision) or
raises, and deciding fails as `routing.on_error` says. Counting alone starts from the window's
shared total as this process last saw it, not from zero: a blip of Redis does not hand every
replica the whole budget again.
"""

from __future__ import annotations

import structlog

from meritorder.budget import FIT_TOLERANCE, BudgetStore, Reservation, Window
from meritorder.redis_store import RedisStore

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


class RedisBudgetStore(RedisStore[BudgetStore]):
    """A `BudgetStore` in Redis, shared by every router on it."""

    name = "budget store"
    default_prefix = "meritorder:budget"
    log = structlog.get_logger("meritorder.budget")
    metric = "budget"

    def __init__(
        self,
        url: str,
        fallback: BudgetStore | None = None,
        *,
        timeout_s: float = 0.5,
        prefix: str | None = None,
    ) -> None:
        super().__init__(url, fallback, timeout_s=timeout_s, prefix=prefix)
        # (tenant, window seconds) -> (window index, the highest shared total seen in it).
        self._seen: dict[tuple[str, int], tuple[int, float]] = {}

    async def spent(self, window: Window) -> float:
        window = window.pinned()
        key = self._key(window)

        async def shared() -> float:
            value = await self._redis.get(key)
            return self._saw(window, float(value) if value is not None else 0.0)

        async def local(store: BudgetStore) -> float:
            await self._caught_up(store, window)
            return await store.spent(window)

        return await self._guard("spent", shared, local)

    async def reserve(self, window: Window, amount: float, limit: float | None) -> Reservation:
        window = window.pinned()  # one window for the check and the add
        key = self._key(window)
        args: list[str | float] = [
            repr(amount),
            "" if limit is None else repr(limit),
            2 * window.seconds,
            FIT_TOLERANCE,
        ]

        async def shared() -> Reservation:
            fitted, total = await self._script(_RESERVE)(keys=[key], args=args)
            return Reservation(bool(fitted), self._saw(window, float(total)))

        async def local(store: BudgetStore) -> Reservation:
            await self._caught_up(store, window)
            held = await store.reserve(window, amount, limit)
            return held._replace(local=True)

        return await self._guard("reserve", shared, local)

    async def settle(self, window: Window, reserved: float, measured: float) -> None:
        key = self._key(window)

        async def shared() -> None:
            total = await self._script(_SETTLE)(
                keys=[key], args=[repr(measured - reserved), 2 * window.seconds]
            )
            self._saw(window, float(total))

        async def local(store: BudgetStore) -> None:
            await self._caught_up(store, window)
            await store.settle(window, reserved, measured)

        await self._guard("settle", shared, local)

    def _saw(self, window: Window, total: float) -> float:
        """Note a shared total of `window` read from Redis (the highest in its window wins)."""
        key, index = (window.tenant, window.seconds), window.index
        seen = self._seen.get(key)
        if seen is None or seen[0] < index or (seen[0] == index and seen[1] < total):
            self._seen[key] = (index, total)
        return total

    async def _caught_up(self, store: BudgetStore, window: Window) -> None:
        """Bring the local store's spending in `window` up to the shared total last seen, so
        that counting alone goes on from there."""
        seen = self._seen.get((window.tenant, window.seconds))
        if seen is None or seen[0] != window.index:
            return
        behind = seen[1] - await store.spent(window)
        if behind > 0:
            await store.settle(window, 0.0, behind)

    def _key(self, window: Window) -> str:
        return f"{self.prefix}:{window.seconds}:{window.index}:{window.tenant}"
