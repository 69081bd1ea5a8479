"""The micro-batcher: concurrent calls share batches, results and errors reach the right caller."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from classifiers.batching import BatcherClosed, MicroBatcher, Requeue


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


class Stepper:
    """A `process` where an item of 100 or more has steps left: it is requeued as item - 100;
    each batch waits for one permit, so a test lets the worker run one batch at a time."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.permits = threading.Semaphore(0)
        self.entered = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int | Requeue[int] | BaseException]:
        self.entered.set()
        self.permits.acquire(timeout=10)
        self.batches.append(list(items))
        return [Requeue(i - 100) if i >= 100 else i * 2 for i in items]

    async def step(self) -> None:
        """Let the running batch finish and wait until the next one starts."""
        self.entered.clear()
        self.permits.release()
        await wait_until(self.entered)


def heavy(item: int) -> int:
    return 3 if item >= 100 else 1


async def test_calls_arriving_during_a_long_item_run_before_its_next_step() -> None:
    stepper = Stepper()
    batcher = MicroBatcher(stepper, max_batch=3, weight=heavy)
    long = asyncio.ensure_future(batcher.submit(250))  # three steps: 250, 150, 50
    await wait_until(stepper.entered)
    small = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    await stepper.step()
    assert stepper.batches == [[250]]
    await stepper.step()
    assert stepper.batches == [[250], [1, 2]]  # the small calls went before the rest of 250
    stepper.permits.release(2)
    assert await asyncio.gather(long, *small) == [100, 2, 4]
    assert stepper.batches == [[250], [1, 2], [150], [50]]
    assert (batcher.stats.calls, batcher.stats.requeued) == (3, 2)
    batcher.close()


async def test_a_caller_that_gives_up_drops_the_rest_of_its_steps() -> None:
    stepper = Stepper()
    batcher = MicroBatcher(stepper, max_batch=3, weight=heavy)
    with pytest.raises(TimeoutError):  # its deadline passes during its first step
        await asyncio.wait_for(batcher.submit(250), 0.01)
    later = asyncio.ensure_future(batcher.submit(7))
    await stepper.step()  # the first step ends, and the next batch is 7's, not 250's rest
    stepper.permits.release()
    assert await later == 14
    assert stepper.batches == [[250], [7]]
    batcher.close()


async def test_a_call_whose_deadline_passes_while_queued_never_runs() -> None:
    recorder, batcher, first = await busy(32)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(batcher.submit(5), 0.01)  # the worker is held all along
    recorder.gate.set()
    assert await first == 0 and await batcher.submit(6) == 12
    assert recorder.batches == [[0], [6]]
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


async def test_the_queue_reports_the_weight_waiting_for_the_worker() -> None:
    recorder, batcher, first = await busy()
    assert batcher.queued_weight == 0  # the running call has left the queue
    waiting = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    assert batcher.queued_weight == 3
    waiting[0].cancel()  # a caller that gave up no longer counts
    await asyncio.sleep(0)
    assert batcher.queued_weight == 2
    recorder.gate.set()
    assert await first == 0 and await asyncio.gather(*waiting[1:]) == [4, 6]
    assert batcher.queued_weight == 0
    batcher.close()


class Costly:
    """A `process` whose batches cost `per_item` seconds an item on a clock of its own (no real
    time passes), and which can be held on a gate like `Recorder`."""

    def __init__(self, per_item: float) -> None:
        self.per_item = per_item
        self.now = 0.0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def clock(self) -> float:
        return self.now

    def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.entered.set()
        self.gate.wait(10)
        self.now += self.per_item * len(items)
        return list(items)


def costly(per_item: float, **options: int) -> tuple[Costly, MicroBatcher[int, int]]:
    process = Costly(per_item)
    return process, MicroBatcher(process, clock=process.clock, **options)


