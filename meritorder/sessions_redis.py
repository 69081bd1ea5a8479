"""Sessions in Redis: a conversation stays where it was routed whichever replica serves a turn.

One key per session (`<prefix>:<sha256 of the session name>`, so no client-chosen text becomes
a key), the `Session` as JSON, expiring `ttl_s` after the last turn. Reading is one GET before
the decision; writing is one SET EX after it, off the request path. A store that cannot be
reached is counted in `meritorder_state_store_errors_total{store="sessions"}` and the turn is
decided as a session's first: stickiness is a preference, never a guard.
"""

from __future__ import annotations

import asyncio
import hashlib

import structlog
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from meritorder import telemetry
from meritorder.sessions import Session

log = structlog.get_logger("meritorder.sessions")


class RedisSessions:
    """A `SessionStore` in Redis (`url`: redis://host:port/db), shared by every router on it."""

    def __init__(
        self, url: str, *, prefix: str = "meritorder:session", timeout_s: float = 0.25
    ) -> None:
        self.url = url
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self._writes: set[asyncio.Task[None]] = set()

    async def get(self, name: str) -> Session | None:
        try:
            stored = await self._redis.get(self._key(name))
        except (RedisError, OSError) as error:
            self._failed("get", error)
            return None
        return Session.from_json(str(stored)) if stored else None

    async def put(self, name: str, session: Session, ttl_s: int) -> None:
        task = asyncio.create_task(self._put(name, session, ttl_s))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._redis.aclose()

    async def _put(self, name: str, session: Session, ttl_s: int) -> None:
        try:
            await self._redis.set(self._key(name), session.to_json(), ex=ttl_s)
        except (RedisError, OSError) as error:
            self._failed("put", error)

    def _failed(self, op: str, error: Exception) -> None:
        telemetry.METRICS.state_store_errors.labels(store="sessions", op=op).inc()
        log.warning("session store unavailable", op=op, url=self.url, error=str(error))

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{hashlib.sha256(name.encode()).hexdigest()}"
