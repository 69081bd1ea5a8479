"""The in-process and SQLite estimate stores: the same arithmetic, SQLite survives a restart, the
change detector fires on a shift and not on a steady stream (seeded Bernoulli streams), and the
relative model's level and offsets are kept like the rest."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from meritorder.learning.config import HalfLife
from meritorder.learning.store import (
    Arm,
    ContextEstimates,
    Detect,
    EstimatesStore,
    InMemoryEstimates,
    Relative,
    Rules,
    SqliteEstimates,
    observed,
    offset,
    open_store,
)
from tests.helpers import (
    IDLE,
    IDLE_STREAM,
    RELATIVE,
    RELATIVE_STREAM,
    Stream,
    assert_same_estimates,
    feed_relative,
    on_three_arms,
)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EstimatesStore]:
    """Each store of this process: in memory, and SQLite (closed after the test)."""
    local: EstimatesStore = (
        InMemoryEstimates() if request.param == "memory" else SqliteEstimates(tmp_path / "e.db")
    )
    yield local
    await local.close()


async def feed(store: EstimatesStore, half_life: HalfLife | None = None) -> None:
    for reward in (1.0, 0.0, 0.5):
        await store.observe("decision:math", "a", reward, Rules(half_life))
    await store.observe("decision:math", "b", 1.0, Rules(half_life))
    await store.note_pick("decision:math", explored=True)
    await store.note_pick("decision:math", explored=False)


async def test_observations_add_fractional_rewards(store: EstimatesStore) -> None:
    await feed(store)
    ctx = (await store.read(["decision:math", "decision:other"]))["decision:math"]
    assert ctx.clock == 4 and ctx.picks == 2 and ctx.explored == 1
    assert ctx.arms["a"].wins == pytest.approx(1.5) and ctx.arms["a"].losses == pytest.approx(1.5)
    assert ctx.arms["b"].count == pytest.approx(1.0)
    empty = (await store.read(["decision:other"]))["decision:other"]
    assert empty.clock == 0 and not empty.arms


async def test_decay_halves_evidence_one_half_life_old(store: EstimatesStore) -> None:
    half = HalfLife(value=2)
    await store.observe("c", "a", 1.0, Rules(half))  # clock 1
    await store.observe("c", "b", 1.0, Rules(half))  # clock 2
    await store.observe("c", "b", 1.0, Rules(half))  # clock 3
    await store.observe("c", "a", 0.0, Rules(half))  # clock 4: a's win is 3 observations old
    arm = (await store.read(["c"]))["c"].arms["a"]
    assert arm.wins == pytest.approx(0.5**1.5) and arm.losses == pytest.approx(1.0)


async def test_sqlite_keeps_learned_estimates_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "learned.db"
    store = open_store(f"sqlite:{path}")
    await feed(store)
    before = await store.read(["decision:math"])
    await store.close()
    reopened = open_store(f"sqlite:{path}")
    after = await reopened.read(["decision:math"])
    assert after["decision:math"].arms == before["decision:math"].arms
    assert after["decision:math"].clock == 4 and after["decision:math"].picks == 2
    await reopened.observe("decision:math", "b", 0.0)  # and it goes on learning
    assert (await reopened.read(["decision:math"]))["decision:math"].arms["b"].losses == 1.0
    await reopened.close()


async def test_two_sqlite_stores_on_one_file_lose_no_update(tmp_path: Path) -> None:
    one, two = SqliteEstimates(tmp_path / "e.db"), SqliteEstimates(tmp_path / "e.db")
    await asyncio.gather(*(s.observe("c", "a", 1.0) for _ in range(50) for s in (one, two)))
    ctx = (await one.read(["c"]))["c"]
    assert ctx.clock == 100 and ctx.arms["a"].wins == pytest.approx(100)
    await one.close()
    await two.close()


async def test_a_reward_outside_zero_one_is_refused() -> None:
    store = InMemoryEstimates()
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        await store.observe("c", "a", 1.5)


def test_an_unknown_store_spec_names_the_choices() -> None:
    with pytest.raises(ValueError, match="memory, sqlite:PATH or redis://"):
        open_store("postgres://x")


# The shipped detector (learn.detect's defaults): no prior, so every error is the data's own.
DETECT = Detect(threshold=16, drift=0.05, keep=30, weight=0)


def bernoulli(rates: Sequence[float], seed: int) -> list[float]:
    world = random.Random(seed)
    return [float(world.random() < p) for p in rates]


def first_reset(rewards: Sequence[float], detect: Detect = DETECT) -> int | None:
    """The row at which one arm's stream of rewards first resets its context, if it does."""
    ctx = ContextEstimates()
    for row, reward in enumerate(rewards):
        ctx, fired = observed(ctx, "a", reward, 0.0, Rules(detect=detect))
        if fired:
            return row
    return None


