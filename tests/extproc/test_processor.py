"""The ext_proc processor, phase by phase: ProcessingRequest in, ProcessingResponse out; the
endpoint spec picked by method and path, and every error rendered in its API's shape."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import structlog
import structlog.testing
from envoy.config.core.v3.base_pb2 import HeaderValueOption
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest, ProcessingResponse

from extproc.processor import STREAM_HEADER, Processor, StreamState
from meritorder.config import BudgetConfig, RouterConfig, parse_config
from meritorder.policy import Classified
from meritorder.router import Router
from tests.helpers import Pii, StalledBudgetStore, body_msg, chat, headers_msg

OVERWRITE = HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD


class Stream:
    """One HTTP request's ext_proc stream against a processor."""

    def __init__(self, processor: Processor) -> None:
        self.processor = processor
        self.state = StreamState()

    async def send(self, request: ProcessingRequest) -> ProcessingResponse:
        return await self.processor.process(self.state, request)

    async def request(self, body: Any, **headers: str) -> ProcessingResponse:
        first = await self.send(headers_msg(**headers))
        assert first.WhichOneof("response") == "request_headers"
        return await self.send(body_msg(body))


@pytest.fixture
def processor(keywords_config: RouterConfig) -> Processor:
    return Processor(Router(keywords_config))


def set_headers(response: ProcessingResponse) -> dict[str, str]:
    common = getattr(response, response.WhichOneof("response")).response
    options = common.header_mutation.set_headers
    assert all(o.append_action == OVERWRITE for o in options)
    return {o.header.key: o.header.raw_value.decode() for o in options}


def immediate(response: ProcessingResponse) -> tuple[int, dict[str, Any]]:
    assert response.WhichOneof("response") == "immediate_response"
    reply = response.immediate_response
    return reply.status.code, json.loads(reply.body)


async def test_a_virtual_model_is_decided_and_rerouted_in_one_body_reply(
    processor: Processor,
) -> None:
    response = await Stream(processor).request(chat("auto", "Why does this python function fail?"))
    common = response.request_body.response
    body = common.body_mutation.body
    assert common.clear_route_cache
    assert json.loads(body)["model"] == "mock/coder-7b"
    headers = set_headers(response)
    assert headers["x-meritorder-model"] == "coder"
    assert headers["x-meritorder-decision"] == "code"
    assert headers["content-length"] == str(len(body))
    assert "signals=code" in headers["x-meritorder-reason"]


async def test_an_explicit_real_model_is_routed_to_its_upstream_id(processor: Processor) -> None:
    response = await Stream(processor).request(chat("large", "hi"))
    assert (
        json.loads(response.request_body.response.body_mutation.body)["model"] == "mock/large-70b"
    )
    assert set_headers(response)["x-meritorder-decision"] == "explicit"


async def test_an_unknown_model_is_a_404_that_lists_the_models(processor: Processor) -> None:
    status, body = immediate(await Stream(processor).request(chat("gpt-9", "hi")))
    assert status == 404
    assert body["error"]["code"] == "model_not_found" and body["error"]["param"] == "model"
    assert "auto" in body["error"]["message"]


@pytest.mark.parametrize(
    "raw", [b"{", b"[]", b'{"model": "auto"}', b'{"model": "auto", "messages": [1]}']
)
async def test_bad_bodies_are_answered_400_and_the_stream_lives_on(
    processor: Processor, raw: bytes
) -> None:
    stream = Stream(processor)
    status, body = immediate(await stream.request(raw))
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    # The same processor keeps serving: a good request on a new stream is routed.
    good = await Stream(processor).request(chat("auto", "hi"))
    assert set_headers(good)["x-meritorder-model"] == "small"


async def test_headers_without_a_body_are_an_empty_body_error(processor: Processor) -> None:
    status, body = immediate(await Stream(processor).send(headers_msg(end=True)))
    assert (status, body["error"]["code"]) == (400, "empty_body")


async def test_a_declared_length_over_the_limit_is_refused_before_buffering(
    processor: Processor,
) -> None:
    status, body = immediate(
        await Stream(processor).send(headers_msg(**{"content-length": str(2 << 20)}))
    )
    assert (status, body["error"]["code"]) == (413, "request_too_large")


