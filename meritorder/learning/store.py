"""Learned estimates: what a context (a decision, or a domain) has observed of each model.

A store keeps, per context, a clock (how many observations it has had) and, per model, the
evidence of its rewards: `wins` (sum of rewards) and `losses` (sum of 1 - reward), each stamped
with the clock and the wall time of its last update. Decay is applied on the way in and out, by
the pure `decayed` below, so that every store (memory, SQLite, Redis) computes the same numbers:
evidence that is one half-life old counts half. The prior is not stored; the bandit adds it
(scaled by the context's `prior_scale`, which a reset lowers).

Change detection (`learn.detect`, the pure `observed` below): each arm carries a two-sided
CUSUM of its prediction errors (reward minus the prediction it had before the reward). When
either side passes the threshold, the context is reset: every arm's evidence, and the prior,
is shrunk to at most `keep` observations (means kept), so that every arm is open to doubt
again, not only the one that saw the change (a change of the stream's difficulty moves every
arm at once). Between changes evidence accumulates, so exploration shrinks. With `idle`, an arm
keeps less the longer ago it was last observed (`kept`): its mean is the level of an older
stretch of the stream, so it falls back on its prior and is tried again.

The relative model (`learn.model: relative`): the context also keeps a `level`, the stream's
current difficulty, and each arm `resid`, the sum of its rewards less the level at the time of
each (decayed like its counts). An arm's quality is the level plus its offset, `resid / count`,
with the prior's mean against the prior's mean level as `weight` observations of offset. Each
observation's error (reward - level - offset) moves the level by `step` and is what the
detector watches, so a change common to every arm, which shows on whichever arm is played,
moves every arm's estimate at once instead of leaving the others at the levels of older rows.
Offsets are relative and only their differences matter: the level absorbs the mean. When one
arm is played for long, only level + its offset is seen, and the prior's offsets (not its
levels, as under the absolute model) are what rank the arms that are not played.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from meritorder.learning.config import HalfLife


@dataclass(frozen=True)
class Arm:
    """One model's evidence in one context, as of its last observation."""

    wins: float = 0.0
    losses: float = 0.0
    # The context's observation count, and the wall time (s), of the arm's last observation
    # (a reset scales the evidence and keeps both: decay runs on from there, and `idle` reads
    # the arm's age from `clock`).
    clock: float = 0.0
    at: float = 0.0
    # The change detector's two CUSUM sides (prediction errors above / below the posterior
    # mean, less the drift allowance); not evidence, so they do not decay.
    up: float = 0.0
    down: float = 0.0
    # The relative model's evidence: the sum of (reward - the context's level at the time),
    # decayed like wins and losses; `resid / count` is the arm's offset from the level.
    resid: float = 0.0

    def decayed(self, now_clock: float, now: float, half_life: HalfLife | None) -> Arm:
        """This evidence as it counts at (`now_clock`, `now`)."""
        f = decay_factor(self, now_clock, now, half_life)
        return Arm(
            self.wins * f, self.losses * f, now_clock, now, self.up, self.down, self.resid * f
        )

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
    prior_scale: float = 1.0  # what is left of the prior's weight after resets
    resets: int = 0  # times the change detector reset this context
    reset_clock: float = 0.0  # the clock at the last reset
    # The relative model's level: the stream's current difficulty in this context (None: no
    # observation yet, the prior's mean level stands).
    level: float | None = None


@dataclass(frozen=True)
class Detect:
    """What an observation needs to watch for a change: `learn.detect` and the prior."""

    threshold: float
    drift: float
    keep: float
    weight: float  # the prior's configured weight (`learn.prior.weight`)
    priors: Mapping[str, float] = field(default_factory=dict)  # prior mean per model
    # On a reset, an arm last observed `idle` observations ago keeps half of `keep` (None:
    # every arm keeps `keep`).
    idle: float | None = None


