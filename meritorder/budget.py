"""Tenant budgets: how much each tenant has spent in the current window.

The router talks to a `BudgetStore`; the embedded `InMemoryBudgetStore` serves one replica. A
store shared by several replicas (Redis, a database) implements the same two async methods with
the same fixed-window semantics: the window of time `now` is `floor(now / window_s)`.
"""

from __future__ import annotations

import time
from typing import Protocol


class BudgetStore(Protocol):
    async def spent(self, tenant: str, window_s: int, now: float | None = None) -> float:
        """Cost units `tenant` has spent in the window that contains `now`."""
        ...

    async def charge(
        self, tenant: str, amount: float, window_s: int, now: float | None = None
    ) -> None:
        """Add `amount` to `tenant`'s spending in the window that contains `now`."""
        ...


class InMemoryBudgetStore:
    """Fixed windows in a dict; old windows are dropped as new ones start."""

    def __init__(self) -> None:
        self._spent: dict[tuple[str, int, int], float] = {}

    async def spent(self, tenant: str, window_s: int, now: float | None = None) -> float:
        return self._spent.get((tenant, window_s, _window(window_s, now)), 0.0)

    async def charge(
        self, tenant: str, amount: float, window_s: int, now: float | None = None
    ) -> None:
        window = _window(window_s, now)
        key = (tenant, window_s, window)
        if key not in self._spent:
            self._spent = {
                k: v for k, v in self._spent.items() if k[2] >= window or k[1] != window_s
            }
        self._spent[key] = self._spent.get(key, 0.0) + amount


def _window(window_s: int, now: float | None) -> int:
    return int((time.time() if now is None else now) // window_s)