@pytest.mark.parametrize("seed", range(5))
def test_the_detector_fires_within_100_rows_of_an_abrupt_drop(seed: int) -> None:
    rewards = bernoulli([0.8] * 1000 + [0.4] * 1000, seed)
    fired = first_reset(rewards)
    assert fired is not None and 1000 <= fired < 1100


@pytest.mark.parametrize("seed", range(5))
def test_the_detector_fires_within_100_rows_of_an_abrupt_rise(seed: int) -> None:
    fired = first_reset(bernoulli([0.3] * 1000 + [0.7] * 1000, seed))
    assert fired is not None and 1000 <= fired < 1100


@pytest.mark.parametrize("seed", range(5))
def test_the_detector_does_not_fire_on_a_steady_stream(seed: int) -> None:
    assert first_reset(bernoulli([0.6] * 3000, seed)) is None
    # The same stream with no allowance for noise (drift 0) is a false alarm: the test can fail.
    eager = Detect(threshold=16, drift=0.0, keep=30, weight=0)
    assert first_reset(bernoulli([0.6] * 3000, seed), eager) is not None


def test_a_reset_shrinks_every_arm_and_the_prior_to_keep_observations_and_keeps_their_means() -> (
    None
):
    detect = Detect(threshold=2, drift=0.0, keep=10, weight=100, priors={"a": 0.9, "b": 0.5})
    ctx = ContextEstimates(
        clock=400,
        arms={"a": Arm(wins=90, losses=10, clock=400), "b": Arm(wins=150, losses=150, clock=400)},
    )
    fired = False
    for _ in range(3):  # a, believed at 0.9, fails three times: an error of about -0.9 each
        assert not fired
        ctx, fired = observed(ctx, "a", 0.0, 0.0, Rules(detect=detect))
    assert fired and ctx.resets == 1 and ctx.reset_clock == ctx.clock == 403
    a, b = ctx.arms["a"], ctx.arms["b"]
    assert a.count == pytest.approx(10) and a.wins / a.count == pytest.approx(90 / 103)
    assert b.count == pytest.approx(10) and b.wins / b.count == pytest.approx(0.5)
    assert (a.up, a.down) == (0.0, 0.0)
    assert ctx.prior_scale * detect.weight == pytest.approx(10)  # the prior: worth 10 now


@pytest.mark.parametrize("idle", [50.0, None])
def test_with_idle_a_reset_halves_what_an_arm_keeps_for_every_idle_observations_it_was_not_seen(
    idle: float | None,
) -> None:
    detect = Detect(threshold=2, drift=0.0, keep=10, weight=0, idle=idle)
    ctx = ContextEstimates(
        clock=400,
        arms={
            "a": Arm(wins=90, losses=10, clock=400),
            "b": Arm(wins=150, losses=150, clock=300),  # last observed 100 observations ago
            "c": Arm(wins=20, losses=20, clock=397),
        },
    )
    fired = False
    for _ in range(3):  # a, at 0.9 over 100 observations, fails three times
        assert not fired
        ctx, fired = observed(ctx, "a", 0.0, 0.0, Rules(detect=detect))
    assert fired and ctx.clock == 403
    a, b, c = ctx.arms["a"], ctx.arms["b"], ctx.arms["c"]
    assert a.count == pytest.approx(10)  # just observed: keeps keep
    if idle is None:  # every arm keeps keep
        assert b.count == pytest.approx(10) and c.count == pytest.approx(10)
    else:  # 103 and 6 observations since each was seen
        assert b.count == pytest.approx(10 * 0.5 ** (103 / 50))
        assert c.count == pytest.approx(10 * 0.5 ** (6 / 50))
    # The means are kept, and each arm its clock: the age of its evidence stays known.
    assert b.wins / b.count == pytest.approx(0.5) and c.wins / c.count == pytest.approx(0.5)
    assert (a.clock, b.clock, c.clock) == (403, 300, 397)


def test_a_reset_keeps_each_arms_clock_so_its_evidence_decays_from_its_last_observation() -> None:
    half = HalfLife(value=20)
    detect = Detect(threshold=2, drift=0.0, keep=10, weight=0)
    ctx = ContextEstimates(
        clock=400, arms={"a": Arm(wins=90, losses=10, clock=400), "b": Arm(50, 50, clock=380)}
    )
    for _ in range(3):
        ctx, fired = observed(ctx, "a", 0.0, 0.0, Rules(half, detect))
    assert fired and ctx.arms["b"].clock == 380
    # At the reset b counted 100 x 0.5^(23/20) > 10: it keeps 10, decaying on from there.
    b = ctx.arms["b"].decayed(ctx.clock, 0.0, half)
    assert b.count == pytest.approx(10)
    assert ctx.arms["b"].decayed(ctx.clock + 20, 0.0, half).count == pytest.approx(5)


