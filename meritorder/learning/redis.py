"""Learned estimates in Redis: one set of estimates for every router replica that shares it.

One hash per context (`<prefix>:<context>`): `clock`, `picks`, `explored`, and per model
`<model>:w`, `<model>:l` (decayed wins and losses), `<model>:c`, `<model>:t` (clock and time of
its last update). An observation is one Lua script (advance the clock, decay the arm to now, add
the reward), so concurrent observations on any number of replicas are never lost, and the decay
is the same arithmetic as `store.decay_factor`. Time is the caller's clock (`time.time()`).

When Redis cannot be reached, a call uses the local fallback store (counted in
`meritorder_learning_store_fallbacks_total`), or raises when there is none (`on_unavailable: fail`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from functools import cached_property

import structlog
from prometheus_client import Counter
from redis.commands.core import AsyncScript

from meritorder import telemetry
from meritorder.learning.config import HalfLife
from meritorder.learning.store import Arm, ContextEstimates, EstimatesStore, check_reward
from meritorder.redis_store import RedisStore

# KEYS[1]: the context's hash; ARGV: model, reward, half-life value (0: none), unit, now.
_OBSERVE = """
local clock = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], 'clock', 1))
local m, reward, unit = ARGV[1], tonumber(ARGV[2]), ARGV[4]
local hl, now = tonumber(ARGV[3]), tonumber(ARGV[5])
local w = tonumber(redis.call('HGET', KEYS[1], m .. ':w') or '0')
local l = tonumber(redis.call('HGET', KEYS[1], m .. ':l') or '0')
local c = tonumber(redis.call('HGET', KEYS[1], m .. ':c') or tostring(clock))
local t = tonumber(redis.call('HGET', KEYS[1], m .. ':t') or tostring(now))
local f = 1.0
if hl > 0 then
  local age = now - t
  if unit == 'observations' then age = clock - c end
  if age < 0 then age = 0 end
  f = math.pow(0.5, age / hl)
end
redis.call('HSET', KEYS[1], m .. ':w', string.format('%.17g', w * f + reward),
  m .. ':l', string.format('%.17g', l * f + 1 - reward), m .. ':c', tostring(clock),
  m .. ':t', string.format('%.17g', now))
return tostring(clock)
"""


class RedisEstimates(RedisStore[EstimatesStore]):
    """An `EstimatesStore` in Redis (`url`: redis://host:port/db); while Redis is down, each call
    learns in `fallback` (this process's own estimates) or raises, counted in
    `meritorder_learning_store_fallbacks_total`."""

    name = "learning store"
    default_prefix = "meritorder:learn"
    log = structlog.get_logger("meritorder.learning")

    @property
    def fallbacks(self) -> Counter:
        return telemetry.METRICS.learning_store_fallbacks

    @cached_property
    def _observe(self) -> AsyncScript:
        return self._redis.register_script(_OBSERVE)

    async def read(self, contexts: Iterable[str]) -> dict[str, ContextEstimates]:
        names = list(contexts)

        async def shared() -> dict[str, ContextEstimates]:
            now = time.time()
            async with self._redis.pipeline(transaction=False) as pipe:
                for context in names:
                    pipe.hgetall(self._key(context))
                hashes = await pipe.execute()
            return {c: _parse(h, now) for c, h in zip(names, hashes, strict=True)}

        return await self._guard("read", shared, lambda local: local.read(names))

    async def observe(
        self, context: str, model: str, reward: float, half_life: HalfLife | None
    ) -> None:
        reward = check_reward(reward)
        args = [
            model,
            repr(reward),
            repr(half_life.value) if half_life else "0",
            half_life.unit if half_life else "observations",
            repr(time.time()),
        ]

        async def shared() -> None:
            await self._observe(keys=[self._key(context)], args=args)

        await self._guard(
            "observe", shared, lambda local: local.observe(context, model, reward, half_life)
        )

    async def note_pick(self, context: str, explored: bool) -> None:
        async def shared() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(self._key(context), "picks", 1)
                pipe.hincrby(self._key(context), "explored", int(explored))
                await pipe.execute()

        await self._guard("note_pick", shared, lambda local: local.note_pick(context, explored))

    async def close(self) -> None:
        await super().close()
        if self.fallback is not None:
            await self.fallback.close()

    def _key(self, context: str) -> str:
        return f"{self.prefix}:{context}"


def _parse(fields: dict[bytes, bytes], now: float) -> ContextEstimates:
    values = {k.decode(): v.decode() for k, v in fields.items()}
    arms: dict[str, dict[str, float]] = {}
    for key, value in values.items():
        model, sep, part = key.rpartition(":")
        if sep and part in ("w", "l", "c", "t"):
            arms.setdefault(model, {})[part] = float(value)
    return ContextEstimates(
        clock=float(values.get("clock", 0.0)),
        arms={
            m: Arm(a.get("w", 0.0), a.get("l", 0.0), a.get("c", 0.0), a.get("t", now))
            for m, a in arms.items()
        },
        picks=int(values.get("picks", 0)),
        explored=int(values.get("explored", 0)),
        now=now,
    )
