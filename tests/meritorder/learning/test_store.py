"""The in-process and SQLite estimate stores: the same arithmetic, and SQLite survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meritorder.learning.config import HalfLife
from meritorder.learning.store import (
    EstimatesStore,
    InMemoryEstimates,
    SqliteEstimates,
    open_store,
)


async def feed(store: EstimatesStore, half_life: HalfLife | None = None) -> None:
    for reward in (1.0, 0.0, 0.5):
        await store.observe("decision:math", "a", reward, half_life)
    await store.observe("decision:math", "b", 1.0, half_life)
    await store.note_pick("decision:math", explored=True)
    await store.note_pick("decision:math", explored=False)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_observations_add_fractional_rewards(kind: str, tmp_path: Path) -> None:
    store = InMemoryEstimates() if kind == "memory" else SqliteEstimates(tmp_path / "e.db")
    await feed(store)
    ctx = (await store.read(["decision:math", "decision:other"]))["decision:math"]
    assert ctx.clock == 4 and ctx.picks == 2 and ctx.explored == 1
    assert ctx.arms["a"].wins == pytest.approx(1.5) and ctx.arms["a"].losses == pytest.approx(1.5)
    assert ctx.arms["b"].count == pytest.approx(1.0)
    empty = (await store.read(["decision:other"]))["decision:other"]
    assert empty.clock == 0 and not empty.arms
    await store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_decay_halves_evidence_one_half_life_old(kind: str, tmp_path: Path) -> None:
    store = InMemoryEstimates() if kind == "memory" else SqliteEstimates(tmp_path / "e.db")
    half = HalfLife(value=2)
    await store.observe("c", "a", 1.0, half)  # clock 1
    await store.observe("c", "b", 1.0, half)  # clock 2
    await store.observe("c", "b", 1.0, half)  # clock 3
    await store.observe("c", "a", 0.0, half)  # clock 4: a's win is 3 observations old
    arm = (await store.read(["c"]))["c"].arms["a"]
    assert arm.wins == pytest.approx(0.5**1.5) and arm.losses == pytest.approx(1.0)
    await store.close()


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
    await reopened.observe("decision:math", "b", 0.0, None)  # and it goes on learning
    assert (await reopened.read(["decision:math"]))["decision:math"].arms["b"].losses == 1.0
    await reopened.close()


async def test_two_sqlite_stores_on_one_file_lose_no_update(tmp_path: Path) -> None:
    one, two = SqliteEstimates(tmp_path / "e.db"), SqliteEstimates(tmp_path / "e.db")
    await asyncio.gather(*(s.observe("c", "a", 1.0, None) for _ in range(50) for s in (one, two)))
    ctx = (await one.read(["c"]))["c"]
    assert ctx.clock == 100 and ctx.arms["a"].wins == pytest.approx(100)
    await one.close()
    await two.close()


async def test_a_reward_outside_zero_one_is_refused() -> None:
    store = InMemoryEstimates()
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        await store.observe("c", "a", 1.5, None)


def test_an_unknown_store_spec_names_the_choices() -> None:
    with pytest.raises(ValueError, match="memory, sqlite:PATH or redis://"):
        open_store("postgres://x")