async def test_the_idle_reset_reads_back_the_same_from_every_local_store(
    store: EstimatesStore,
) -> None:
    fired = await IDLE_STREAM.feed(store)
    want = IDLE_STREAM.want()
    assert sum(fired) == want.resets == 1
    # The stream's idle arm keeps far less than keep: the test holds `idle`'s arithmetic.
    assert want.arms["old"].decayed(want.clock, 0.0, HalfLife(value=50)).count < IDLE.keep / 4
    got = (await store.read(["decision:i"]))["decision:i"]
    assert_same_estimates(got, want)
    assert {m: a.clock for m, a in got.arms.items()} == {m: a.clock for m, a in want.arms.items()}


def test_without_detection_nothing_is_reset() -> None:
    ctx = ContextEstimates()
    for reward in bernoulli([0.9] * 500 + [0.1] * 500, 3):
        ctx, fired = observed(ctx, "a", reward, 0.0, Rules())
        assert not fired
    assert ctx.resets == 0 and ctx.arms["a"].count == 1000


# A drop that resets the context once, on three arms.
DROP_STREAM = Stream(
    "decision:d",
    on_three_arms([1.0] * 30 + [0.0] * 10),
    Rules(
        HalfLife(value=50), Detect(threshold=3, drift=0.05, keep=5, weight=20, priors={"a": 0.8})
    ),
)


async def feed_detected(store: EstimatesStore) -> list[bool]:
    """`DROP_STREAM` through `store`, then one explored pick."""
    fired = await DROP_STREAM.feed(store)
    await store.note_pick(DROP_STREAM.context, explored=True)
    return fired


async def test_a_reset_and_the_detectors_state_read_back_the_same_from_every_local_store(
    store: EstimatesStore,
) -> None:
    fired = await feed_detected(store)
    assert sum(fired) >= 1
    want = DROP_STREAM.want()  # the pure arithmetic
    got = (await store.read(["decision:d"]))["decision:d"]
    assert_same_estimates(got, want)
    assert got.prior_scale < 1 and got.picks == 1


async def test_sqlite_keeps_the_detectors_state_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "learned.db"
    store = SqliteEstimates(path)
    await feed_detected(store)
    before = (await store.read(["decision:d"]))["decision:d"]
    await store.close()
    reopened = SqliteEstimates(path)
    after = (await reopened.read(["decision:d"]))["decision:d"]
    assert after.arms == before.arms and after.resets == before.resets >= 1
    assert after.prior_scale == before.prior_scale and after.reset_clock == before.reset_clock
    await reopened.close()