def kept(keep: float, idle: float | None, age: float) -> float:
    """The observations an arm keeps on a reset when it was last observed `age` observations
    ago: `keep`, halved for every `idle` observations of age.

    A kept mean is the level of the stretch of the stream when the arm was last played; the
    older it is, the less it says about the stream after the change, so the arm falls back on
    its prior (as doubtful as the reset left it) and sampling tries it again."""
    if idle is None:
        return keep
    return keep * math.pow(0.5, max(0.0, age) / idle)


@dataclass(frozen=True)
class Relative:
    """What an observation needs under `learn.model: relative`: the level's step and the prior
    (whose means seed the offsets against their own mean level)."""

    step: float
    weight: float  # the prior's configured weight (`learn.prior.weight`)
    priors: Mapping[str, float] = field(default_factory=dict)

    @property
    def prior_level(self) -> float:
        return prior_level(self.priors)


@dataclass(frozen=True)
class Rules:
    """How an observation forgets and watches for change: `learn.half_life`, `learn.detect` and
    `learn.model: relative` (None: each off; `bandit.rules` builds them from a `learn` block)."""

    half_life: HalfLife | None = None
    detect: Detect | None = None
    relative: Relative | None = None


RULES = Rules()  # plain evidence: no decay, no detection, the absolute model


def prior_level(priors: Mapping[str, float]) -> float:
    """The level the prior's means were measured at: their mean (0.5 without a prior)."""
    return sum(priors.values()) / len(priors) if priors else 0.5


def offset(arm: Arm | None, prior: float | None, weight: float, level0: float) -> float:
    """An arm's quality relative to the level: its residuals, and the prior's mean against the
    prior's mean level `level0` worth `weight` observations (0 with neither)."""
    total, count = 0.0, 0.0
    if prior is not None:
        total, count = (prior - level0) * weight, weight
    if arm is not None:
        total, count = total + arm.resid, count + arm.count
    return total / count if count > 0 else 0.0


def relative_posterior(
    arm: Arm | None, prior: float | None, weight: float, level: float, level0: float
) -> tuple[float, float]:
    """Beta(alpha, beta) of one arm under the relative model: mean level + offset (clipped into
    (0, 1)), as sure as the arm's evidence and prior weight, over a uniform Beta(1, 1)."""
    count = (arm.count if arm is not None else 0.0) + (weight if prior is not None else 0.0)
    quality = min(1.0, max(0.0, level + offset(arm, prior, weight, level0)))
    return 1.0 + quality * count, 1.0 + (1.0 - quality) * count


class EstimatesStore(Protocol):
    """Reads a context's estimates; adds an observation atomically (decay and change detection
    included) and says whether it reset the context."""

    async def read(self, contexts: Iterable[str]) -> dict[str, ContextEstimates]: ...

    async def observe(
        self, context: str, model: str, reward: float, rules: Rules = RULES
    ) -> bool: ...

    async def note_pick(self, context: str, explored: bool) -> None: ...

    async def close(self) -> None: ...


def prior_weight(weight: float, clock: float, half_life: HalfLife | None, scale: float) -> float:
    """The prior's pseudo-count after `clock` observations of its context.

    The prior is evidence too, the oldest there is (from the eval file, before the context's
    first observation), so it decays like the rest: with a half-life in observations it counts
    half after one half-life. Otherwise an arm the context seldom picks would keep a posterior as
    confident as `weight` observations at the fit source's mean for ever, neither explored nor
    doubted after a shift. A half-life in seconds leaves it whole (a context's start time is not
    stored). `scale` is what the context's resets left of it."""
    fade = 1.0
    if half_life is not None and half_life.unit == "observations":
        fade = math.pow(0.5, max(0.0, clock) / half_life.value)
    return weight * fade * scale


def posterior(arm: Arm | None, prior: float | None, weight: float) -> tuple[float, float]:
    """Beta(alpha, beta) of one arm: a uniform Beta(1, 1), the prior's pseudo-counts, the data."""
    alpha = beta = 1.0
    if prior is not None:
        alpha += prior * weight
        beta += (1.0 - prior) * weight
    if arm is not None:
        alpha += arm.wins
        beta += arm.losses
    return alpha, beta