@pytest.mark.parametrize("encoding", ["br", "Deflate", "gzip", "gzip, identity"])
async def test_a_body_still_encoded_is_refused_at_its_headers(
    processor: Processor, encoding: str
) -> None:
    # The gateway inflates gzip before the router; whatever arrives encoded cannot be read.
    status, body = immediate(
        await Stream(processor).send(headers_msg(**{"content-encoding": encoding}))
    )
    assert (status, body["error"]["code"]) == (415, "unsupported_content_encoding")


async def test_an_identity_encoding_is_read_as_plain(processor: Processor) -> None:
    stream = Stream(processor)
    await stream.send(headers_msg(**{"content-encoding": "Identity"}))
    assert "x-meritorder-model" in set_headers(await stream.send(body_msg(chat("auto", "hi"))))


async def test_models_listing_is_answered_by_the_router(processor: Processor) -> None:
    status, body = immediate(
        await Stream(processor).send(headers_msg("GET", "/v1/models", end=True))
    )
    assert status == 200
    assert [m["id"] for m in body["data"]] == ["auto", "small", "coder", "large"]


@pytest.mark.parametrize("name", ["auto", "coder", "large"])
async def test_one_model_is_answered_by_the_router_like_the_listing(
    processor: Processor, name: str
) -> None:
    status, body = immediate(
        await Stream(processor).send(headers_msg("GET", f"/v1/models/{name}", end=True))
    )
    assert (status, body) == (
        200,
        {"id": name, "object": "model", "created": 0, "owned_by": "meritorder"},
    )


async def test_an_unknown_model_is_a_404_in_openai_shape(processor: Processor) -> None:
    status, body = immediate(
        await Stream(processor).send(headers_msg("GET", "/v1/models/gpt-5%20x", end=True))
    )
    assert status == 404
    assert (body["error"]["code"], body["error"]["param"]) == ("model_not_found", "model")
    assert "'gpt-5 x'" in body["error"]["message"]


async def test_other_requests_pass_untouched_apart_from_spoofed_routing_headers(
    processor: Processor,
) -> None:
    stream = Stream(processor)
    response = await stream.send(
        headers_msg("POST", "/v1/embeddings", **{"x-meritorder-model": "large"})
    )
    mutation = response.request_headers.response.header_mutation
    assert list(mutation.remove_headers) == ["x-meritorder-model"] and not mutation.set_headers
    body_reply = await stream.send(body_msg({"input": "x"}))
    assert body_reply.request_body.response == type(body_reply.request_body.response)()


async def test_a_client_cannot_preset_the_routing_header(processor: Processor) -> None:
    response = await Stream(processor).request(
        chat("auto", "hi"), **{"x-meritorder-model": "large"}
    )
    assert set_headers(response)["x-meritorder-model"] == "small"


class SlowClassifier:
    async def classify(self, request: object) -> Classified:
        await asyncio.sleep(10)
        raise AssertionError("the classifier's budget should have expired first")


def impatient(config: RouterConfig, *, required: tuple[str, ...]) -> RouterConfig:
    """`config` with budgets of a few ms, and only its signals of the `required` types required
    (the demo requires both its attack and its harm signal)."""
    signals = tuple(s.model_copy(update={"required": s.type in required}) for s in config.signals)
    routing = config.routing.model_copy(
        update={"decision_timeout_ms": 5, "required_timeout_ms": 10}
    )
    return config.model_copy(update={"signals": signals, "routing": routing})


async def test_a_slow_classifier_degrades_to_the_cheap_signals_when_none_is_required(
    demo_config: RouterConfig,
) -> None:
    router = Router(impatient(demo_config, required=()), classifier=SlowClassifier())
    headers = set_headers(await Stream(Processor(router)).request(chat("auto", "python")))
    assert (headers["x-meritorder-model"], headers["x-meritorder-decision"]) == ("coder", "code")
    assert "classifier=timeout" in headers["x-meritorder-reason"]
    assert "degraded=signals_skipped" in headers["x-meritorder-reason"]


class BusyClassifier(SlowClassifier):
    """Reports a queue it could not clear within any budget."""

    def estimate_wait_s(self, request: object) -> float:
        return 60.0