async def test_a_sqlite_file_from_before_detection_opens_and_keeps_its_estimates(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE contexts (context TEXT PRIMARY KEY, clock REAL NOT NULL,
          picks INTEGER NOT NULL, explored INTEGER NOT NULL);
        CREATE TABLE arms (context TEXT NOT NULL, model TEXT NOT NULL, wins REAL NOT NULL,
          losses REAL NOT NULL, clock REAL NOT NULL, at REAL NOT NULL,
          PRIMARY KEY (context, model));
        INSERT INTO contexts VALUES ('c', 7, 5, 1);
        INSERT INTO arms VALUES ('c', 'a', 4, 3, 7, 0);
        """
    )
    old.commit()
    old.close()
    store = SqliteEstimates(path)
    ctx = (await store.read(["c"]))["c"]
    assert (ctx.clock, ctx.picks, ctx.explored, ctx.resets, ctx.prior_scale) == (7, 5, 1, 0, 1.0)
    assert ctx.arms["a"] == Arm(4, 3, 7, 0)
    assert not await store.observe("c", "a", 1.0, Rules(detect=DETECT))
    assert (await store.read(["c"]))["c"].arms["a"].wins == 5
    await store.close()


def test_the_relative_level_takes_a_step_of_each_error_and_the_arm_the_reward_less_the_level() -> (
    None
):
    # Prior means 0.8 and 0.4: the prior's mean level 0.6, a's offset +0.2 worth 10 observations.
    relative = Relative(step=0.1, weight=10, priors={"a": 0.8, "b": 0.4})
    ctx, fired = observed(ContextEstimates(), "a", 0.0, 0.0, Rules(relative=relative))
    assert not fired
    # Predicted 0.6 + 0.2 = 0.8, got 0: the level takes a tenth of the error, the arm the rest.
    assert ctx.level == pytest.approx(0.6 - 0.1 * 0.8)
    assert ctx.arms["a"].resid == pytest.approx(0.0 - 0.6)
    assert offset(ctx.arms["a"], 0.8, 10, 0.6) == pytest.approx((0.2 * 10 - 0.6) / 11)
    ctx, _ = observed(ctx, "b", 1.0, 0.0, Rules(relative=relative))
    assert ctx.arms["b"].resid == pytest.approx(1.0 - 0.52)  # against the level at the time
    assert ctx.level == pytest.approx(0.52 + 0.1 * (1.0 - (0.52 - 0.2)))
    # Without the relative model the level is never touched.
    plain, _ = observed(ContextEstimates(), "a", 0.0, 0.0, Rules())
    assert plain.level is None and plain.arms["a"].resid == 0.0


def test_under_the_relative_model_the_detector_watches_the_residual() -> None:
    # One arm, steady at 0.8 and then steady at 0.4: the level follows the drop in a few dozen
    # rows, so the residual returns to zero and the CUSUM stops growing. The absolute model's
    # detector, watching the error against the arm's long mean, fires on the same stream.
    rewards = bernoulli([0.8] * 1000 + [0.4] * 1000, 1)
    relative = Relative(step=0.05, weight=0)
    ctx = ContextEstimates()
    for reward in rewards:
        ctx, fired = observed(ctx, "a", reward, 0.0, Rules(detect=DETECT, relative=relative))
        assert not fired
    assert ctx.level is not None and ctx.level + offset(ctx.arms["a"], None, 0, 0.5) < 0.6
    assert first_reset(rewards) is not None


async def test_the_relative_models_level_and_offsets_read_back_from_every_local_store(
    store: EstimatesStore,
) -> None:
    fired = await feed_relative(store)
    assert sum(fired) >= 1  # the stream does reset the context: the reset's arithmetic is held
    want = RELATIVE_STREAM.want()
    assert want.level is not None and want.level != RELATIVE.prior_level
    assert any(arm.resid != 0 for arm in want.arms.values())
    assert_same_estimates((await store.read(["decision:r"]))["decision:r"], want)


async def test_sqlite_keeps_the_level_and_offsets_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "learned.db"
    store = SqliteEstimates(path)
    await feed_relative(store)
    await store.close()
    reopened = SqliteEstimates(path)
    assert_same_estimates(
        (await reopened.read(["decision:r"]))["decision:r"], RELATIVE_STREAM.want()
    )
    await reopened.close()


async def test_a_sqlite_file_from_before_the_relative_model_opens_and_keeps_its_estimates(
    tmp_path: Path,
) -> None:
    path = tmp_path / "detect-era.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE contexts (context TEXT PRIMARY KEY, clock REAL NOT NULL,
          picks INTEGER NOT NULL, explored INTEGER NOT NULL,
          prior_scale REAL NOT NULL DEFAULT 1, resets INTEGER NOT NULL DEFAULT 0,
          reset_clock REAL NOT NULL DEFAULT 0);
        CREATE TABLE arms (context TEXT NOT NULL, model TEXT NOT NULL, wins REAL NOT NULL,
          losses REAL NOT NULL, clock REAL NOT NULL, at REAL NOT NULL,
          up REAL NOT NULL DEFAULT 0, down REAL NOT NULL DEFAULT 0,
          PRIMARY KEY (context, model));
        INSERT INTO contexts VALUES ('c', 7, 5, 1, 0.5, 2, 6);
        INSERT INTO arms VALUES ('c', 'a', 4, 3, 7, 0, 0.25, 0);
        """
    )
    old.commit()
    old.close()
    store = SqliteEstimates(path)
    ctx = (await store.read(["c"]))["c"]
    assert (ctx.clock, ctx.resets, ctx.reset_clock, ctx.prior_scale) == (7, 2, 6, 0.5)
    assert ctx.level is None  # no level learned yet: the prior's mean level stands
    assert ctx.arms["a"] == Arm(4, 3, 7, 0, 0.25, 0.0, 0.0)
    relative = Relative(step=0.5, weight=0)
    assert not await store.observe("c", "a", 1.0, Rules(relative=relative))
    after = (await store.read(["c"]))["c"]
    assert after.level == pytest.approx(0.5 + 0.5 * (1.0 - (0.5 + 0.0)))
    assert after.arms["a"].resid == pytest.approx(0.5) and after.arms["a"].wins == 5
    await store.close()
