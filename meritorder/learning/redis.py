"""Learned estimates in Redis: one set of estimates for every router replica that shares it.

One hash per context (`<prefix>:<context>`): `clock`, `picks`, `explored`, and per model
`<model>:w`, `<model>:l` (decayed wins and losses), `<model>:c`, `<model>:t` (clock and time of
its last update), `<model>:u`, `<model>:d` (the detector's CUSUM sides), `<model>:r` (the
relative model's residual evidence), and the context's `level`, `pscale`, `rclock` and
`resets`. An observation is one Lua script (advance the clock, decay the arm to now, add the
reward, move the level), so concurrent observations on any number of replicas are never lost,
and the arithmetic is `store.observed`'s. Time is the caller's clock (`time.time()`).

When Redis cannot be reached, a call uses the local fallback store (counted in
`meritorder_learning_store_fallbacks_total`), or raises when there is none (`on_unavailable: fail`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog

from meritorder.learning.store import (
    RULES,
    Arm,
    ContextEstimates,
    EstimatesStore,
    Rules,
    check_reward,
)
from meritorder.redis_store import RedisStore

# KEYS[1]: the context's hash; ARGV: model, reward, half-life value (0: none), unit, now, and
# the detector's threshold (0: no detection), drift, keep, prior weight, the model's prior mean
# ('': none), the relative model's level step (0: the absolute model) and the prior's mean
# level, and the detector's idle age (0: none). `store.observed` in Lua: decay, observe, the
# level, CUSUM, and a reset of the context.
_OBSERVE = """
local key = KEYS[1]
local prev = tonumber(redis.call('HGET', key, 'clock') or '0')
local clock = tonumber(redis.call('HINCRBYFLOAT', key, 'clock', 1))
local m, reward, unit = ARGV[1], tonumber(ARGV[2]), ARGV[4]
local hl, now = tonumber(ARGV[3]), tonumber(ARGV[5])
local threshold, drift, keep = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local weight, prior = tonumber(ARGV[9]), tonumber(ARGV[10])
local step, level0 = tonumber(ARGV[11]), tonumber(ARGV[12])
local idle = tonumber(ARGV[13])
local function num(field, default)
  return tonumber(redis.call('HGET', key, field) or default)
end
local function fmt(x) return string.format('%.17g', x) end
local function factor(c, t)
  if hl <= 0 then return 1.0 end
  local age = now - t
  if unit == 'observations' then age = clock - c end
  if age < 0 then age = 0 end
  return math.pow(0.5, age / hl)
end
local function prior_weight(at_clock)
  local fade = 1.0
  if hl > 0 and unit == 'observations' then fade = math.pow(0.5, math.max(0, at_clock) / hl) end
  return weight * fade * num('pscale', '1')
end
local f = factor(num(m .. ':c', tostring(clock)), num(m .. ':t', tostring(now)))
local w, l = num(m .. ':w', '0') * f, num(m .. ':l', '0') * f
local r = num(m .. ':r', '0') * f
local up, down = num(m .. ':u', '0'), num(m .. ':d', '0')
local level = tonumber(redis.call('HGET', key, 'level') or '')
local predicted = 0.0
if step > 0 then
  if not level then level = level0 end
  local total, count = 0.0, 0.0
  if prior then
    local pw = prior_weight(prev)
    total, count = (prior - level0) * pw, pw
  end
  total, count = total + r, count + w + l
  local off = 0.0
  if count > 0 then off = total / count end
  predicted = level + off
  r = r + reward - level
elseif threshold > 0 then
  local alpha, beta = 1.0 + w, 1.0 + l
  if prior then
    local pw = prior_weight(prev)
    alpha, beta = alpha + prior * pw, beta + (1 - prior) * pw
  end
  predicted = alpha / (alpha + beta)
end
local err = reward - predicted
if step > 0 then
  level = level + step * err
  redis.call('HSET', key, 'level', fmt(level))