def observed(
    ctx: ContextEstimates, model: str, reward: float, now: float, rules: Rules = RULES
) -> tuple[ContextEstimates, bool]:
    """`ctx` after one observation of `model`'s `reward`, and whether it reset the context.

    The arithmetic every store runs (Redis in Lua, mirrored line for line). Under the relative
    model the prediction is the level plus the arm's offset; the error moves the level by
    `step` (a change common to every arm shows on whichever arm is played, so the level, not
    that arm, takes it), the arm's offset evidence takes `reward - level`, and the detector
    watches the same error (the residual)."""
    half_life, detect, relative = rules.half_life, rules.detect, rules.relative
    clock = ctx.clock + 1
    arms = dict(ctx.arms)
    # The arm's evidence as it counts now, before this reward; then with it.
    before = arms.get(model, Arm(clock=clock, at=now)).decayed(clock, now, half_life)
    level = ctx.level
    if relative is not None:
        level = relative.prior_level if level is None else level
        weight = prior_weight(relative.weight, ctx.clock, half_life, ctx.prior_scale)
        prediction = level + offset(
            before, relative.priors.get(model), weight, relative.prior_level
        )
        resid = before.resid + reward - level
    elif detect is not None:
        weight = prior_weight(detect.weight, ctx.clock, half_life, ctx.prior_scale)
        alpha, beta = posterior(before, detect.priors.get(model), weight)
        prediction, resid = alpha / (alpha + beta), before.resid
    else:
        prediction, resid = 0.0, before.resid
    # The error of the prediction made before this reward.
    error = reward - prediction
    arm = Arm(
        before.wins + reward,
        before.losses + (1.0 - reward),
        clock,
        now,
        before.up,
        before.down,
        resid,
    )
    if relative is not None:
        assert level is not None
        level += relative.step * error
    fired = False
    if detect is not None:
        up = max(0.0, arm.up + error - detect.drift)
        down = max(0.0, arm.down - error - detect.drift)
        fired = max(up, down) > detect.threshold
        arm = replace(arm, up=up, down=down)
    arms[model] = arm
    if not fired:
        return replace(ctx, clock=clock, arms=arms, level=level), False
    assert detect is not None
    # Reset: the whole context, so that a change of the stream moves no single arm alone. Each
    # arm's stored evidence is scaled where it stands (its clock and time kept, so that it goes
    # on decaying from its last observation and its age stays known).
    keep = detect.keep
    for name, old in arms.items():
        count = old.decayed(clock, now, half_life).count
        cap = kept(keep, detect.idle, clock - old.clock)
        shrink = min(1.0, cap / count) if count > 0 else 1.0
        arms[name] = Arm(
            old.wins * shrink, old.losses * shrink, old.clock, old.at, resid=old.resid * shrink
        )
    weight = prior_weight(detect.weight, clock, half_life, ctx.prior_scale)
    scale = ctx.prior_scale * (min(1.0, keep / weight) if weight > 0 else 1.0)
    return (
        replace(
            ctx,
            clock=clock,
            arms=arms,
            prior_scale=scale,
            resets=ctx.resets + 1,
            reset_clock=clock,
            level=level,
        ),
        True,
    )


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

    async def observe(self, context: str, model: str, reward: float, rules: Rules = RULES) -> bool:
        reward = check_reward(reward)
        now = time.time()
        with self._lock:
            ctx = self._contexts.get(context, ContextEstimates())
            self._contexts[context], fired = observed(ctx, model, reward, now, rules)
        return fired

    async def note_pick(self, context: str, explored: bool) -> None:
        with self._lock:
            ctx = self._contexts.get(context, ContextEstimates())
            self._contexts[context] = replace(
                ctx, picks=ctx.picks + 1, explored=ctx.explored + int(explored)
            )

    async def close(self) -> None:
        return None


