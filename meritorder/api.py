"""The project's own gRPC API, `meritorder.v1.Router`: classify and route without Envoy."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import grpc

from meritorder.endpoints import parse
from meritorder.errors import RequestError
from meritorder.feedback import parse_feedback
from meritorder.policy import Classified, Decision, Routed
from meritorder.ports import RoutingCore
from meritorder.request import RequestView
from meritorder.v1 import router_pb2, router_pb2_grpc

_GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


class RouterService(router_pb2_grpc.RouterServicer):
    def __init__(self, core: RoutingCore) -> None:
        self.core = core

    async def Classify(
        self,
        request: router_pb2.ClassifyRequest,
        context: grpc.aio.ServicerContext,
    ) -> router_pb2.ClassifyResponse:
        chat = await self._parse(request.messages, request.text, "", context)
        classified, fired = await self.core.classify(chat)
        return router_pb2.ClassifyResponse(signals=_signals_proto(fired, classified))

    async def Route(
        self,
        request: router_pb2.RouteRequest,
        context: grpc.aio.ServicerContext,
    ) -> router_pb2.RouteResponse:
        chat = await self._parse(request.messages, request.text, request.model, context)
        try:
            decision = await self.core.route(chat, dict(request.headers))
        except RequestError as error:
            await context.abort(_grpc_code(error), error.message)
        return router_pb2.RouteResponse(
            signals=_signals_proto(decision.fired, decision.classified),
            decision=_decision_proto(decision),
        )

    async def Feedback(
        self,
        request: router_pb2.FeedbackRequest,
        context: grpc.aio.ServicerContext,
    ) -> router_pb2.FeedbackResponse:
        body: dict[str, object] = {"label": request.label}
        if request.request_id:
            body["request_id"] = request.request_id
        if request.response_id:
            body["response_id"] = request.response_id
        if request.HasField("score"):
            body["score"] = request.score
        try:
            feedback = parse_feedback(json.dumps(body).encode())
            outcome = await self.core.feedback(feedback, {}, any_tenant=True)
        except RequestError as error:
            await context.abort(_grpc_code(error), error.message)
        return router_pb2.FeedbackResponse(
            request_id=outcome.request_id,
            model=outcome.pending.model,
            decision=outcome.pending.rule,
        )

    async def _parse(
        self,
        messages: Iterable[router_pb2.ChatMessage],
        text: str,
        model: str,
        context: grpc.aio.ServicerContext,
    ) -> RequestView:
        chat_messages = [{"role": m.role, "content": m.content} for m in messages]
        body = {
            "model": model or self.core.default_virtual_model,
            "messages": chat_messages or [{"role": "user", "content": text}],
        }
        try:
            return parse(
                "chat",
                json.dumps(body).encode(),
                max_bytes=self.core.max_body_bytes,
            )
        except RequestError as error:
            await context.abort(_grpc_code(error), error.message)
            raise  # unreachable: abort raises


def _grpc_code(error: RequestError) -> grpc.StatusCode:
    return _GRPC_CODES.get(error.status, grpc.StatusCode.UNKNOWN)


def _signals_proto(fired: Mapping[str, float], classified: Classified | None) -> router_pb2.Signals:
    signals = router_pb2.Signals(fired=dict(fired), classifier=classified is not None)
    if classified is not None:
        # Every scalar output the proto has a field for; domain and PII are messages of their own.
        scalars = router_pb2.Signals.DESCRIPTOR.fields_by_name
        for name, value in classified.fields().items():
            if name in scalars and isinstance(value, (int, float)):
                setattr(signals, name, value)
        signals.attack_by = classified.attack_by
        signals.domain.label = classified.domain
        signals.domain.scores.update(classified.domain_scores)
        signals.pii.extend(
            router_pb2.PiiEntity(
                type=f.type, start=f.start, end=f.end, score=f.score, message=f.message or 0
            )
            for f in classified.pii
        )
    return signals


def _decision_proto(decision: Decision) -> router_pb2.Decision:
    proto = router_pb2.Decision(
        action=decision.action, decision=decision.rule, reason=decision.reason
    )
    if isinstance(decision, Routed):
        proto.model, proto.upstream_model, proto.status = (
            decision.model.name,
            decision.model.upstream_model,
            200,
        )
    else:
        proto.status = decision.status
    return proto
