"""The response observer: streamed usage parsed off the observe-only ext_proc stream and settled
with the core, from the decision's facts that Envoy forwards with it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest
from envoy.config.core.v3.base_pb2 import HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest
from google.protobuf.struct_pb2 import Struct

from extproc.observer import ResponseObserver
from meritorder import telemetry
from meritorder.budget import InMemoryBudgetStore, Window
from meritorder.config import RouterConfig
from meritorder.outcomes import DECISION_NAMESPACE, Pending
from meritorder.router import Router

DECIDED = Pending("large", "default", 3.0, 0.004, "acme", 60, "", 1000.0)


def response_headers(
    path: str, content_type: str, request_id: str = "r1", decided: Pending | None = DECIDED
) -> ProcessingRequest:
    message = ProcessingRequest()
    header = HeaderValue(key="content-type", raw_value=content_type.encode())
    message.response_headers.headers.headers.append(header)
    attributes = Struct()
    attributes.update({"request.method": "POST", "request.path": path, "request.id": request_id})
    message.attributes["envoy.filters.http.ext_proc"].CopyFrom(attributes)
    if decided is not None:  # forwarding_namespaces in deploy/envoy/envoy.yaml
        facts = Struct()
        facts.update(decided.to_fields())
        message.metadata_context.filter_metadata[DECISION_NAMESPACE].CopyFrom(facts)
    return message


def body(chunk: bytes, end: bool = False) -> ProcessingRequest:
    message = ProcessingRequest()
    message.response_body.body = chunk
    message.response_body.end_of_stream = end
    return message


async def stream(messages: Iterable[ProcessingRequest]) -> AsyncIterator[ProcessingRequest]:
    for message in messages:
        yield message


MESSAGES_SSE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
    b'{"input_tokens":11,"output_tokens":1}}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":6}}\n\n'
)


@pytest.fixture
def budgets() -> InMemoryBudgetStore:
    return InMemoryBudgetStore()


@pytest.fixture
def observer(demo_config: RouterConfig, budgets: InMemoryBudgetStore) -> ResponseObserver:
    return ResponseObserver(Router(demo_config, budgets=budgets))


async def spent(budgets: InMemoryBudgetStore) -> float:
    return await budgets.spent(Window("acme", 60, DECIDED.decided_at))


async def test_a_streams_usage_settles_the_budget_at_the_measured_cost(
    observer: ResponseObserver, budgets: InMemoryBudgetStore
) -> None:
    await budgets.reserve(Window("acme", 60, DECIDED.decided_at), DECIDED.estimated_cost, None)
    chunks = [MESSAGES_SSE[:30], MESSAGES_SSE[30:100], MESSAGES_SSE[100:]]
    messages = [response_headers("/v1/messages?beta=true", "text/event-stream; charset=utf-8")]
    messages += [body(c, end=i == len(chunks) - 1) for i, c in enumerate(chunks)]
    await observer.observe(stream(messages))
    assert await spent(budgets) == pytest.approx((11 + 6) * 3.0 / 1e6)


async def test_a_stream_cut_short_settles_what_it_read(
    observer: ResponseObserver, budgets: InMemoryBudgetStore
) -> None:
    messages = [
        response_headers("/v1/messages", "text/event-stream"),
        body(MESSAGES_SSE[: MESSAGES_SSE.index(b"\n\n") + 2]),
    ]
    await observer.observe(stream(messages))
    assert await spent(budgets) == pytest.approx((11 + 1) * 3.0 / 1e6 - DECIDED.estimated_cost)


async def test_json_unrouted_and_undecided_responses_settle_nothing(
    observer: ResponseObserver, budgets: InMemoryBudgetStore
) -> None:
    sse = b'data: {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\n'
    for messages in (
        [response_headers("/v1/messages", "application/json"), body(b"{}", end=True)],
        [response_headers("/v1/other", "text/event-stream"), body(sse, end=True)],
        [response_headers("/v1/chat/completions", "text/event-stream", decided=None),
         body(sse, end=True)],
    ):  # fmt: skip
        await observer.observe(stream(messages))
    assert await spent(budgets) == 0.0


async def test_a_stream_without_usage_is_counted_and_keeps_the_estimate(
    observer: ResponseObserver, budgets: InMemoryBudgetStore
) -> None:
    missing = telemetry.METRICS.errors.labels(type="stream_usage_not_in_stream")
    before = missing._value.get()
    messages = [
        response_headers("/v1/chat/completions", "text/event-stream"),
        body(b'data: {"choices": []}\n\ndata: [DONE]\n\n', end=True),
    ]
    await observer.observe(stream(messages))
    assert missing._value.get() == before + 1
    assert await spent(budgets) == 0.0
