"""`classifiers.cache`: row keys, the model fingerprint, and the entry, byte and age bounds."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from classifiers.cache import (
    ENTRY_OVERHEAD_BYTES,
    MemoryRowCache,
    RowOutput,
    model_fingerprint,
    row_key,
)

FINGERPRINT = b"m" * 32


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def output(tokens: int = 4, value: float = 0.5) -> RowOutput:
    return RowOutput(
        np.full(14, value, dtype=np.float32),
        value,
        value,
        np.full((tokens, 17), value, dtype=np.float32),
    )


def key(i: int) -> bytes:
    return row_key(FINGERPRINT, np.array([2, 10 + i, 3], dtype=np.int64))


def test_the_least_recently_used_row_leaves_first_at_the_entry_bound() -> None:
    cache = MemoryRowCache(max_entries=2, ttl_s=60, max_bytes=1 << 20)
    cache.put_many([(key(0), output()), (key(1), output())])
    assert cache.get_many([key(0)])[0] is not None  # key(1) is now the least recently used
    cache.put_many([(key(2), output())])
    assert [hit is not None for hit in cache.get_many([key(0), key(1), key(2)])] == [
        True,
        False,
        True,
    ]
    stats = cache.stats
    assert (stats.entries, stats.evictions, stats.hits, stats.misses) == (2, 1, 3, 1)


def test_rows_leave_until_the_byte_bound_holds() -> None:
    row = output(tokens=100)
    cache = MemoryRowCache(max_entries=100, ttl_s=60, max_bytes=3 * row.nbytes)
    cache.put_many([(key(i), output(tokens=100)) for i in range(5)])
    assert cache.stats.entries == 3 and cache.stats.evictions == 2
    assert cache.stats.bytes == 3 * row.nbytes
    assert [hit is not None for hit in cache.get_many([key(i) for i in range(5)])] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_an_entry_counts_its_arrays_and_its_overhead() -> None:
    row = output(tokens=10)
    assert row.nbytes == 14 * 4 + 10 * 17 * 4 + ENTRY_OVERHEAD_BYTES


def test_a_row_larger_than_the_byte_bound_is_not_kept_and_pushes_nothing_out() -> None:
    small = output(tokens=1)
    cache = MemoryRowCache(max_entries=10, ttl_s=60, max_bytes=2 * small.nbytes)
    cache.put_many([(key(0), small), (key(1), output(tokens=1000))])
    assert cache.get_many([key(0), key(1)])[0] is small
    assert cache.stats.entries == 1 and cache.stats.evictions == 0


def test_a_row_older_than_the_ttl_is_a_miss_and_is_dropped() -> None:
    clock = Clock()
    cache = MemoryRowCache(max_entries=10, ttl_s=30, max_bytes=1 << 20, clock=clock)
    cache.put_many([(key(0), output())])
    clock.now += 29.9
    assert cache.get_many([key(0)])[0] is not None  # a hit does not extend the row's life
    clock.now += 0.1
    assert cache.get_many([key(0)])[0] is None
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.expired, stats.entries, stats.bytes) == (1, 1, 1, 0, 0)


def test_putting_a_row_again_renews_it() -> None:
    clock = Clock()
    cache = MemoryRowCache(max_entries=10, ttl_s=30, max_bytes=1 << 20, clock=clock)
    cache.put_many([(key(0), output(value=0.1))])
    clock.now += 20
    renewed = output(value=0.2)
    cache.put_many([(key(0), renewed)])
    clock.now += 20
    assert cache.get_many([key(0)])[0] is renewed
    assert cache.stats.entries == 1 and cache.stats.bytes == renewed.nbytes


def test_a_key_is_the_fingerprint_and_exactly_the_ids() -> None:
    ids = np.array([2, 11, 12, 3], dtype=np.int64)
    assert row_key(FINGERPRINT, ids) == row_key(FINGERPRINT, ids.copy())
    assert row_key(FINGERPRINT, ids) == row_key(FINGERPRINT, ids.astype(np.int32))
    assert row_key(FINGERPRINT, ids) != row_key(b"n" * 32, ids)
    assert row_key(FINGERPRINT, ids) != row_key(FINGERPRINT, ids[:-1])
    assert row_key(FINGERPRINT, ids) != row_key(FINGERPRINT, ids[::-1])


def test_the_fingerprint_follows_the_artifacts_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "c.onnx"
    a.write_bytes(b"model weights v1")
    b.write_bytes(b"model weights v1")
    c.write_bytes(b"model weights v2")
    assert model_fingerprint(a) == model_fingerprint(b) != model_fingerprint(c)


@pytest.mark.parametrize(
    ("entries", "ttl", "size"), [(0, 60.0, 1 << 20), (10, 0.0, 1 << 20), (10, 60.0, 0)]
)
def test_every_bound_must_be_positive(entries: int, ttl: float, size: int) -> None:
    with pytest.raises(ValueError, match="or no cache"):
        MemoryRowCache(max_entries=entries, ttl_s=ttl, max_bytes=size)


def test_threads_sharing_a_cache_keep_its_bounds_and_counts() -> None:
    cache = MemoryRowCache(max_entries=50, ttl_s=60, max_bytes=1 << 30)
    rounds, threads = 200, 4

    def use(offset: int) -> None:
        for i in range(rounds):
            cache.put_many([(key(offset + i % 80), output())])
            cache.get_many([key(i % 80), key(offset + i % 80)])

    workers = [threading.Thread(target=use, args=(n * 1000,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    stats = cache.stats
    assert stats.hits + stats.misses == 2 * rounds * threads
    assert stats.entries == 50 and stats.bytes == 50 * output().nbytes


def test_a_rows_key_holds_the_segments_scored_in_it() -> None:
    ids = np.array([2, 10, 11, 12, 3], dtype=np.int64)
    lines = ((1, 2, True), (2, 4, False))
    assert row_key(FINGERPRINT, ids, lines) != row_key(FINGERPRINT, ids)
    assert row_key(FINGERPRINT, ids, lines) != row_key(FINGERPRINT, ids, ((1, 4, True),))
    assert row_key(FINGERPRINT, ids, ()) == row_key(FINGERPRINT, ids)
