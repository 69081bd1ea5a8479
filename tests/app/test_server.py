"""The gRPC server in-process: health, the Router API, ext_proc over real gRPC, reload, drain."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import grpc
import pytest
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest, ProcessingResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

import app.server
from app.server import ConfigWatcher, RouterServer, ServerOptions, file_stamp, serve_workers
from meritorder.config import load_config
from meritorder.policy import Classified
from meritorder.router import Router
from meritorder.v1 import router_pb2, router_pb2_grpc
from tests.helpers import DEMO_CONFIG, KEYWORDS_CONFIG, Pii, body_msg, chat, headers_msg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Running:
    def __init__(self, server: RouterServer, router: Router, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.router = router
        self.channel = channel


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    config_path = tmp_path / "policy.yaml"
    shutil.copy(KEYWORDS_CONFIG, config_path)
    router = Router(load_config(config_path))
    port = free_port()
    options = ServerOptions(config_path=config_path, port=port, drain_s=0.5, shutdown_grace_s=5)
    server = RouterServer(router, options)
    await server.start()
    max_size = 8 << 20
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{port}",
        options=[
            ("grpc.max_send_message_length", max_size),
            ("grpc.max_receive_message_length", max_size),
        ],
    ) as channel:
        yield Running(server, router, channel)
    await server.server.stop(0)


async def test_health_reports_serving(running: Running) -> None:
    stub = health_pb2_grpc.HealthStub(running.channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_route_rpc_returns_the_decision_and_fired_signals(running: Running) -> None:
    stub = router_pb2_grpc.RouterStub(running.channel)
    reply = await stub.Route(router_pb2.RouteRequest(text="fix my python traceback"))
    assert (reply.decision.action, reply.decision.model, reply.decision.decision) == (
        "route",
        "coder",
        "code",
    )
    assert reply.decision.upstream_model == "mock/coder-7b"
    assert dict(reply.signals.fired) == {"code": 1.0}


async def test_route_rpc_maps_an_unknown_model_to_not_found(running: Running) -> None:
    stub = router_pb2_grpc.RouterStub(running.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Route(router_pb2.RouteRequest(text="hi", model="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_feedback_rpc_records_a_verdict_once(running: Running) -> None:
    routed = headers_msg(**{"x-request-id": "r1"})
    await _exchange(running.channel, [routed, body_msg(chat("auto", "fix my python traceback"))])
    stub = router_pb2_grpc.RouterStub(running.channel)
    reply = await stub.Feedback(router_pb2.FeedbackRequest(request_id="r1", score=1.0))
    assert (reply.request_id, reply.model, reply.decision) == ("r1", "coder", "code")
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stub.Feedback(router_pb2.FeedbackRequest(request_id="r1", score=0.0))
    assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.Feedback(router_pb2.FeedbackRequest(request_id="r2", score=0.0))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as no_score:
        await stub.Feedback(router_pb2.FeedbackRequest(request_id="r1"))
    assert no_score.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_classify_rpc_reads_messages(running: Running) -> None:
    stub = router_pb2_grpc.RouterStub(running.channel)
    messages = [router_pb2.ChatMessage(role="user", content="prove it step by step")]
    reply = await stub.Classify(router_pb2.ClassifyRequest(messages=messages))
    assert dict(reply.signals.fired) == {"hard_reasoning": 1.0}


async def test_ext_proc_accepts_bodies_above_grpc_default_message_size(running: Running) -> None:
    # 5 MB exceeds gRPC's 4 MiB default; the router must read it and answer 413 (policy limit),
    # not fail the stream with RESOURCE_EXHAUSTED.
    big = {"model": "auto", "messages": [{"role": "user", "content": "x" * (5 << 20)}]}
    replies = await _exchange(running.channel, [headers_msg(), body_msg(big)])
    assert replies[1].immediate_response.status.code == 413


class OpenStream:
    """An ext_proc stream driven message by message, left open as Envoy leaves it open."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.queue: asyncio.Queue[ProcessingRequest | None] = asyncio.Queue()
        stub = external_processor_pb2_grpc.ExternalProcessorStub(channel)
        self.call = stub.Process(self._requests())

    async def _requests(self) -> AsyncIterator[ProcessingRequest]:
        while (item := await self.queue.get()) is not None:
            yield item

    async def send(self, message: ProcessingRequest) -> ProcessingResponse:
        await self.queue.put(message)
        reply = await self.call.read()
        assert isinstance(reply, ProcessingResponse), reply
        return reply


async def _health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    return int(reply.status)


