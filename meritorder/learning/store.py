"""Learned estimates: what a context (a decision, or a domain) has observed of each model.

A store keeps, per context, a clock (how many observations it has had) and, per model, the
evidence of its rewards: `wins` (sum of rewards) and `losses` (sum of 1 - reward), each stamped
with the clock and the wall time of its last update. Decay is applied on the way in and out, by
the pure `decayed` below, so that every store (memory, SQLite, Redis) computes the same numbers:
evidence that is one half-life old counts half. The prior is not stored; the bandit adds it.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from meritorder.learning.config import HalfLife


@dataclass(frozen=True)
class Arm:
    """One model's evidence in one context, as of its last update."""

    wins: float = 0.0
    losses: float = 0.0
    clock: float = 0.0  # the context's observation count at that update
    at: float = 0.0  # wall time (s) of that update

    def decayed(self, now_clock: float, now: float, half_life: HalfLife | None) -> Arm:
        """This evidence as it counts at (`now_clock`, `now`)."""
        factor = decay_factor(self, now_clock, now, half_life)
        return Arm(self.wins * factor, self.losses * factor, now_clock, now)

    @property
    def count(self) -> float:
        return self.wins + self.losses


def decay_factor(arm: Arm, now_clock: float, now: float, half_life: HalfLife | None) -> float:
    if half_life is None:
        return 1.0
    age = (now_clock - arm.clock) if half_life.unit == "observations" else (now - arm.at)
    return math.pow(0.5, max(0.0, age) / half_life.value)


@dataclass(frozen=True)
class ContextEstimates:
    """A snapshot of one context: the bandit reads it, never the store."""

    clock: float = 0.0
    arms: Mapping[str, Arm] = field(default_factory=dict)
    picks: int = 0  # decisions made in this context
    explored: int = 0  # of which differed from the greedy choice
    now: float = 0.0  # wall time of the read (for half-lives in seconds)


class EstimatesStore(Protocol):
    """Reads a context's estimates; adds an observation atomically (decay included)."""

    async def read(self, contexts: Iterable[str]) -> dict[str, ContextEstimates]: ...

    async def observe(
        self, context: str, model: str, reward: float, half_life: HalfLife | None
    ) -> None: ...

    async def note_pick(self, context: str, explored: bool) -> None: ...

    async def close(self) -> None: ...


def apply(arm: Arm, clock: float, now: float, reward: float, half_life: HalfLife | None) -> Arm:
    """`arm` after one observation of `reward` in [0, 1] at the context's new `clock`."""
    old = arm.decayed(clock, now, half_life)
    return Arm(old.wins + reward, old.losses + (1.0 - reward), clock, now)


def check_reward(reward: float) -> float:
    if not (isinstance(reward, int | float) and 0.0 <= reward <= 1.0):
        raise ValueError(f"a reward must be a number in [0, 1], got {reward!r}")
    return float(reward)


class InMemoryEstimates:
    """Estimates in this process (lost on restart); the default."""

    def __init__(self) -> None:
        self._contexts: dict[str, ContextEstimates] = {}
        self._lock = threading.Lock()  # eval and the server call from one loop; tests from many

    async def read(self, contexts: Iterable[str]) -> dict[str, ContextEstimates]:
        now = time.time()
        with self._lock:
            return {c: _at(self._contexts.get(c, ContextEstimates()), now) for c in contexts}

    async def observe(
        self, context: str, model: str, reward: float, half_life: HalfLife | None
    ) -> None:
        reward = check_reward(reward)
        now = time.time()
        with self._lock:
            ctx = self._contexts.get(context, ContextEstimates())
            clock = ctx.clock + 1
            arms = dict(ctx.arms)
            arms[model] = apply(
                arms.get(model, Arm(clock=clock, at=now)), clock, now, reward, half_life
            )
            self._contexts[context] = ContextEstimates(clock, arms, ctx.picks, ctx.explored)

    async def note_pick(self, context: str, explored: bool) -> None:
        with self._lock:
            ctx = self._contexts.get(context, ContextEstimates())
            self._contexts[context] = ContextEstimates(
                ctx.clock, ctx.arms, ctx.picks + 1, ctx.explored + int(explored)
            )

    async def close(self) -> None:
        return None