async def test_a_busy_classifier_is_not_waited_for_and_the_header_says_busy(
    demo_config: RouterConfig,
) -> None:
    config = impatient(demo_config, required=())
    router = Router(config, classifier=BusyClassifier())
    headers = set_headers(await Stream(Processor(router)).request(chat("auto", "python")))
    assert headers["x-meritorder-decision"] == "code"
    assert "classifier=busy" in headers["x-meritorder-reason"]
    assert "degraded=signals_skipped" in headers["x-meritorder-reason"]


async def test_a_slow_classifier_blocks_when_the_attack_signal_is_required(
    demo_config: RouterConfig,
) -> None:
    router = Router(
        impatient(demo_config, required=("prompt_attack",)), classifier=SlowClassifier()
    )
    status, body = immediate(await Stream(Processor(router)).request(chat("auto", "python")))
    assert (status, body["error"]["type"], body["error"]["code"]) == (
        503,
        "server_error",
        "signals_unavailable",
    )
    assert "retry in 1 s" in body["error"]["message"]


async def test_a_failing_decision_fails_closed_with_503_when_configured(
    demo_config: RouterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    routing = demo_config.routing.model_copy(update={"on_error": "fail_closed"})
    router = Router(demo_config.model_copy(update={"routing": routing}))

    async def broken(*_: object) -> None:
        raise RuntimeError("classifier exploded")

    monkeypatch.setattr(router, "_decide", broken)
    status, body = immediate(await Stream(Processor(router)).request(chat("auto", "hi")))
    assert (status, body["error"]["type"], body["error"]["code"]) == (
        503,
        "server_error",
        "router_unavailable",
    )


async def test_an_unexpected_bug_costs_one_request_not_the_stream(
    processor: Processor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: object) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(processor.core, "models_json", explode)
    status, body = immediate(
        await Stream(processor).send(headers_msg("GET", "/v1/models", end=True))
    )
    assert (status, body["error"]["code"]) == (500, "router_error")


async def test_response_phases_pass_through_if_a_custom_envoy_sends_them(
    processor: Processor,
) -> None:
    for phase in ("response_headers", "response_body", "request_trailers", "response_trailers"):
        response = await Stream(processor).send(ProcessingRequest(**{phase: {}}))
        assert response.WhichOneof("response") == phase


async def test_failing_open_never_sends_unread_data_outside_a_boundary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse_config("""
models:
  - {name: cheap, cluster: a, upstream_model: c, cost: 0.1}
  - {name: api, cluster: b, upstream_model: x, cost: 5, boundary: external}
default_model: api
boundaries: [{name: pii-inside}]
""")
    router = Router(config)

    async def broken(*_: object) -> None:
        raise RuntimeError("classifier down")

    monkeypatch.setattr(router, "_decide", broken)
    for model in ("auto", "api"):
        headers = set_headers(
            await Stream(Processor(router)).request(chat(model, "my ssn is 078-05-1120"))
        )
        assert (headers["x-meritorder-model"], headers["x-meritorder-decision"]) == (
            "cheap",
            "fallback",
        )


async def test_a_slow_budget_store_fails_open_too(demo_config: RouterConfig) -> None:
    budgets = BudgetConfig(header="x-tenant", window_s=60, default_limit=100)
    config = demo_config.model_copy(
        update={
            "budgets": budgets,
            "routing": demo_config.routing.model_copy(update={"decision_timeout_ms": 5}),
        }
    )
    router = Router(config, budgets=StalledBudgetStore())
    response = await Stream(Processor(router)).request(
        chat("small", "hello"), **{"x-tenant": "acme"}
    )
    assert "fallback=timeout" in set_headers(response)["x-meritorder-reason"]


class FindsACard:
    """A classifier that finds a card number in the prompt `my card is 4111 1111 1111 1111`."""

    async def classify(self, request: object) -> Classified:
        return Classified("other", {"other": 1.0}, 0.0, 0.5, 0.0, (Pii("CREDIT_CARD", 11, 30),), 9)


async def test_the_client_is_never_told_the_pii_type_and_no_log_holds_the_value() -> None:
    config = parse_config("""
models:
  - {name: cheap, cluster: a, upstream_model: c, cost: 0.1}
  - {name: api, cluster: b, upstream_model: x, cost: 5, boundary: external}
default_model: api
signals: [{name: card_numbers, type: pii, pii_types: [CREDIT_CARD]}]
boundaries: [{name: cards-inside, pii_types: [CREDIT_CARD]}]
""")
    processor = Processor(Router(config, FindsACard()))
    for model in ("auto", "api"):
        with structlog.testing.capture_logs() as logs:
            response = await Stream(processor).request(
                chat(model, "my card is 4111 1111 1111 1111")
            )
        headers = set_headers(response)
        assert headers["x-meritorder-model"] == "cheap"
        shown = headers["x-meritorder-reason"]
        assert "rejected=api:boundary" in shown
        assert not [s for s in ("CREDIT_CARD", "cards-inside", "card_numbers") if s in shown]
        (routed,) = [entry for entry in logs if entry["event"] == "routed"]
        assert "api:boundary=cards-inside:CREDIT_CARD" in routed["reason"]  # the operator's view
        assert "4111" not in json.dumps(logs, default=str)


# -- endpoint specs: each API's errors in its own shape ----------------------------------------

CONFIG = parse_config("""
models:
  - {name: m, cluster: a, upstream_model: up/m, cost: 1}
default_model: m
virtual_models: [auto]
signals:
  - {name: forbidden, keywords: [forbidden]}
decisions:
  - {name: refuse, priority: 10, when: forbidden, block: {status: 403, message: "Not here."}}
budgets: {window_s: 60, unverified_limit: 0, on_exhausted: reject}
""")
OPEN = parse_config("""
models:
  - {name: m, cluster: a, upstream_model: up/m, cost: 1,
     apis: [chat, completions, embeddings, responses, messages]}
default_model: m
""")
MESSAGE = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


async def send(path: str, body: Any, config: Any = CONFIG, **headers: str) -> ProcessingResponse:
    """One request's headers and body through a fresh processor (the body only if asked for)."""
    stream = Stream(Processor(Router(config)))
    first = await stream.send(headers_msg(path=path, **headers))
    if first.WhichOneof("response") != "request_headers":
        return first
    return await stream.send(body_msg(body))


def anthropic_error(reply: ProcessingResponse) -> tuple[int, str]:
    assert reply.WhichOneof("response") == "immediate_response"
    body = json.loads(reply.immediate_response.body)
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"} and body["error"]["message"]
    return reply.immediate_response.status.code, body["error"]["type"]


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b"{", {}, (400, "invalid_request_error")),  # a bad body
        ({**MESSAGE, "max_tokens": None}, {}, (400, "invalid_request_error")),
        (
            MESSAGE,
            {"content-length": str(1 << 30)},
            (413, "request_too_large"),
        ),  # refused at headers
        (
            {**MESSAGE, "messages": [{"role": "user", "content": "forbidden"}]},
            {},
            (403, "permission_error"),
        ),
        (MESSAGE, {}, (429, "rate_limit_error")),  # the unverified budget is 0
        ({**MESSAGE, "model": "nope"}, {}, (404, "not_found_error")),
        (MESSAGE, {"content-encoding": "br"}, (415, "invalid_request_error")),
    ],
)
async def test_every_error_on_v1_messages_is_anthropic_shaped(
    body: Any, headers: dict[str, str], expected: tuple[int, str]
) -> None:
    assert anthropic_error(await send("/v1/messages", body, **headers)) == expected


async def test_the_same_refusal_on_an_openai_api_is_openai_shaped() -> None:
    reply = await send("/v1/responses", {"model": "auto", "input": "hi"})
    body = json.loads(reply.immediate_response.body)
    assert reply.immediate_response.status.code == 429
    assert set(body["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", {"model": "m", "input": "x"}),
        ("/v1/responses?x=1", {"model": "m", "input": "x", "stream": True}),
        ("/v1/messages", {**MESSAGE, "model": "m", "stream": True}),
    ],
)
async def test_the_spec_rewrites_the_body_and_a_stream_is_marked_for_the_observer(
    path: str, body: dict[str, Any]
) -> None:
    reply = await send(path, body, OPEN)
    common = reply.request_body.response
    assert json.loads(common.body_mutation.body) == {**body, "model": "up/m"}
    headers = {
        o.header.key: o.header.raw_value.decode() for o in common.header_mutation.set_headers
    }
    assert headers["x-meritorder-model"] == "m"
    assert (STREAM_HEADER in headers) == bool(body.get("stream"))