async def test_shutdown_reports_not_serving_at_once_and_still_serves_new_streams(
    running: Running,
) -> None:
    stopping = asyncio.create_task(running.server.shutdown())
    await asyncio.sleep(0)  # the shutdown has begun: its drain window is open
    assert await _health(running.channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    stream = OpenStream(running.channel)  # opened after SIGTERM, as Envoy may still do
    assert (await stream.send(headers_msg())).WhichOneof("response") == "request_headers"
    reply = await stream.send(body_msg(chat("auto", "python")))
    assert reply.request_body.response.clear_route_cache  # routed, not refused
    # the server ends the answered stream itself, with OK, though Envoy keeps its side open
    assert await stream.call.code() == grpc.StatusCode.OK
    await asyncio.wait_for(stopping, 10)


async def test_a_request_in_flight_when_the_drain_window_ends_is_still_answered(
    running: Running,
) -> None:
    stream = OpenStream(running.channel)
    await stream.send(headers_msg())
    stopping = asyncio.create_task(running.server.shutdown())
    await asyncio.sleep(running.server.options.drain_s + 0.2)  # past the window: in the grace
    reply = await stream.send(body_msg(chat("auto", "python")))
    assert reply.request_body.response.clear_route_cache
    assert await stream.call.code() == grpc.StatusCode.OK
    await asyncio.wait_for(stopping, 10)


async def test_shutdown_ends_answered_streams_with_ok_instead_of_cancelling_them(
    running: Running,
) -> None:
    # Envoy holds a stream open until the upstream's response ends; cancelling it at the end of
    # the grace period would reset that response. The grace here is far longer than the wait.
    running.server.options.shutdown_grace_s = 60
    stream = OpenStream(running.channel)
    await stream.send(headers_msg())
    await stream.send(body_msg(chat("auto", "python")))
    await asyncio.wait_for(running.server.shutdown(), 10)
    assert await stream.call.code() == grpc.StatusCode.OK


async def test_a_bodiless_request_s_stream_ends_after_its_headers_while_draining(
    running: Running,
) -> None:
    stream = OpenStream(running.channel)
    await stream.send(headers_msg("GET", "/v1/files", end=True))  # nothing more will come
    await asyncio.wait_for(running.server.shutdown(), 10)
    assert await stream.call.code() == grpc.StatusCode.OK


async def test_a_stream_waiting_for_its_body_is_not_ended_by_the_drain(running: Running) -> None:
    stream = OpenStream(running.channel)
    await stream.send(headers_msg())
    running.server.extproc.drain()
    await asyncio.sleep(0.1)
    assert stream.call.done() is False  # its request is still in flight
    reply = await stream.send(body_msg(chat("auto", "python")))
    assert reply.request_body.response.clear_route_cache
    assert await stream.call.code() == grpc.StatusCode.OK


async def test_shutdown_ends_the_access_log_stream(running: Running) -> None:
    running.server.options.shutdown_grace_s = 60
    stub = als_pb2_grpc.AccessLogServiceStub(running.channel)
    forever = asyncio.Event()

    async def never_ending() -> AsyncIterator[StreamAccessLogsMessage]:
        yield StreamAccessLogsMessage()
        await forever.wait()

    call = stub.StreamAccessLogs(never_ending())
    await asyncio.sleep(0.1)  # the stream is open on the server
    await asyncio.wait_for(running.server.shutdown(), 10)
    assert await asyncio.wait_for(call.code(), 5) == grpc.StatusCode.OK
    forever.set()


async def test_a_second_signal_cuts_the_drain_window_short(running: Running) -> None:
    running.server.options.drain_s = 60
    hurry = asyncio.Event()
    stopping = asyncio.create_task(running.server.shutdown(hurry))
    await asyncio.sleep(0.1)
    assert not stopping.done()  # draining
    hurry.set()
    await asyncio.wait_for(stopping, 10)


def test_a_valid_new_policy_replaces_the_old_and_an_invalid_one_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    text = DEMO_CONFIG.read_text()
    path.write_text(text)
    router = Router(load_config(path))
    watcher = ConfigWatcher(path, router)
    assert not watcher.check()  # unchanged

    path.write_text(text.replace("default_model: small", "default_model: large"))
    assert watcher.check()
    assert router.config.default_model == "large"

    path.write_text(text.replace("default_model: small", "default_model: huge"))
    assert not watcher.check()
    assert router.config.default_model == "large"  # the last good policy stays in force
    assert json.loads(router.models_json())["data"][0]["id"] == "auto"


def test_a_policy_changed_while_the_router_started_is_reloaded_at_the_first_check(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.yaml"
    text = DEMO_CONFIG.read_text()
    path.write_text(text)
    stamp = file_stamp(path)  # what `meritorder serve` takes before it reads the policy
    router = Router(load_config(path))
    path.write_text(text.replace("default_model: small", "default_model: large"))  # meanwhile
    watcher = ConfigWatcher(path, router, stamp)
    assert watcher.check()
    assert router.config.default_model == "large"


class _FakeProcess:
    """Records what serve_workers would start, starts nothing."""

    started: ClassVar[list[ServerOptions]] = []

    def __init__(self, target: object, args: tuple[object, ...], name: str) -> None:
        self.options = args[1]
        assert isinstance(self.options, ServerOptions)
        self.pid = None
        self.exitcode = 0

    def start(self) -> None:
        _FakeProcess.started.append(self.options)

    def join(self) -> None:
        pass


def test_workers_share_one_seed_key_and_the_policy_s_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = types.SimpleNamespace(Process=_FakeProcess)
    monkeypatch.setattr(app.server.multiprocessing, "get_context", lambda _: context)
    monkeypatch.setattr(app.server.signal, "signal", lambda *_: None)  # keep pytest's handlers
    _FakeProcess.started = []
    options = ServerOptions(config_path=DEMO_CONFIG, metrics_port=9100, config_stamp=(1.0, 2))

    assert serve_workers(load_config(DEMO_CONFIG), options, 3) == 0

    started = _FakeProcess.started
    assert len(started) == 3
    assert len({o.seed_key for o in started}) == 1
    assert started[0].seed_key is not None and len(started[0].seed_key) == 16
    assert [o.metrics_port for o in started] == [9100, 9101, 9102]
    assert all(o.config_stamp == (1.0, 2) for o in started)


async def _exchange(
    channel: grpc.aio.Channel, messages: list[ProcessingRequest]
) -> list[ProcessingResponse]:
    stub = external_processor_pb2_grpc.ExternalProcessorStub(channel)

    async def requests() -> AsyncIterator[ProcessingRequest]:
        for message in messages:
            yield message

    return [reply async for reply in stub.Process(requests())]


class FixedClassifier:
    """Stands in for the ONNX classifier: the same view of every request (`harmful`: None for a
    model without the harm head)."""

    def __init__(self, harmful: float | None = None) -> None:
        self.harmful = harmful

    async def classify(self, request: object) -> Classified:
        pii = (Pii("EMAIL_ADDRESS", 3, 9),)
        threshold = None if self.harmful is None else 0.5
        scores = {"math": 0.9, "law": 0.1}
        return Classified(
            "math", scores, 0.02, 0.5, 0.7, pii, 12, self.harmful, threshold, attack_by="view"
        )


@pytest.mark.parametrize("harmful", [None, 0.25])
async def test_classify_rpc_reports_the_harm_score_only_when_the_model_has_one(
    running: Running, harmful: float | None
) -> None:
    running.router.classifier = FixedClassifier(harmful)
    running.router.replace_config(load_config(DEMO_CONFIG))
    stub = router_pb2_grpc.RouterStub(running.channel)
    signals = (await stub.Classify(router_pb2.ClassifyRequest(text="hi"))).signals
    assert signals.domain_confidence == pytest.approx(0.9)
    assert signals.HasField("harmful") is (harmful is not None)
    if harmful is not None:
        assert signals.harmful == pytest.approx(harmful)


async def test_classify_rpc_reports_the_classifier_view(running: Running) -> None:
    running.router.classifier = FixedClassifier()
    running.router.replace_config(load_config(DEMO_CONFIG))
    stub = router_pb2_grpc.RouterStub(running.channel)
    reply = await stub.Classify(router_pb2.ClassifyRequest(text="mail a@b.co"))
    signals = reply.signals
    assert signals.classifier and signals.domain.label == "math" and signals.tokens == 12
    assert signals.difficulty == pytest.approx(0.7) and signals.prompt_attack == pytest.approx(0.02)
    assert signals.attack_by == "view"  # the reader the attack score came from
    assert [(p.type, p.start, p.end) for p in signals.pii] == [("EMAIL_ADDRESS", 3, 9)]
    # the demo policy's classifier signals on this view: personal fires; harmful is not in
    # this classifier's view (None), so it cannot fire
    assert dict(signals.fired) == pytest.approx({"personal": 0.9})


async def test_serve_sets_the_gil_switch_interval_it_was_given() -> None:
    before = sys.getswitchinterval()
    default_handler = signal.getsignal(signal.SIGTERM)
    port = free_port()
    options = ServerOptions(
        config_path=KEYWORDS_CONFIG, port=port, classifier=False, drain_s=0, shutdown_grace_s=0,
        gil_switch_interval_ms=0.25,
    )  # fmt: skip
    serving = asyncio.create_task(app.server.serve(load_config(KEYWORDS_CONFIG), options))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=10)
        assert sys.getswitchinterval() == pytest.approx(0.00025)
    finally:
        # Stopped by serve's own SIGTERM handler (drain 0 s), sent only once it is in place:
        # before, the signal would end pytest itself.
        while not serving.done() and signal.getsignal(signal.SIGTERM) == default_handler:
            await asyncio.sleep(0.01)
        if not serving.done():
            os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 10)
        sys.setswitchinterval(before)
