"""Tenant budgets: how much each tenant has spent in the current window.

The router talks to a `BudgetStore`; the embedded `InMemoryBudgetStore` serves one replica,
`meritorder.budget_redis.RedisBudgetStore` any number of them. A store shared by several
replicas implements the same three async methods (`spent`, and the pair `reserve` / `settle`) with
the same fixed-window semantics: the window of time `now` is `floor(now / window_s)`, and
`reserve` must be one atomic step in the store (in Redis, one Lua script: read the window's sum,
compare, INCRBYFLOAT, EXPIRE), or concurrent requests can together spend past a limit. A
reservation whose caller timed out after the store committed it stays charged: the safe side.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Protocol

# Costs are sums of floats: a request that exactly fills a budget must still fit.
FIT_TOLERANCE = 1e-9


def fits(spent: float, amount: float, limit: float | None) -> bool:
    """Whether spending `amount` on top of `spent` stays within `limit` (None: no limit)."""
    return limit is None or spent + amount <= limit + FIT_TOLERANCE * max(1.0, abs(limit))


class Reservation(NamedTuple):
    fitted: bool  # whether `amount` was added
    spent: float  # the tenant's spending in the window after the attempt
    local: bool = False  # a shared store was down: only this process's spending was checked


class BudgetStore(Protocol):
    async def spent(self, tenant: str, window_s: int, now: float | None = None) -> float:
        """Cost units `tenant` has spent in the window that contains `now`."""
        ...

    async def reserve(
        self,
        tenant: str,
        amount: float,
        limit: float | None,
        window_s: int,
        now: float | None = None,
    ) -> Reservation:
        """Atomically add `amount` to `tenant`'s spending if the sum `fits` within `limit`."""
        ...

    async def settle(
        self,
        tenant: str,
        reserved: float,
        measured: float,
        window_s: int,
        now: float | None = None,
    ) -> None:
        """Replace a reservation by the measured cost, whatever the limit (one atomic add of
        `measured - reserved` to the window of `now`: pass the reservation's own time)."""
        ...


class InMemoryBudgetStore:
    """Fixed windows in a dict; old windows are dropped as new ones start.

    No method awaits anything, so each runs to completion on the event loop: `reserve`'s check
    and add cannot interleave with another request's."""

    def __init__(self) -> None:
        self._spent: dict[tuple[str, int, int], float] = {}

    async def spent(self, tenant: str, window_s: int, now: float | None = None) -> float:
        return self._get(tenant, window_s, now)

    async def reserve(
        self,
        tenant: str,
        amount: float,
        limit: float | None,
        window_s: int,
        now: float | None = None,
    ) -> Reservation:
        now = time.time() if now is None else now  # one window for the check and the add
        spent = self._get(tenant, window_s, now)
        if not fits(spent, amount, limit):
            return Reservation(False, spent)
        return Reservation(True, self._add(tenant, amount, window_s, now))

    async def settle(
        self,
        tenant: str,
        reserved: float,
        measured: float,
        window_s: int,
        now: float | None = None,
    ) -> None:
        self._add(tenant, measured - reserved, window_s, now)

    def _get(self, tenant: str, window_s: int, now: float | None) -> float:
        return self._spent.get((tenant, window_s, _window(window_s, now)), 0.0)

    def _add(self, tenant: str, amount: float, window_s: int, now: float | None) -> float:
        window = _window(window_s, now)
        key = (tenant, window_s, window)
        if key not in self._spent:
            self._spent = {
                k: v for k, v in self._spent.items() if k[2] >= window or k[1] != window_s
            }
        self._spent[key] = total = self._spent.get(key, 0.0) + amount
        return total


def _window(window_s: int, now: float | None) -> int:
    return int((time.time() if now is None else now) // window_s)
