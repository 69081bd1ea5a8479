"""An asyncio micro-batcher: concurrent calls share one inference call on one worker thread.

A batch starts as soon as the worker is free. While the worker is busy, new calls queue up and
become the next batch (up to `max_batch`, counted in weight: rows of the model's input). When
calls arrive in a burst and the worker is idle, the batch waits at most `max_wait_ms` to fill.
A lone call never waits. Inference runs on the worker thread, so the event loop stays free.

Fair by cost: `process` may answer `Requeue(item)` for an item with work left (a long request's
remaining rows); it goes to the back of the queue with its new weight, so the calls that arrived
meanwhile run before its next step, and no call waits behind more than one step of another.
A caller that gives up (`asyncio.wait_for` at its deadline) cancels its call: a queued call, or
the requeued rest of one, is dropped without running.

It knows its queue: the weight waiting, the weight of the batch on the worker, and what a unit of
weight has cost (an EWMA of each batch's time on the worker over its weight). `estimate_wait_s`
turns those into the wait a new call of a given weight would see; before the first batch has run
there is no estimate (None). It only reports: whether a call is worth queueing is the caller's.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Requeue(Generic[T]):
    """`process`'s answer for an item with more work to do: run `item` in a later batch."""

    item: T


# Runs one batch; returns one result, exception or `Requeue` per item, in order.
Process = Callable[[Sequence[T]], Sequence[R | Requeue[T] | BaseException]]
# What one batch returned, and how long it held the worker (seconds).
_Ran = tuple[Sequence[R | Requeue[T] | BaseException], float]

# The weight of the newest batch's cost per unit in the EWMA: about the last ten batches count,
# so the estimate follows a change of load or of request mix within a few batches.
COST_SMOOTHING = 0.2


@dataclass(slots=True)
class _Call(Generic[T, R]):
    item: T
    weight: int
    future: asyncio.Future[R]
    requeued: bool = False


@dataclass(slots=True)
class BatchStats:
    """How the batcher has grouped calls so far."""

    batches: int = 0
    calls: int = 0
    largest: int = 0
    requeued: int = 0  # steps after a call's first
    # Seconds a unit of weight (a row) has held the worker: an EWMA over batches, None before
    # the first batch ran.
    seconds_per_row: float | None = None


class BatcherClosed(RuntimeError):
    """The batcher was closed before this call ran."""


