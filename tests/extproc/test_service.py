"""The servicer hands observe-only streams to the response observer and ends them on drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest

from extproc.observer import OBSERVER_METADATA, ResponseObserver
from extproc.processor import Processor
from extproc.service import ExternalProcessorService
from meritorder.config import RouterConfig
from meritorder.router import Router


class Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


async def never_ending() -> AsyncIterator[ProcessingRequest]:
    await asyncio.Event().wait()
    yield ProcessingRequest()  # pragma: no cover


async def test_an_observe_only_stream_answers_nothing_and_ends_when_the_server_drains(
    keywords_config: RouterConfig,
) -> None:
    router = Router(keywords_config)
    service = ExternalProcessorService(Processor(router), ResponseObserver(router))
    replies: list[Any] = []

    async def run() -> None:
        async for reply in service.Process(never_ending(), Context((OBSERVER_METADATA,))):  # type: ignore[arg-type]
            replies.append(reply)

    task = asyncio.ensure_future(run())
    for _ in range(100):  # until the stream is being observed
        if service._waiting:
            break
        await asyncio.sleep(0)
    assert service._waiting and not task.done()
    service.drain()
    await asyncio.wait_for(task, timeout=5)
    assert replies == []
