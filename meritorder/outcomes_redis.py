"""Decisions, outcomes and feedback in Redis: every router replica sees every request's record,
so feedback is taken by whichever replica Envoy sends it to.

One hash per request (`<prefix>:request:<request id>`: the decision's facts, its outcome once
settled, its feedback), expiring `ttl_s` after the last write, and one key per upstream response
id naming its request. Each write is one Lua script, so the rules of `OutcomeStore` (the first
decision under an id keeps it; an outcome settles only its own decision; one verdict per
request) hold under any concurrency. Storing a decision is off the request path (a background
task); a store that cannot be reached is counted in
`meritorder_state_store_errors_total{store="outcomes"}` and costs the feedback, never a request.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import structlog
from redis.exceptions import RedisError

from meritorder.outcomes import Feedback, Outcome, StoreUnavailable
from meritorder.redis_store import BestEffortRedisStore

# KEYS[1]: the request's hash. ARGV: pending JSON, outcome JSON, settled (1/0), ttl seconds.
_ADD = """
local stored = redis.call('HGET', KEYS[1], 'pending')
if stored then
  local settled = redis.call('HEXISTS', KEYS[1], 'settled') == 1
  if ARGV[3] ~= '1' or stored ~= ARGV[1] or settled then return 0 end
end
redis.call('HSET', KEYS[1], 'pending', ARGV[1], 'outcome', ARGV[2])
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'settled', '1') end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
# KEYS[1]: the request's hash. ARGV: feedback JSON.
_FEEDBACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[1], 'feedback', ARGV[1])
"""


class RedisOutcomes(BestEffortRedisStore):
    """An `OutcomeStore` in Redis (`url`: redis://host:port/db), shared by every router on it."""

    label = "outcomes"
    name = "outcome store"
    default_prefix = "meritorder:outcome"
    log = structlog.get_logger("meritorder.outcomes")

    def __init__(
        self,
        url: str,
        *,
        ttl_s: int = 3600,
        prefix: str | None = None,
        timeout_s: float = 0.25,
    ) -> None:
        super().__init__(url, prefix=prefix, timeout_s=timeout_s)
        self.ttl_s = ttl_s
        self._add = self._redis.register_script(_ADD)
        self._feedback = self._redis.register_script(_FEEDBACK)

    async def add(self, outcome: Outcome) -> None:
        if outcome.status is None:  # a decision: stored off the request path
            self._in_background(self._store(outcome))
        else:
            await self._store(outcome)

    async def get(self, request_id: str) -> Outcome | None:
        try:
            named = await self._redis.get(self._response_key(request_id))
            key = self._key(str(named) if named else request_id)
            stored = await self._redis.hget(key, "outcome")
        except (RedisError, OSError) as error:
            self._failed("get", error)
            raise StoreUnavailable(str(error)) from error
        return Outcome.from_json(str(stored)) if stored else None

    async def add_feedback(self, outcome: Outcome, feedback: Feedback) -> bool:
        try:
            added = await self._feedback(
                keys=[self._key(outcome.request_id)], args=[json.dumps(asdict(feedback))]
            )
        except (RedisError, OSError) as error:
            self._failed("feedback", error)
            raise StoreUnavailable(str(error)) from error
        return int(added) == 1

    async def _store(self, outcome: Outcome) -> None:
        pending = json.dumps(asdict(outcome.pending), sort_keys=True)
        settled = "1" if outcome.status is not None else "0"
        try:
            await self._add(
                keys=[self._key(outcome.request_id)],
                args=[pending, outcome.to_json(), settled, self.ttl_s],
            )
            if outcome.response_id and outcome.status is not None:
                await self._redis.set(
                    self._response_key(outcome.response_id), outcome.request_id, ex=self.ttl_s
                )
        except (RedisError, OSError) as error:
            self._failed("add", error)  # the request was served; only its feedback is lost

    def _key(self, request_id: str) -> str:
        return f"{self.prefix}:request:{request_id}"

    def _response_key(self, response_id: str) -> str:
        return f"{self.prefix}:response:{response_id}"