async def test_there_is_no_wait_estimate_before_a_batch_has_been_measured() -> None:
    process, batcher = costly(0.01)
    assert batcher.estimate_wait_s(1) is None
    process.gate.clear()
    process.entered.clear()
    first = asyncio.ensure_future(batcher.submit(1))
    await wait_until(process.entered)
    queued = [asyncio.ensure_future(batcher.submit(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert batcher.waiting_weight == 6  # known, but not yet what a row costs
    assert batcher.estimate_wait_s(1) is None
    process.gate.set()
    await asyncio.gather(first, *queued)
    batcher.close()


async def test_the_wait_estimate_is_the_rows_ahead_and_its_own_at_the_measured_cost() -> None:
    process, batcher = costly(0.01, max_batch=16)
    await asyncio.gather(*(batcher.submit(i) for i in range(4)))  # 0.01 s an item measured
    assert batcher.stats.seconds_per_row == pytest.approx(0.01)
    assert batcher.estimate_wait_s(3) == pytest.approx(0.03)  # idle: only its own rows
    process.gate.clear()
    process.entered.clear()
    first = asyncio.ensure_future(batcher.submit(0))
    await wait_until(process.entered)
    estimates, queued = [], []
    for n in range(1, 9):
        queued.append(asyncio.ensure_future(batcher.submit(n)))
        await asyncio.sleep(0)
        assert batcher.waiting_weight == 1 + n  # the running call and those queued
        estimates.append(batcher.estimate_wait_s(1))
    assert estimates == pytest.approx([(n + 2) * 0.01 for n in range(1, 9)])
    process.gate.set()
    await asyncio.gather(first, *queued)
    assert batcher.waiting_weight == 0
    batcher.close()


async def test_behind_a_whole_queued_batch_its_own_batch_is_counted_full() -> None:
    process, batcher = costly(0.01, max_batch=4)
    await batcher.submit(0)
    process.gate.clear()
    process.entered.clear()
    first = asyncio.ensure_future(batcher.submit(0))
    await wait_until(process.entered)
    queued = [asyncio.ensure_future(batcher.submit(n)) for n in range(5)]
    await asyncio.sleep(0)
    # 1 running; 5 queued: one full batch of 4, then 1 and this call in a batch that callers
    # arriving behind them fill: 1 + 4 + 4 rows.
    assert batcher.estimate_wait_s(1) == pytest.approx(0.09)
    queued[0].cancel()  # 4 queued: still a full batch ahead, this call rounds up to the next
    await asyncio.sleep(0)
    assert batcher.estimate_wait_s(1) == pytest.approx(0.09)
    queued[1].cancel()  # 3 queued: less than a batch ahead, this call may lead the next one
    await asyncio.sleep(0)
    assert batcher.estimate_wait_s(1) == pytest.approx(0.05)
    process.gate.set()
    await asyncio.gather(first, *queued[2:])
    batcher.close()


async def test_the_wait_estimate_counts_rows_by_weight_and_leaves_out_callers_who_gave_up() -> None:
    process = Costly(0.04)
    batcher = MicroBatcher(process, clock=process.clock, weight=lambda i: i)
    await batcher.submit(2)  # 0.04 s for one call of weight 2: 0.02 s a row
    process.gate.clear()
    process.entered.clear()
    first = asyncio.ensure_future(batcher.submit(3))
    await wait_until(process.entered)
    heavy = asyncio.ensure_future(batcher.submit(5))
    light = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    assert batcher.estimate_wait_s(2) == pytest.approx((3 + 5 + 1 + 2) * 0.02)
    heavy.cancel()
    await asyncio.sleep(0)
    assert batcher.estimate_wait_s(2) == pytest.approx((3 + 1 + 2) * 0.02)
    process.gate.set()
    assert await first == 3 and await light == 1
    batcher.close()


async def test_the_cost_of_a_row_follows_the_latest_batches() -> None:
    process, batcher = costly(0.01)
    await batcher.submit(1)
    process.per_item = 0.05  # the machine got slower
    costs = []
    for i in range(20):
        await batcher.submit(i)
        costs.append(batcher.stats.seconds_per_row)
    assert costs == sorted(costs) and 0.01 < costs[0] < costs[-1] < 0.05
    assert costs[-1] == pytest.approx(0.05, rel=0.01)  # within a few dozen batches
    batcher.close()