def _at(ctx: ContextEstimates, now: float) -> ContextEstimates:
    return ContextEstimates(ctx.clock, dict(ctx.arms), ctx.picks, ctx.explored, now)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS contexts (
  context TEXT PRIMARY KEY, clock REAL NOT NULL, picks INTEGER NOT NULL, explored INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS arms (
  context TEXT NOT NULL, model TEXT NOT NULL, wins REAL NOT NULL, losses REAL NOT NULL,
  clock REAL NOT NULL, at REAL NOT NULL, PRIMARY KEY (context, model)
);
"""


class SqliteEstimates:
    """Estimates in a local SQLite file: a restart keeps what was learned. Each observation is
    one transaction (`BEGIN IMMEDIATE`), so processes sharing the file do not lose updates."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, used from worker threads one at a time (the lock): the event loop
        # never waits on the disk.
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=5.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    async def read(self, contexts: Iterable[str]) -> dict[str, ContextEstimates]:
        return await asyncio.to_thread(self._read, list(contexts))

    def _read(self, contexts: list[str]) -> dict[str, ContextEstimates]:
        now = time.time()
        out: dict[str, ContextEstimates] = {}
        with self._lock:
            for context in contexts:
                row = self._db.execute(
                    "SELECT clock, picks, explored FROM contexts WHERE context = ?", (context,)
                ).fetchone()
                arms = {
                    m: Arm(w, lo, c, a)
                    for m, w, lo, c, a in self._db.execute(
                        "SELECT model, wins, losses, clock, at FROM arms WHERE context = ?",
                        (context,),
                    )
                }
                clock, picks, explored = row if row else (0.0, 0, 0)
                out[context] = ContextEstimates(clock, arms, picks, explored, now)
        return out

    async def observe(
        self, context: str, model: str, reward: float, half_life: HalfLife | None
    ) -> None:
        reward = check_reward(reward)
        await asyncio.to_thread(self._observe, context, model, reward, half_life)

    def _observe(self, context: str, model: str, reward: float, half_life: HalfLife | None) -> None:
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO contexts VALUES (?, 1, 0, 0) ON CONFLICT(context) "
                    "DO UPDATE SET clock = clock + 1",
                    (context,),
                )
                (clock,) = db.execute(
                    "SELECT clock FROM contexts WHERE context = ?", (context,)
                ).fetchone()
                row = db.execute(
                    "SELECT wins, losses, clock, at FROM arms WHERE context = ? AND model = ?",
                    (context, model),
                ).fetchone()
                arm = apply(
                    Arm(*row) if row else Arm(clock=clock, at=now), clock, now, reward, half_life
                )
                db.execute(
                    "INSERT OR REPLACE INTO arms VALUES (?, ?, ?, ?, ?, ?)",
                    (context, model, arm.wins, arm.losses, arm.clock, arm.at),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    async def note_pick(self, context: str, explored: bool) -> None:
        await asyncio.to_thread(self._note_pick, context, explored)

    def _note_pick(self, context: str, explored: bool) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO contexts VALUES (?, 0, 1, ?) ON CONFLICT(context) "
                "DO UPDATE SET picks = picks + 1, explored = explored + excluded.explored",
                (context, int(explored)),
            )

    async def close(self) -> None:
        with self._lock:
            self._db.close()


def open_store(spec: str, *, on_unavailable: str = "local") -> EstimatesStore:
    """The store a `--learning-store` / `learning.store` value names."""
    if spec == "memory":
        return InMemoryEstimates()
    if spec.startswith("sqlite:"):
        return SqliteEstimates(spec.removeprefix("sqlite:"))
    if spec.startswith(("redis://", "rediss://")):
        from meritorder.learning.redis import RedisEstimates

        fallback = InMemoryEstimates() if on_unavailable == "local" else None
        return RedisEstimates(spec, fallback=fallback)
    raise ValueError(f"learning store {spec!r}: use memory, sqlite:PATH or redis://host:port/db")
