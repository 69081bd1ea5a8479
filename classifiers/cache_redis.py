"""A signal cache shared by every router on one Redis: `RowCache` over MGET and SET ... EX.

Replicas behind one load balancer each see only some turns of a conversation; on a shared cache
the rows one replica encoded serve the next turn wherever it lands. Redis bounds the cache
(`maxmemory` with an LRU policy, the operator's setting) and each entry's age (`ttl_s`). The
engine's worker thread calls it synchronously, one MGET per batch and one pipelined write.

A Redis that cannot be reached is a cache that misses: the rows are encoded, so the signals are
exactly what they would be; each failed call is counted (`stats.errors`) and logged, never raised.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import redis
import structlog
from redis.exceptions import RedisError

from classifiers.cache import CacheStats, RowOutput

log = structlog.get_logger("classifiers.cache")

# Domain labels, tokens, PII tags, attack, difficulty, harm (NaN: no harm head), the segment
# head's score (NaN: none). Rows written with a shorter header (before the harm or the segment
# score) fail the length check: a miss, never a crash.
_HEADER = struct.Struct("<HHHffff")


def encode_row(output: RowOutput) -> bytes:
    """A row output as bytes: the header, then the domain and PII float32 arrays."""
    tokens, tags = output.pii.shape if output.pii.size else (0, 0)
    harmful = math.nan if output.harmful is None else output.harmful
    header = _HEADER.pack(
        len(output.domain), tokens, tags, output.attack, output.difficulty, harmful, output.segment
    )
    domain = np.ascontiguousarray(output.domain, dtype="<f4").tobytes()
    return header + domain + np.ascontiguousarray(output.pii, dtype="<f4").tobytes()


def decode_row(data: bytes) -> RowOutput:
    """The inverse of `encode_row`; raises ValueError on bytes it did not write."""
    labels, tokens, tags, attack, difficulty, harmful, segment = _HEADER.unpack_from(data)
    at = _HEADER.size
    if len(data) != at + 4 * (labels + tokens * tags):
        raise ValueError(f"a cached row of {len(data)} bytes does not match its header")
    domain = np.frombuffer(data, dtype="<f4", count=labels, offset=at).astype(np.float32)
    pii = np.frombuffer(data, dtype="<f4", count=tokens * tags, offset=at + 4 * labels)
    pii = pii.astype(np.float32).reshape(tokens, tags)
    domain.flags.writeable = pii.flags.writeable = False
    harm = None if math.isnan(harmful) else harmful
    return RowOutput(domain, attack, difficulty, pii, harm, segment)


class RedisRowCache:
    """Row outputs in Redis under `prefix` + key, each for `ttl_s`; errors count as misses."""

    def __init__(
        self, url: str, ttl_s: float, *, prefix: str = "meritorder:row:", timeout_s: float = 0.25
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s is {ttl_s}; use more than 0 seconds (or no cache).")
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.prefix = prefix.encode()
        # A short timeout: a slow Redis must cost less than encoding the rows would.
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._lock = threading.Lock()
        self._stats = CacheStats()

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return self._stats

    def get_many(self, keys: Sequence[bytes]) -> list[RowOutput | None]:
        try:
            found = self._redis.mget([self.prefix + key for key in keys])
        except RedisError as error:
            self._failed("get", error, misses=len(keys))
            return [None] * len(keys)
        outputs: list[RowOutput | None] = []
        for data in found:
            try:
                outputs.append(decode_row(data) if isinstance(data, bytes) else None)
            except (ValueError, struct.error):  # another writer's bytes: encode the row again
                outputs.append(None)
        hits = sum(output is not None for output in outputs)
        with self._lock:
            self._stats = replace(
                self._stats,
                hits=self._stats.hits + hits,
                misses=self._stats.misses + len(keys) - hits,
            )
        return outputs

    def put_many(self, items: Sequence[tuple[bytes, RowOutput]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for key, output in items:
            pipe.set(self.prefix + key, encode_row(output), px=self.ttl_ms)
        try:
            pipe.execute()
        except RedisError as error:
            self._failed("put", error)

    def close(self) -> None:
        self._redis.close()

    def _failed(self, op: str, error: RedisError, misses: int = 0) -> None:
        with self._lock:
            self._stats = replace(
                self._stats, errors=self._stats.errors + 1, misses=self._stats.misses + misses
            )
        log.warning("signal cache unreachable; rows are encoded", op=op, error=str(error))
