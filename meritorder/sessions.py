"""Sessions: a conversation's turns remember where they were routed, so it does not bounce.

A session is named by the first of the policy's `sessions.key` sources the request has: a
header (`header:x-session-id`), the OpenAI `user` field, a `metadata` field (`metadata:thread`),
or `conversation`, a hash of the conversation's opening (its messages up to and including the
first user message, which every later turn resends). Names are scoped by tenant when budgets
name tenants, so no tenant can steer another's sessions.

What a session changes is a preference, never a permission: the session's model goes first
among the candidates and must still pass every filter (PII, boundaries, budget, health).
  - `sticky`: stay on the session's model unless a decision of higher priority than the one
    that chose it fires;
  - `stay_escalated`: once a turn moved to a dearer model, stay there for N more turns (or the
    rest of the session);
  - `max_switches`: after that many model changes, stay on the last model.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:  # config.py imports this module, and request.py imports config.py
    from meritorder.request import RequestView


_SEP = "\x1f"  # between a session name's tenant, source and value
_KEY_PATTERN = r"^(header:[A-Za-z0-9-]+|user|metadata:[A-Za-z0-9_.-]+|conversation)$"


class SessionsConfig(BaseModel):
    """`sessions:` in the policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: tuple[str, ...] = Field(
        default=("header:x-session-id", "user", "conversation"),
        min_length=1,
        description="where a request's session name comes from, first found wins: "
        "header:<name>, user, metadata:<field>, conversation",
    )
    sticky: bool = True
    stay_escalated: int | Literal["session"] | None = Field(
        default=None,
        description="after a turn moved to a dearer model, stay on it this many turns more, "
        "or for the rest of the session",
    )
    max_switches: int | None = Field(default=None, ge=0)
    ttl_s: int = Field(default=3600, gt=0, description="a session idle this long is forgotten")

    @field_validator("key")
    @classmethod
    def _sources(cls, key: tuple[str, ...]) -> tuple[str, ...]:
        for source in key:
            if not re.fullmatch(_KEY_PATTERN, source):
                raise ValueError(
                    f"{source!r} is not a session source; use header:<name>, user, "
                    "metadata:<field> or conversation"
                )
        return key

    @field_validator("stay_escalated")
    @classmethod
    def _turns(cls, turns: int | str | None) -> int | str | None:
        if isinstance(turns, int) and turns < 1:
            raise ValueError("give a number of turns >= 1, or 'session'")
        return turns


@dataclass(frozen=True)
class Session:
    """What a session remembers of its last routed turn."""

    model: str
    rule: str
    priority: float  # of the decision that chose `model` (-inf: the default, or none matched)
    cost: float  # `model`'s cost then, to tell an escalation from a step down
    turn: int  # the user turn that was routed last
    switches: int = 0
    escalated_at: int | None = None  # the turn that last moved to a dearer model

    def to_json(self) -> str:
        values = asdict(self)
        values["priority"] = None if math.isinf(self.priority) else self.priority
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str) -> Session:
        values = json.loads(text)
        if values.get("priority") is None:
            values["priority"] = -math.inf
        return cls(**values)


@dataclass(frozen=True)
class SessionView:
    """A request's session: its name, this request's user turn, what it remembers (None: new)."""

    name: str
    turn: int
    last: Session | None


@dataclass(frozen=True)
class Preference:
    """The model a session asks for, and why: sticky, stay_escalated or max_switches."""

    model: str
    why: str


def session_name(
    config: SessionsConfig, request: RequestView, headers: Mapping[str, str], tenant: str
) -> str | None:
    """The request's session name (scoped by `tenant`), or None when it names none."""
    for source in config.key:
        kind, _, arg = source.partition(":")
        value: object = None
        if kind == "header":
            value = headers.get(arg.lower())
        elif kind == "user":
            value = request.body.get("user")
        elif kind == "metadata":
            metadata = request.body.get("metadata")
            value = metadata.get(arg) if isinstance(metadata, dict) else None
        elif kind == "conversation":
            value = _opening_hash(request)
        if isinstance(value, str) and value:
            return f"{tenant}{_SEP}{source}{_SEP}{value}"
    return None


def user_turn(request: RequestView, name: str, last: Session | None) -> int:
    """Which user turn of session `name` this request is (1 for a conversation's first). A
    conversation named by its opening resends its history, so its user messages count its
    turns; a session the client names (a header, `user`, `metadata`) may send only its newest
    message, so a request there continues the session it names."""
    turns = max(1, sum(1 for m in request.messages if m.get("role") == "user"))
    if last is None or f"{_SEP}conversation{_SEP}" in name:
        return turns
    return max(turns, last.turn + 1)


def _opening_hash(request: RequestView) -> str | None:
    opening = []
    for message in request.messages:
        opening.append({"role": message.get("role"), "content": message.get("content")})
        if message.get("role") == "user":
            digest = hashlib.sha256(json.dumps(opening, sort_keys=True).encode()).hexdigest()
            return digest[:32]
    return None


def preference(
    config: SessionsConfig, view: SessionView | None, priority: float
) -> Preference | None:
    """The session's model, when the session should keep it for a turn decided by a rule of
    `priority`; None when this turn is free to go where the policy says."""
    if view is None or view.last is None or view.turn == 1:
        return None  # a conversation's first turn starts it afresh
    last = view.last
    if config.max_switches is not None and last.switches >= config.max_switches:
        return Preference(last.model, "max_switches")
    if _still_escalated(config, last, view.turn):
        return Preference(last.model, "stay_escalated")
    if config.sticky and priority <= last.priority:
        return Preference(last.model, "sticky")
    return None


def _still_escalated(config: SessionsConfig, last: Session, turn: int) -> bool:
    held = config.stay_escalated
    if last.escalated_at is None or held is None:
        return False
    return held == "session" or turn - last.escalated_at <= held


def advance(view: SessionView, model: str, rule: str, priority: float, cost: float) -> Session:
    """What the session remembers after this turn was routed to `model`."""
    last = view.last
    if last is None or view.turn == 1:
        return Session(model, rule, priority, cost, view.turn)
    switched = model != last.model
    escalated = switched and cost > last.cost
    return replace(
        last,
        model=model,
        rule=rule if switched else last.rule,
        priority=priority if switched else max(last.priority, priority),
        cost=cost,
        turn=view.turn,
        switches=last.switches + int(switched),
        escalated_at=view.turn if escalated else (None if switched else last.escalated_at),
    )


class SessionStore(Protocol):
    async def get(self, name: str) -> Session | None: ...

    async def put(self, name: str, session: Session, ttl_s: int) -> None: ...


class InMemorySessions:
    """One process's sessions: bounded, idle ones expire."""

    def __init__(self, capacity: int = 65536, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, Session]] = OrderedDict()

    async def get(self, name: str) -> Session | None:
        item = self._items.get(name)
        if item is None:
            return None
        if self._clock() > item[0]:
            del self._items[name]
            return None
        return item[1]

    async def put(self, name: str, session: Session, ttl_s: int) -> None:
        self._items[name] = (self._clock() + ttl_s, session)
        self._items.move_to_end(name)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