end
local fired = 0
if threshold > 0 then
  up = math.max(0, up + err - drift)
  down = math.max(0, down - err - drift)
  if up > threshold or down > threshold then fired = 1 end
end
redis.call('HSET', key, m .. ':w', fmt(w + reward), m .. ':l', fmt(l + 1 - reward),
  m .. ':c', tostring(clock), m .. ':t', fmt(now), m .. ':u', fmt(up), m .. ':d', fmt(down),
  m .. ':r', fmt(r))
if fired == 1 then
  local pw = prior_weight(clock)
  local scale = num('pscale', '1')
  if pw > 0 then scale = scale * math.min(1, keep / pw) end
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local name = string.match(all[i], '^(.*):w$')
    if name then
      local c = num(name .. ':c', '0')
      local g = factor(c, num(name .. ':t', '0'))
      local aw, al = num(name .. ':w', '0'), num(name .. ':l', '0')
      local cap = keep
      if idle > 0 then cap = keep * math.pow(0.5, math.max(0, clock - c) / idle) end
      local count = aw * g + al * g
      local shrink = 1.0
      if count > 0 then shrink = math.min(1, cap / count) end
      redis.call('HSET', key, name .. ':w', fmt(aw * shrink), name .. ':l', fmt(al * shrink),
        name .. ':u', '0', name .. ':d', '0', name .. ':r', fmt(num(name .. ':r', '0') * shrink))
    end
  end
  redis.call('HSET', key, 'pscale', fmt(scale), 'rclock', tostring(clock))
  redis.call('HINCRBY', key, 'resets', 1)
end
return fired
"""


class RedisEstimates(RedisStore[EstimatesStore]):
    """An `EstimatesStore` in Redis (`url`: redis://host:port/db); while Redis is down, each call
    learns in `fallback` (this process's own estimates) or raises, counted in
    `meritorder_learning_store_fallbacks_total`."""

    name = "learning store"
    default_prefix = "meritorder:learn"
    log = structlog.get_logger("meritorder.learning")
    metric = "learning"

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

    async def observe(self, context: str, model: str, reward: float, rules: Rules = RULES) -> bool:
        reward = check_reward(reward)
        half_life, detect, relative = rules.half_life, rules.detect, rules.relative
        # The prior as either needs it (both read it from the same `learn.prior`).
        seed = detect or relative
        prior = seed.priors.get(model) if seed is not None else None
        args = [
            model,
            repr(reward),
            repr(half_life.value) if half_life else "0",
            half_life.unit if half_life else "observations",
            repr(time.time()),
            repr(detect.threshold) if detect else "0",
            repr(detect.drift) if detect else "0",
            repr(detect.keep) if detect else "0",
            repr(seed.weight) if seed else "0",
            "" if prior is None else repr(prior),
            repr(relative.step) if relative else "0",
            repr(relative.prior_level) if relative else "0.5",
            repr(detect.idle) if detect and detect.idle is not None else "0",
        ]

        async def shared() -> bool:
            return bool(int(await self._script(_OBSERVE)(keys=[self._key(context)], args=args)))

        return await self._guard(
            "observe",
            shared,
            lambda local: local.observe(context, model, reward, rules),
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
        if sep and part in ("w", "l", "c", "t", "u", "d", "r"):
            arms.setdefault(model, {})[part] = float(value)
    return ContextEstimates(
        clock=float(values.get("clock", 0.0)),
        arms={
            m: Arm(
                a.get("w", 0.0),
                a.get("l", 0.0),
                a.get("c", 0.0),
                a.get("t", now),
                a.get("u", 0.0),
                a.get("d", 0.0),
                a.get("r", 0.0),
            )
            for m, a in arms.items()
        },
        picks=int(values.get("picks", 0)),
        explored=int(values.get("explored", 0)),
        now=now,
        prior_scale=float(values.get("pscale", 1.0)),
        resets=int(values.get("resets", 0)),
        reset_clock=float(values.get("rclock", 0.0)),
        level=float(values["level"]) if "level" in values else None,
    )
