"""`classifiers.cache_redis`: the signal cache on a real redis-server, shared by two engines."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import redis

from classifiers.cache import RowOutput
from classifiers.cache_redis import RedisRowCache, decode_row, encode_row
from classifiers.engine import SignalEngine
from tests.helpers import RedisServer


def test_a_row_survives_its_bytes_exactly() -> None:
    rng = np.random.default_rng(0)
    row = RowOutput(
        rng.random(14, dtype=np.float32), 0.25, 0.75, rng.random((7, 17), dtype=np.float32)
    )
    back = decode_row(encode_row(row))
    assert np.array_equal(back.domain, row.domain) and np.array_equal(back.pii, row.pii)
    assert (back.attack, back.difficulty) == (0.25, 0.75)
    empty = RowOutput(row.domain, 0.5, 0.5, np.zeros((0, 17), dtype=np.float32))
    assert decode_row(encode_row(empty)).pii.size == 0
    with pytest.raises(ValueError, match="does not match its header"):
        decode_row(encode_row(row)[:-4])
    assert back.harmful is None  # a model without the harm head
    harmful = RowOutput(row.domain, 0.5, 0.5, row.pii, 0.625)
    assert decode_row(encode_row(harmful)).harmful == 0.625
    assert np.isnan(back.segment)  # no segment scored in the row
    segment = RowOutput(row.domain, 0.5, 0.5, row.pii, None, 0.875)
    assert decode_row(encode_row(segment)).segment == 0.875


def test_a_row_written_before_the_harm_score_is_a_miss_not_a_crash(
    redis_server: RedisServer,
) -> None:
    domain = np.full(14, 0.5, dtype=np.float32)
    pii = np.zeros((3, 17), dtype=np.float32)
    # The formats before the harm score (no harm field) and before the segment score.
    old = struct.pack("<HHHff", 14, 3, 17, 0.25, 0.75) + domain.tobytes() + pii.tobytes()
    older = struct.pack("<HHHfff", 14, 3, 17, 0.25, 0.75, 0.5) + domain.tobytes() + pii.tobytes()
    cache = RedisRowCache(redis_server.url, ttl_s=60, timeout_s=5)
    try:
        with redis.Redis.from_url(redis_server.url) as writer:  # an older router's write
            writer.set(cache.prefix + b"k", old)
            writer.set(cache.prefix + b"j", older)
        assert cache.get_many([b"k", b"j"]) == [None, None]
        assert cache.stats.misses == 2 and cache.stats.errors == 0
    finally:
        cache.close()


async def test_two_engines_on_one_redis_share_the_rows_of_a_conversation(
    model_dir: Path, redis_server: RedisServer
) -> None:
    chat = [
        {"role": "system", "content": "you write to alice smith at acme"},
        {"role": "user", "content": "hello bob smith, the cat sat on the mat"},
        {"role": "assistant", "content": "the derivative of the answer"},
        {"role": "user", "content": "my name is zoe and the question is hello world"},
    ]
    caches = [RedisRowCache(redis_server.url, ttl_s=60, timeout_s=5) for _ in range(2)]
    base = SignalEngine.load(model_dir, force_cpu=True)
    cold = SignalEngine.load(model_dir, force_cpu=True)
    one, two = (
        SignalEngine(base.session, base.tokenizer, base.spec, row_cache=c, fingerprint=b"tiny")
        for c in caches
    )
    try:
        first = await one.classify_messages(chat[:2])  # turn 1 on replica one
        second = await two.classify_messages(chat)  # turn 2 on replica two
        assert first.cached_rows == 0 and second.cached_rows > 0
        assert two.cache_stats.rows_encoded == second.rows - second.cached_rows
        expected = cold.classify_batch([chat])[0]
        assert second.pii == expected.pii and second.domain.label == expected.domain.label
        assert second.prompt_attack.score == pytest.approx(expected.prompt_attack.score, abs=1e-5)
    finally:
        for engine in (base, cold, one, two):
            engine.close()
        for cache in caches:
            cache.close()


async def test_an_unreachable_redis_is_a_counted_miss_and_the_rows_are_encoded(
    model_dir: Path, redis_server: RedisServer
) -> None:
    cache = RedisRowCache(redis_server.url, ttl_s=60, timeout_s=5)
    base = SignalEngine.load(model_dir, force_cpu=True)
    engine = SignalEngine(base.session, base.tokenizer, base.spec, row_cache=cache)
    request = [{"role": "user", "content": "hello alice smith"}]
    try:
        expected = await engine.classify_messages(request)
        redis_server.stop()
        signals = await engine.classify_messages(request)
        assert signals == expected and signals.cached_rows == 0
        stats = engine.cache_stats
        assert stats.errors == 2  # the lookup and the write
        assert stats.rows_encoded == 2 * signals.rows and stats.misses == 2 * signals.rows
    finally:
        engine.close()
        base.close()
        cache.close()