def _at(ctx: ContextEstimates, now: float) -> ContextEstimates:
    return replace(ctx, arms=dict(ctx.arms), now=now)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS contexts (
  context TEXT PRIMARY KEY, clock REAL NOT NULL, picks INTEGER NOT NULL, explored INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS arms (
  context TEXT NOT NULL, model TEXT NOT NULL, wins REAL NOT NULL, losses REAL NOT NULL,
  clock REAL NOT NULL, at REAL NOT NULL, PRIMARY KEY (context, model)
);
"""
# Columns added with change detection and the relative model: a file written before them gains
# them on open (a NULL level: none learned yet, as in a new context).
_ADDED = {
    "contexts": {
        "prior_scale": "REAL NOT NULL DEFAULT 1",
        "resets": "INTEGER NOT NULL DEFAULT 0",
        "reset_clock": "REAL NOT NULL DEFAULT 0",
        "level": "REAL",
    },
    "arms": {
        "up": "REAL NOT NULL DEFAULT 0",
        "down": "REAL NOT NULL DEFAULT 0",
        "resid": "REAL NOT NULL DEFAULT 0",
    },
}
_CONTEXT = "SELECT clock, picks, explored, prior_scale, resets, reset_clock, level FROM contexts"
_ARMS = "SELECT model, wins, losses, clock, at, up, down, resid FROM arms WHERE context = ?"


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
        for table, columns in _ADDED.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        self._lock = threading.Lock()

    async def read(self, contexts: Iterable[str]) -> dict[str, ContextEstimates]:
        return await asyncio.to_thread(self._read, list(contexts))

    def _read(self, contexts: list[str]) -> dict[str, ContextEstimates]:
        now = time.time()
        with self._lock:
            return {context: self._context(context, now) for context in contexts}

    def _context(self, context: str, now: float) -> ContextEstimates:
        row = self._db.execute(f"{_CONTEXT} WHERE context = ?", (context,)).fetchone()
        arms = {m: Arm(*values) for m, *values in self._db.execute(_ARMS, (context,))}
        if row is None:
            return ContextEstimates(arms=arms, now=now)
        clock, picks, explored, scale, resets, reset_clock, level = row
        return ContextEstimates(
            clock, arms, picks, explored, now, scale, resets, reset_clock, level
        )

    async def observe(self, context: str, model: str, reward: float, rules: Rules = RULES) -> bool:
        reward = check_reward(reward)
        return await asyncio.to_thread(self._observe, context, model, reward, rules)

    def _observe(self, context: str, model: str, reward: float, rules: Rules) -> bool:
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                ctx, fired = observed(self._context(context, now), model, reward, now, rules)
                db.execute(
                    "INSERT INTO contexts (context, clock, picks, explored, prior_scale, resets, "
                    "reset_clock, level) VALUES (?, ?, 0, 0, ?, ?, ?, ?) ON CONFLICT(context) "
                    "DO UPDATE SET clock = excluded.clock, prior_scale = excluded.prior_scale, "
                    "resets = excluded.resets, reset_clock = excluded.reset_clock, "
                    "level = excluded.level",
                    (context, ctx.clock, ctx.prior_scale, ctx.resets, ctx.reset_clock, ctx.level),
                )
                # A reset rewrote every arm of the context; otherwise only this one changed.
                for name in ctx.arms if fired else [model]:
                    arm = ctx.arms[name]
                    db.execute(
                        "INSERT OR REPLACE INTO arms (context, model, wins, losses, clock, at, up, "
                        "down, resid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            context,
                            name,
                            arm.wins,
                            arm.losses,
                            arm.clock,
                            arm.at,
                            arm.up,
                            arm.down,
                            arm.resid,
                        ),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return fired

    async def note_pick(self, context: str, explored: bool) -> None:
        await asyncio.to_thread(self._note_pick, context, explored)

    def _note_pick(self, context: str, explored: bool) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO contexts (context, clock, picks, explored) VALUES (?, 0, 1, ?) "
                "ON CONFLICT(context) "
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
