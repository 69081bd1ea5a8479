"""Memory goes back to the OS after large work: malloc's free pages and onnxruntime's arena."""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Iterator

import numpy as np
import pytest

from classifiers.engine import DEFAULT_MODEL_DIR
from classifiers.session import create_session, release_arena
from classifiers.spec import MODEL_FILE
from meritorder import memory
from meritorder.memory import rss_bytes

glibc = pytest.mark.skipif(memory._libc is None, reason="malloc_trim is glibc's")
MiB = 1 << 20


@pytest.fixture
def freed_heap() -> Iterator[int]:
    """128 MiB malloc'ed in chunks below the mmap threshold and touched, then freed but for one
    chunk in 32, which keeps the free runs between them inside the heap, where free() leaves
    them resident. Yields the RSS before the allocation."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    memory.trim_heap()
    before = rss_bytes()
    chunks = [libc.malloc(64 << 10) for _ in range(2048)]
    for chunk in chunks:
        ctypes.memset(chunk, 1, 64 << 10)
    kept = chunks[31::32]
    for chunk in chunks:
        if chunk not in kept:
            libc.free(chunk)
    yield before
    for chunk in kept:
        libc.free(chunk)


@glibc
def test_trimming_the_heap_returns_freed_pages_to_the_os(freed_heap: int) -> None:
    assert rss_bytes() - freed_heap > 100 * MiB  # freed, yet still resident
    assert memory.trim_heap()
    assert rss_bytes() - freed_heap < 32 * MiB


@glibc
async def test_the_watcher_releases_memory_once_rss_has_grown_past_its_low_point() -> None:
    released = asyncio.Event()
    loop = asyncio.get_running_loop()
    watcher = asyncio.create_task(
        memory.release_periodically([lambda: loop.call_soon_threadsafe(released.set)], 0.05)
    )
    try:
        await asyncio.sleep(0.3)
        assert not released.is_set()  # no growth, no release
        grown = np.ones(2 * memory.GROWTH_BYTES, dtype=np.uint8)
        await asyncio.wait_for(released.wait(), 10)
        del grown
    finally:
        watcher.cancel()


def test_a_failing_releaser_does_not_stop_the_others() -> None:
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    memory.release([broken, lambda: calls.append("ran")])
    assert calls == ["ran"]


@glibc
def test_releasing_the_arena_returns_a_large_batch_s_buffers() -> None:
    session = create_session(DEFAULT_MODEL_DIR / MODEL_FILE, force_cpu=True, intra_op_threads=1)
    small = np.full((1, 16), 1000, dtype=np.int64)
    session.run(None, {"input_ids": small, "attention_mask": np.ones_like(small)})
    before = rss_bytes()
    large = np.full((8, 256), 1000, dtype=np.int64)
    session.run(None, {"input_ids": large, "attention_mask": np.ones_like(large)})
    grown = rss_bytes() - before
    assert grown > 40 * MiB  # the arena kept the batch's buffers
    memory.release([lambda: release_arena(session)])  # what the router's watcher does
    assert rss_bytes() - before < grown / 4