class MicroBatcher(Generic[T, R]):
    """Collect concurrent `submit` calls into batches for `process`, run on one worker thread."""

    def __init__(
        self,
        process: Process[T, R],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 1.0,
        weight: Callable[[T], int] = lambda _: 1,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(
                f"max_batch is {max_batch} and max_wait_ms {max_wait_ms}; use at least 1 request "
                "a batch and a wait of 0 ms or more."
            )
        self._process = process
        self._weight = weight
        self._clock = clock  # times each batch on the worker (seconds)
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.stats = BatchStats()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classifiers")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[_Call[T, R]] = deque()
        self._arrived = asyncio.Event()
        self._collector: asyncio.Task[None] | None = None
        self._closed = False
        self.running_weight = 0  # of the batch on the worker now (0: the worker is idle)

    @property
    def queued_weight(self) -> int:
        """The weight (rows of the model's input) of the calls waiting for a batch."""
        return sum(call.weight for call in self._queue if not call.future.done())

    @property
    def waiting_weight(self) -> int:
        """The weight a call submitted now would find ahead of it: queued and on the worker."""
        return self.queued_weight + self.running_weight

    def estimate_wait_s(self, weight: int) -> float | None:
        """The seconds until a call of `weight` submitted now would have its result: the weight
        queued, on the worker and its own, at the measured cost per unit; None before any batch
        has been measured. With a whole batch already queued ahead of it, batches leave full, so
        its own batch is counted full too (calls behind it fill it). An estimate: requeued
        steps, cached rows and batch overheads vary."""
        cost = self.stats.seconds_per_row
        if cost is None:
            return None
        ahead = self.queued_weight
        queued = ahead + max(1, weight)
        if ahead >= self.max_batch:
            queued = math.ceil(queued / self.max_batch) * self.max_batch
        return (self.running_weight + queued) * cost

    async def submit(self, item: T) -> R:
        """The result of `process` for `item`, computed in a batch with concurrent calls."""
        if self._closed:
            raise BatcherClosed("The classifier engine is closed; load a new one.")
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._collector is None or self._collector.done():
            self._start(loop)
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Call(item, max(1, self._weight(item)), future))
        self._arrived.set()
        return await future  # a cancelled caller cancels only its own future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue = deque()
        self._arrived = asyncio.Event()
        self._collector = loop.create_task(self._collect(), name="classifiers-batcher")

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        running: asyncio.Future[_Ran[R, T]] | None = None
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            if running is not None:
                # The worker is busy: calls pile up meanwhile and leave together.
                await asyncio.wait([running])
            else:
                await asyncio.sleep(0)  # let calls started in this same tick join
            batch, weight = self._take([], 0)
            if len(batch) > 1 and weight < self.max_batch and self.max_wait > 0:
                deadline = loop.time() + self.max_wait
                while weight < self.max_batch and (left := deadline - loop.time()) > 0:
                    self._arrived.clear()
                    try:
                        await asyncio.wait_for(self._arrived.wait(), left)
                    except TimeoutError:
                        break
                    batch, weight = self._take(batch, weight)
            batch = [call for call in batch if not call.future.done()]
            if not batch:
                continue
            self.stats.batches += 1
            self.stats.calls += sum(not call.requeued for call in batch)
            self.stats.requeued += sum(call.requeued for call in batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            items = [call.item for call in batch]
            self.running_weight = sum(call.weight for call in batch)
            running = loop.run_in_executor(self._worker, self._timed, items)
            running.add_done_callback(functools.partial(self._fan_out, batch))

    def _timed(self, items: Sequence[T]) -> _Ran[R, T]:
        """`process` on the worker thread, timed there: the event loop's lag is not its cost."""
        started = self._clock()
        results = self._process(items)
        return results, self._clock() - started

    def _observe(self, batch: list[_Call[T, R]], seconds: float) -> None:
        """Fold one batch's cost per unit of weight into the EWMA (on the event loop)."""
        per_row = seconds / max(1, sum(call.weight for call in batch))
        seen = self.stats.seconds_per_row
        self.stats.seconds_per_row = (
            per_row if seen is None else seen + COST_SMOOTHING * (per_row - seen)
        )

    def _take(self, batch: list[_Call[T, R]], weight: int) -> tuple[list[_Call[T, R]], int]:
        # Always take at least one call, even one heavier than a whole batch. Calls whose caller
        # gave up (its decision budget ran out) leave the queue without taking a batch's room.
        while self._queue and (not batch or weight + self._queue[0].weight <= self.max_batch):
            call = self._queue.popleft()
            if call.future.done():
                continue
            batch.append(call)
            weight += call.weight
        return batch, weight

    def close(self) -> None:
        """Fail the queued calls, stop collecting and stop the worker after its running batch.

        Call it from the event loop's thread, or after the loop has ended.
        """
        self._closed = True
        if self._collector is not None and not self._collector.done():
            self._collector.cancel()
        while self._queue:
            call = self._queue.popleft()
            if not call.future.done():
                call.future.set_exception(BatcherClosed("The classifier engine was closed."))
        self._worker.shutdown(wait=True)

    def _fan_out(
        self,
        calls: list[_Call[T, R]],
        done: asyncio.Future[_Ran[R, T]],
    ) -> None:
        self.running_weight = 0
        if done.cancelled():
            for call in calls:
                call.future.cancel()
            return
        error = done.exception()
        if error:
            results: Sequence[R | Requeue[T] | BaseException] = [error] * len(calls)
        else:
            results, seconds = done.result()
            self._observe(calls, seconds)
        for call, result in zip(calls, results, strict=True):
            if call.future.done():  # the caller gave up; the others still get their results
                continue
            if isinstance(result, Requeue):
                if self._closed:
                    call.future.set_exception(BatcherClosed("The classifier engine was closed."))
                    continue
                weight = max(1, self._weight(result.item))
                self._queue.append(_Call(result.item, weight, call.future, requeued=True))
                self._arrived.set()
            elif isinstance(result, BaseException):
                call.future.set_exception(result)
            else:
                call.future.set_result(result)
