"""Decisions awaiting their upstream's answer, keyed by x-request-id.

When Envoy reports a finished request (access log stream), the router looks the decision up here
to record on the same trace what the upstream reported — status and token usage — and to charge
the tenant's budget with the measured cost instead of the estimate.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from opentelemetry.trace import SpanContext


@dataclass(frozen=True)
class Pending:
    span_context: SpanContext | None
    model: str
    cost_per_million: float
    estimated_cost: float
    tenant: str | None
    budget_window_s: int | None


class Ledger:
    """A bounded map: entries whose report never comes are dropped oldest first."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._pending: OrderedDict[str, Pending] = OrderedDict()

    def add(self, request_id: str, pending: Pending) -> None:
        self._pending[request_id] = pending
        while len(self._pending) > self.capacity:
            self._pending.popitem(last=False)

    def pop(self, request_id: str) -> Pending | None:
        return self._pending.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._pending)
