"""The micro-batcher: concurrent calls share batches, results and errors reach the right caller."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from classifiers.batching import BatcherClosed, MicroBatcher


class Recorder:
    """A `process` that doubles numbers, records its batches and can be held on a gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(list(items))
        return [ValueError(f"bad {i}") if i < 0 else i * 2 for i in items]


async def wait_until(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(0.001)


async def busy(
    max_batch: int = 32, first_item: int = 0
) -> tuple[Recorder, MicroBatcher[int, int], asyncio.Future[int]]:
    """A batcher whose worker is held on the recorder's gate, running its first call."""
    recorder = Recorder()
    recorder.gate.clear()
    batcher = MicroBatcher(recorder, max_batch=max_batch)
    first = asyncio.ensure_future(batcher.submit(first_item))
    await wait_until(recorder.entered)
    return recorder, batcher, first


async def test_concurrent_calls_share_batches_and_each_gets_its_own_result() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch=8)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(50)))
    assert results == [i * 2 for i in range(50)]
    assert max(len(b) for b in recorder.batches) > 1
    assert sorted(i for b in recorder.batches for i in b) == list(range(50))
    batcher.close()


async def test_a_batch_never_exceeds_max_batch_in_weight() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch=10, weight=lambda i: 3)
    await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    assert max(len(b) for b in recorder.batches) == 3
    batcher.close()


async def test_an_item_heavier_than_a_batch_still_runs_alone() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch=4, weight=lambda i: 100)
    assert list(await asyncio.gather(batcher.submit(1), batcher.submit(2))) == [2, 4]
    assert recorder.batches == [[1], [2]]
    batcher.close()


async def test_calls_arriving_while_the_worker_is_busy_form_the_next_batch() -> None:
    recorder, batcher, first = await busy(32)
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    recorder.gate.set()
    assert await asyncio.gather(first, *rest) == [0, 2, 4, 6, 8, 10]
    assert recorder.batches == [[0], [1, 2, 3, 4, 5]]
    batcher.close()


async def test_an_item_error_reaches_only_its_caller() -> None:
    batcher = MicroBatcher(Recorder(), max_batch=8)
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, -1, 2)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 4
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad -1"
    batcher.close()


async def test_a_failing_batch_fails_every_caller_in_it() -> None:
    def broken(items: Sequence[int]) -> list[int | BaseException]:
        raise RuntimeError("model exploded")

    batcher: MicroBatcher[int, int] = MicroBatcher(broken, max_batch=8)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError, match="model exploded"):  # the batcher itself lives on
        await batcher.submit(1)
    batcher.close()


async def test_a_cancelled_caller_does_not_break_its_batch() -> None:
    recorder, batcher, first = await busy(32)
    doomed = asyncio.ensure_future(batcher.submit(1))
    kept = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    doomed.cancel()
    recorder.gate.set()
    assert await first == 0 and await kept == 4
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert await batcher.submit(3) == 6
    batcher.close()


async def test_calls_given_up_while_queued_leave_room_for_the_waiting_ones() -> None:
    recorder, batcher, first = await busy(2)
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    calls[0].cancel()  # its decision budget ran out while the worker was busy
    await asyncio.sleep(0)
    recorder.gate.set()
    assert await first == 0 and await calls[1] == 4 and await calls[2] == 6
    assert recorder.batches == [[0], [2, 3]]
    batcher.close()


async def test_the_event_loop_keeps_running_while_a_batch_is_computed() -> None:
    recorder, batcher, call = await busy(first_item=1)
    ticks = 0
    for _ in range(5):
        await asyncio.sleep(0)
        ticks += 1
    assert ticks == 5 and not call.done()
    recorder.gate.set()
    assert await call == 2
    batcher.close()


async def test_closing_fails_queued_calls_and_refuses_new_ones() -> None:
    recorder, batcher, running = await busy(first_item=1)
    queued = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    recorder.gate.set()
    batcher.close()
    assert await running == 2
    with pytest.raises(BatcherClosed):
        await queued
    with pytest.raises(BatcherClosed):
        await batcher.submit(3)
