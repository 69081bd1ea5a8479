"""Sessions in Redis: a conversation stays where it was routed whichever replica serves a turn.

One key per session (`<prefix>:<sha256 of the session name>`, so no client-chosen text becomes
a key), the `Session` as JSON, expiring `ttl_s` after the last turn. Reading is one GET before
the decision; writing is one SET EX after it, off the request path. A store that cannot be
reached is counted in `meritorder_state_store_errors_total{store="sessions"}` and the turn is
decided as a session's first: stickiness is a preference, never a guard.
"""

from __future__ import annotations

import hashlib

import structlog
from redis.exceptions import RedisError

from meritorder.redis_store import BestEffortRedisStore
from meritorder.sessions import Session


class RedisSessions(BestEffortRedisStore):
    """A `SessionStore` in Redis (`url`: redis://host:port/db), shared by every router on it."""

    label = "sessions"
    name = "session store"
    default_prefix = "meritorder:session"
    log = structlog.get_logger("meritorder.sessions")

    async def get(self, name: str) -> Session | None:
        try:
            stored = await self._redis.get(self._key(name))
        except (RedisError, OSError) as error:
            self._failed("get", error)
            return None
        return Session.from_json(str(stored)) if stored else None

    async def put(self, name: str, session: Session, ttl_s: int) -> None:
        self._in_background(self._put(name, session, ttl_s))

    async def _put(self, name: str, session: Session, ttl_s: int) -> None:
        try:
            await self._redis.set(self._key(name), session.to_json(), ex=ttl_s)
        except (RedisError, OSError) as error:
            self._failed("put", error)

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{hashlib.sha256(name.encode()).hexdigest()}"
