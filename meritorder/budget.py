"""Tenant budgets: how much each tenant has spent in the current window.

The router talks to a `BudgetStore`; the embedded `InMemoryBudgetStore` serves one replica,
`meritorder.budget_redis.RedisBudgetStore` any number of them. A store shared by several
replicas implements the same three async methods (`spent`, and the pair `reserve` / `settle`) with
the same fixed-window semantics (a `Window`: the window of time `now` is `floor(now / seconds)`),
and `reserve` must be one atomic step in the store (in Redis, one Lua script: read the window's
sum, compare, INCRBYFLOAT, EXPIRE), or concurrent requests can together spend past a limit. A
reservation whose caller timed out after the store committed it stays charged: the safe side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
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


@dataclass(frozen=True, slots=True)
class Window:
    """One tenant's fixed budget window: the `seconds`-long one that holds `now` (None: the time
    of the call)."""

    tenant: str
    seconds: int
    now: float | None = None

    def pinned(self) -> Window:
        """This window at a fixed time (the call's if unset): one window for a check and its add."""
        return self if self.now is not None else replace(self, now=time.time())

    @property
    def index(self) -> int:
        """`floor(now / seconds)`: which window of its length `now` falls in."""
        return int((time.time() if self.now is None else self.now) // self.seconds)


class BudgetStore(Protocol):
    async def spent(self, window: Window) -> float:
        """Cost units the tenant has spent in `window`."""
        ...

    async def reserve(self, window: Window, amount: float, limit: float | None) -> Reservation:
        """Atomically add `amount` to the tenant's spending if the sum `fits` within `limit`."""
        ...

    async def settle(self, window: Window, reserved: float, measured: float) -> None:
        """Replace a reservation by the measured cost, whatever the limit (one atomic add of
        `measured - reserved` to the window: pass the reservation's own time)."""
        ...


class InMemoryBudgetStore:
    """Fixed windows in a dict; old windows are dropped as new ones start.

    No method awaits anything, so each runs to completion on the event loop: `reserve`'s check
    and add cannot interleave with another request's."""

    def __init__(self) -> None:
        self._spent: dict[tuple[str, int, int], float] = {}

    async def spent(self, window: Window) -> float:
        return self._get(window)

    async def reserve(self, window: Window, amount: float, limit: float | None) -> Reservation:
        window = window.pinned()  # one window for the check and the add
        spent = self._get(window)
        if not fits(spent, amount, limit):
            return Reservation(False, spent)
        return Reservation(True, self._add(window, amount))

    async def settle(self, window: Window, reserved: float, measured: float) -> None:
        self._add(window, measured - reserved)

    def _get(self, window: Window) -> float:
        return self._spent.get((window.tenant, window.seconds, window.index), 0.0)

    def _add(self, window: Window, amount: float) -> float:
        index = window.index
        key = (window.tenant, window.seconds, index)
        if key not in self._spent:
            self._spent = {
                k: v for k, v in self._spent.items() if k[2] >= index or k[1] != window.seconds
            }
        self._spent[key] = total = self._spent.get(key, 0.0) + amount
        return total
