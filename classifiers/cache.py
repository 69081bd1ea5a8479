"""Signal memory: the model's output for one row of its input, kept by the row's content.

A row is `[CLS] ... [SEP]` token ids, and the encoder reads nothing else, so its output (domain
probabilities, attack, difficulty and harm scores, per-token PII probabilities, all calibrated)
is a function of the model, its `signals.json` temperatures and those ids alone. `row_key` hashes
exactly that: the model's fingerprint (`engine.calibrated_fingerprint`: the artifact, its
temperatures, whether it has a harm head) and the row's ids. Whatever made the row (a message
window, an attack paragraph, the sequence row over the whole request) does not enter the key: the
same ids give the same output, so a paragraph row that equals an earlier turn's window row is
read from the cache too. What the cache keeps holds no
character offsets: PII spans are decoded per request from these probabilities and that request's
own tokenization, so a cached row serves a message at any index or position.

`MemoryRowCache` is bounded by entries and by bytes (least recently used out first) and by age
(`ttl_s`). It takes a lock per call: the engine's worker thread and `classify_batch` callers may
use one cache at once.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from classifiers.pii import FloatArray
from classifiers.windows import IdArray

# What one entry costs beyond its arrays' bytes, measured on CPython 3.11 (tracemalloc and
# sys.getsizeof): ~200 B of the LRU's entry and expiry, ~390 B of the key, the output object, its
# scores and its two array headers; rounded up.
ENTRY_OVERHEAD_BYTES = 640


@dataclass(frozen=True, slots=True)
class RowOutput:
    """The model's output for one row; `pii` has one line per token between [CLS] and [SEP]."""

    domain: FloatArray
    attack: float
    difficulty: float
    pii: FloatArray
    harmful: float | None = None  # None: the model has no harm head
    # The segment head's highest score among the row's segments (`classifiers.segments`); NaN:
    # no segment was scored (none in the row, or the model has no segment head).
    segment: float = math.nan

    @property
    def nbytes(self) -> int:
        return int(self.domain.nbytes + self.pii.nbytes) + ENTRY_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What the cache has done so far, and what it holds now."""

    hits: int = 0
    misses: int = 0  # expired entries count here too
    expired: int = 0
    evictions: int = 0  # entries pushed out by the entry or byte bound
    entries: int = 0
    bytes: int = 0
    rows_encoded: int = 0  # rows the engine ran through the encoder (the engine fills it in)
    errors: int = 0  # calls to a shared cache that failed (counted as misses too)


class RowCache(Protocol):
    """Where row outputs are kept: in process (`MemoryRowCache`) or shared between replicas."""

    def get_many(self, keys: Sequence[bytes]) -> list[RowOutput | None]:
        """The output kept for each key, or None; one call for all the rows of a batch."""
        ...

    def put_many(self, items: Sequence[tuple[bytes, RowOutput]]) -> None:
        """Keep these outputs (their arrays must not change afterwards)."""
        ...

    @property
    def stats(self) -> CacheStats: ...


def model_fingerprint(path: Path) -> bytes:
    """A digest of the model artifact's bytes: a retrained model never reads an old output."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").digest()


def row_key(fingerprint: bytes, row: IdArray, spans: Sequence[tuple[int, int, bool]] = ()) -> bytes:
    """The key of one row: the model's fingerprint, exactly the token ids the encoder reads and
    the segments the segment head scores in it (the same ids may be lines or one sentence)."""
    digest = hashlib.blake2b(fingerprint, digest_size=20)
    digest.update(np.ascontiguousarray(row, dtype=np.int64).tobytes())
    if spans:
        digest.update(np.asarray(spans, dtype=np.int64).tobytes())
    return digest.digest()


class MemoryRowCache:
    """An in-process LRU of row outputs, bounded by `max_entries`, `max_bytes` and `ttl_s`."""

    def __init__(
        self,
        max_entries: int,
        ttl_s: float,
        max_bytes: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries is {max_entries}; use 1 or more (or no cache).")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s is {ttl_s}; use more than 0 seconds (or no cache).")
        if max_bytes < 1:
            raise ValueError(f"max_bytes is {max_bytes}; use 1 or more (or no cache).")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[RowOutput, float]] = OrderedDict()  # (, expiry)
        self._bytes = 0
        self._hits = self._misses = self._expired = self._evictions = 0

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._expired,
                self._evictions,
                len(self._entries),
                self._bytes,
            )

    def get_many(self, keys: Sequence[bytes]) -> list[RowOutput | None]:
        now = self._clock()
        found: list[RowOutput | None] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None and entry[1] <= now:
                    self._drop(key)
                    self._expired += 1
                    entry = None
                if entry is None:
                    self._misses += 1
                    found.append(None)
                    continue
                self._entries.move_to_end(key)
                self._hits += 1
                found.append(entry[0])
        return found

    def put_many(self, items: Sequence[tuple[bytes, RowOutput]]) -> None:
        expiry = self._clock() + self.ttl_s
        with self._lock:
            for key, output in items:
                if output.nbytes > self.max_bytes:
                    continue  # it would push out everything else and still not fit
                if key in self._entries:
                    self._drop(key)
                self._entries[key] = (output, expiry)
                self._bytes += output.nbytes
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
                self._evictions += 1

    def clear(self) -> None:
        """Forget every entry (the counters stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: bytes) -> None:
        output, _ = self._entries.pop(key)
        self._bytes -= output.nbytes
