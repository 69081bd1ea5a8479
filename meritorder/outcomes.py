"""What happened after a decision: the facts a routed request carries, and its outcome.

The decision's facts (`Pending`) travel WITH the request, as Envoy dynamic metadata that the
processor sets on its reply (namespace `meritorder.decision`), and come back in Envoy's access
log entry for that request. Whichever router process or replica Envoy's log stream reaches can
therefore settle the outcome on its own: no process has to remember the decision, and no
outcome is lost because the request was decided by a worker that the log stream does not reach.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Protocol

from meritorder.cost import cost

DECISION_NAMESPACE = "meritorder.decision"


@dataclass(frozen=True)
class Pending:
    """A routed decision's facts, as plain values (they round-trip through a protobuf Struct)."""

    model: str
    rule: str  # the decision that routed it (`explicit`, `default`, a decision's name)
    cost_per_million: float
    estimated_cost: float
    tenant: str = ""  # "" when no budget applies
    budget_window_s: int = 0  # 0 when no budget applies
    traceparent: str = ""  # W3C trace context of the decision's span ("" when not traced)
    decided_at: float = 0.0  # epoch seconds: the budget window the cost was reserved in
    learn_context: str = ""  # a learning decision's estimates context ("" when it did not learn)

    def to_fields(self) -> dict[str, str | float]:
        """The facts that differ from their defaults (fewer bytes on every request)."""
        # Not dataclasses.asdict: it deep-copies every value (40 µs a request on the hot path).
        return {k: v for k, v in self.__dict__.items() if v != _DEFAULTS.get(k, MISSING)}

    @classmethod
    def from_fields(cls, values: Mapping[str, object]) -> Pending | None:
        """The facts read back from an access log entry's metadata (a missing one has its
        default); None when a required one is missing or a fact has the wrong type (an entry of a
        request the router did not route)."""
        if any(name not in values for name in _REQUIRED_FIELDS):
            return None
        out: dict[str, object] = {}
        for name, kind in _FIELD_TYPES:
            if name not in values:
                continue
            value = values[name]
            if kind == "str":
                if not isinstance(value, str):
                    return None
                out[name] = value
            else:  # numbers arrive as floats in a Struct
                if not isinstance(value, int | float) or isinstance(value, bool):
                    return None
                out[name] = int(value) if kind == "int" else float(value)
        return cls(**out)  # type: ignore[arg-type]


_DEFAULTS = {spec.name: spec.default for spec in fields(Pending) if spec.default is not MISSING}
_FIELD_TYPES = tuple((spec.name, str(spec.type)) for spec in fields(Pending))
_REQUIRED_FIELDS = tuple(spec.name for spec in fields(Pending) if spec.default is MISSING)


@dataclass(frozen=True)
class Outcome:
    """One routed request's upstream answer, as Envoy reported it."""

    request_id: str
    pending: Pending
    status: int | None = None  # None: not answered yet; 0: no response (failure, reset)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_s: float | None = None  # request start to the response's last byte
    first_byte_s: float | None = None  # request start to the response's first byte
    response_id: str | None = None  # the upstream's own id of its answer (`chatcmpl-...`)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        values = json.loads(text)
        pending = Pending(**values.pop("pending"))
        return cls(pending=pending, **values)

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def measured_cost(self) -> float | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return cost(self.pending.cost_per_million, self.prompt_tokens, self.completion_tokens)


@dataclass(frozen=True)
class Feedback:
    """A verdict on one routed request's answer: a score in [0, 1] and an optional label."""

    request_id: str  # Envoy's x-request-id of the request, or the upstream's response id
    score: float
    label: str = ""


class StoreUnavailable(Exception):
    """A shared store could not be reached."""


class OutcomeStore(Protocol):
    """Recent decisions and their outcomes, by request id and by the upstream's response id,
    with the feedback each got. One process's own (`InMemoryOutcomes`), or shared by every
    router (`meritorder.outcomes_redis.RedisOutcomes`).

    The first decision stored under a request id keeps it: a client that reuses an
    x-request-id (Envoy keeps the client's) cannot replace another request's record, and an
    outcome settles only the decision it carries the facts of."""

    async def add(self, outcome: Outcome) -> None:
        """Store a decision (status None) under a new id, or settle the decision it names."""
        ...

    async def get(self, request_id: str) -> Outcome | None:
        """The outcome of a request (named by either id); None if unknown or expired."""
        ...

    async def add_feedback(self, outcome: Outcome, feedback: Feedback) -> bool:
        """Attach `feedback` to a stored outcome; False if it already has some (one verdict per
        request, so repeating feedback cannot weigh more than once)."""
        ...


def replaces(stored: Outcome | None, new: Outcome) -> bool:
    """Whether `new` may take the place of `stored` (see `OutcomeStore`)."""
    if stored is None:
        return True
    return new.status is not None and stored.status is None and stored.pending == new.pending


class InMemoryOutcomes:
    """Bounded and expiring, oldest first."""

    def __init__(
        self,
        capacity: int = 65536,
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, Outcome]] = OrderedDict()
        self._response_ids: dict[str, str] = {}
        self._judged: set[str] = set()

    async def add(self, outcome: Outcome) -> None:
        item = self._items.get(outcome.request_id)
        stored = item[1] if item is not None and self._clock() - item[0] <= self.ttl_s else None
        if not replaces(stored, outcome):
            return
        self._items[outcome.request_id] = (self._clock(), outcome)
        self._items.move_to_end(outcome.request_id)
        if outcome.response_id:
            self._response_ids[outcome.response_id] = outcome.request_id
        while len(self._items) > self.capacity:
            self._forget(next(iter(self._items)))

    async def get(self, request_id: str) -> Outcome | None:
        request_id = self._response_ids.get(request_id, request_id)
        item = self._items.get(request_id)
        if item is None:
            return None
        if self._clock() - item[0] > self.ttl_s:
            self._forget(request_id)
            return None
        return item[1]

    async def add_feedback(self, outcome: Outcome, feedback: Feedback) -> bool:
        if outcome.request_id in self._judged:
            return False
        self._judged.add(outcome.request_id)
        return True

    def _forget(self, request_id: str) -> None:
        _, outcome = self._items.pop(request_id)
        self._response_ids.pop(outcome.response_id or "", None)
        self._judged.discard(request_id)

    def __len__(self) -> int:
        return len(self._items)
