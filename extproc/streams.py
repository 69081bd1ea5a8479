"""Reading a gRPC request stream until it ends or the server asks it to stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def next_unless(requests: AsyncIterator[T], stop: asyncio.Event) -> T | None:
    """The stream's next message, or None when it ends or `stop` is set first.

    Waiting for the next message is cancelled when `stop` wins: the handler then returns, which
    ends the call with status OK on the server's side.
    """
    if stop.is_set():
        return None
    message = asyncio.ensure_future(anext(requests, None))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({message, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (message, stopped):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if message in done:
        return message.result()
    return None
