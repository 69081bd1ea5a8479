"""Giving memory back to the OS after large requests.

A large prompt makes the tokenizer and onnxruntime allocate hundreds of MB. Once the request is
done, onnxruntime's arena keeps its chunks and glibc's malloc keeps freed pages in its arenas,
so the router's RSS would stay high for good. A background task watches RSS and, when it has
grown well past its low point, releases both once the process is quiet (in a thread, off the
request path): the caller's releasers first (the classifier's arena shrink), then `malloc_trim`.
Requests of ordinary size never trigger it.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

log = structlog.get_logger("meritorder.memory")

_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL("libc.so.6")
    _libc.malloc_trim.argtypes = [ctypes.c_size_t]
    _libc.malloc_trim.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
    _libc = None

# How far above its low point RSS may grow before memory is released.
GROWTH_BYTES = 32 << 20
# Memory is released once the process is quiet (a large batch that is still running would only
# fault its buffers in again), but at least this often while RSS stays high.
MAX_WAIT_S = 8.0
# Quiet: under half a core of CPU over the last interval.
QUIET_CPU = 0.5


def rss_bytes(pid: int | str = "self") -> int:
    """The resident set size of a process (VmRSS in /proc/PID/status); 0 where unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def trim_heap() -> bool:
    """Return the free pages of every malloc arena to the OS; False where glibc is absent."""
    if _libc is None:
        return False
    _libc.malloc_trim(0)
    return True


def release(releasers: Sequence[Callable[[], None]] = ()) -> None:
    """Run each releaser (a failure is logged, never raised), then trim the heap."""
    for releaser in releasers:
        try:
            releaser()
        except Exception:  # freeing memory must never take the router down
            log.exception("a memory releaser failed")
    trim_heap()


async def release_periodically(
    releasers: Sequence[Callable[[], None]] = (),
    interval_s: float = 1.0,
    growth_bytes: int = GROWTH_BYTES,
) -> None:
    """Every `interval_s`, release memory if RSS is `growth_bytes` above its low point and the
    process is quiet, or has not been released for `MAX_WAIT_S`."""
    if _libc is None:
        log.warning("malloc_trim unavailable (not glibc): freed heap stays with the allocator")
    low = rss_bytes()
    last = time.monotonic()
    cpu = _cpu_seconds()
    while True:
        await asyncio.sleep(interval_s)
        now, cpu_then, cpu = rss_bytes(), cpu, _cpu_seconds()
        low = min(low, now)
        if now - low < growth_bytes:
            last = time.monotonic()
            continue
        busy = cpu - cpu_then > QUIET_CPU * interval_s
        if busy and time.monotonic() - last < MAX_WAIT_S:
            continue
        await asyncio.to_thread(release, releasers)
        last = time.monotonic()
        log.info(
            "memory returned to the OS", rss_before_mb=now >> 20, rss_after_mb=rss_bytes() >> 20
        )


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system
