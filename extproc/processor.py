"""The ext_proc processor: one method per phase, ProcessingRequest in, ProcessingResponse out.

Envoy runs it with request headers SEND and the request body BUFFERED, so the route is chosen
only after the body has been read (see deploy/envoy/envoy.yaml). Each stream has its own
`StreamState`; the processor itself is shared and stateless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

import structlog
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
)
from opentelemetry.trace import Span

from extproc import mutations
from meritorder import telemetry
from meritorder.endpoints import EndpointSpec, spec_for
from meritorder.endpoints.base import body_encoded, body_too_large
from meritorder.errors import RequestError, bad_request
from meritorder.feedback import FEEDBACK_PATH, MAX_FEEDBACK_BYTES, feedback_json, parse_feedback
from meritorder.outcomes import DECISION_NAMESPACE
from meritorder.policy import Blocked, Decision
from meritorder.ports import RoutingCore

log = structlog.get_logger("meritorder.extproc")

MODELS_PATH = "/v1/models"
MODEL_HEADER = "x-meritorder-model"
DECISION_HEADER = "x-meritorder-decision"
REASON_HEADER = "x-meritorder-reason"
STREAM_HEADER = "x-meritorder-stream"
_OWN_PREFIX = "x-meritorder-"


@dataclass
class StreamState:
    """What one HTTP request has shown so far."""

    method: str = ""
    path: str = ""
    spec: EndpointSpec | None = None  # the API of a request the router routes
    feedback: bool = False  # POST /v1/feedback: answered by the router once the body is in
    headers: dict[str, str] = field(default_factory=dict)
    span: Span | None = None  # the `meritorder.route` span of a routed request, until it ends
    # W3C trace context of Envoy's own ext_proc call span (gRPC metadata), when Envoy traces.
    envoy_trace: dict[str, str] = field(default_factory=dict)

    def end_span(self) -> None:
        if self.span is not None:
            self.span.end()
            self.span = None


class Processor:
    """Routes OpenAI requests; everything else passes through untouched."""

    def __init__(self, core: RoutingCore) -> None:
        self.core = core

    async def process(self, state: StreamState, request: ProcessingRequest) -> ProcessingResponse:
        phase = request.WhichOneof("request")
        try:
            if phase == "request_headers":
                return self.on_request_headers(state, request.request_headers)
            if phase == "request_body":
                return await self.on_request_body(state, request.request_body)
        except RequestError as error:
            telemetry.record_error(state.span, error.code or "request_error", error.status)
            state.end_span()
            return error_reply(state.spec, error)
        except Exception as exc:  # a bug must cost one request, never the stream or the server
            log.exception("processing failed", phase=phase, path=state.path)
            telemetry.record_error(state.span, type(exc).__name__, 500)
            state.end_span()
            failure = RequestError(
                500,
                f"The router failed to process the request ({type(exc).__name__}).",
                type="server_error",
                code="router_error",
            )
            return error_reply(state.spec, failure)
        return _pass_through(phase)

    def on_request_headers(self, state: StreamState, headers: HttpHeaders) -> ProcessingResponse:
        state.headers = {
            h.key.lower(): (h.raw_value.decode("latin-1") if h.raw_value else h.value)
            for h in headers.headers.headers
        }
        state.method = state.headers.get(":method", "")
        state.path = state.headers.get(":path", "")
        protected = self.core.protected_headers
        spoofed = [k for k in state.headers if k.startswith(_OWN_PREFIX) or k in protected]

        bare = state.path.split("?", 1)[0]
        if state.method == "GET" and bare.rstrip("/") == MODELS_PATH:
            return mutations.immediate(200, self.core.models_json(), details="meritorder_models")
        if state.method == "GET" and bare.startswith(MODELS_PATH + "/"):
            return self._one_model(unquote(bare.removeprefix(MODELS_PATH + "/")))
        if state.method == "POST" and bare == FEEDBACK_PATH:
            _refuse_encoded(state.headers)
            return self._feedback_headers(state, headers, spoofed)
        spec = spec_for(state.method, state.path)
        if spec is None:
            return mutations.continue_headers(remove=spoofed)
        state.spec = spec
        # Envoy's span for this ext_proc call is the closest parent; else the client's traceparent.
        carrier = {**state.headers, **state.envoy_trace}
        state.span = telemetry.start_route_span(carrier, spec.operation)

        limit = self.core.max_body_bytes
        length = state.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise body_too_large(int(length), limit)  # refuse before Envoy buffers it
        _refuse_encoded(state.headers)
        if headers.end_of_stream:
            raise bad_request("The request body is empty; send a JSON object.", code="empty_body")
        return mutations.continue_headers(remove=spoofed)

    def _feedback_headers(
        self, state: StreamState, headers: HttpHeaders, spoofed: list[str]
    ) -> ProcessingResponse:
        length = state.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_FEEDBACK_BYTES:
            raise bad_request(
                f"The feedback body is {length} bytes; send at most {MAX_FEEDBACK_BYTES}.",
                code="request_too_large",
            )
        if headers.end_of_stream:
            raise bad_request("The feedback body is empty; send a JSON object.", code="empty_body")
        state.feedback = True
        return mutations.continue_headers(remove=spoofed)

    async def _feedback(self, state: StreamState, body: HttpBody) -> ProcessingResponse:
        feedback = parse_feedback(body.body)
        outcome = await self.core.feedback(feedback, state.headers)
        return mutations.immediate(
            200, feedback_json(outcome, feedback), details="meritorder_feedback"
        )

    def _one_model(self, name: str) -> ProcessingResponse:
        """`GET /v1/models/{id}` (the SDKs' `models.retrieve`), answered like the listing."""
        found = self.core.model_json(name)
        if found is not None:
            return mutations.immediate(200, found, details="meritorder_models")
        raise RequestError(
            404,
            f"The model {name!r} does not exist; GET /v1/models lists the models.",
            param="model",
            code="model_not_found",
        )

    async def on_request_body(self, state: StreamState, body: HttpBody) -> ProcessingResponse:
        if state.feedback:
            return await self._feedback(state, body)
        if state.spec is None or state.span is None:
            return mutations.continue_body()
        span, spec = state.span, state.spec
        with telemetry.current(span):
            with telemetry.stage("parse"):
                request = spec.parse(body.body, max_bytes=self.core.max_body_bytes)
                request.query = state.path.partition("?")[2]
            span.set_attribute("gen_ai.request.model", request.model)
            span.set_attribute("meritorder.stream", request.stream)
            span.set_attribute("meritorder.api", spec.api)
            decision = await self.core.route(request, state.headers)
            telemetry.record_decision(span, decision)
            log.info(
                "routed",
                rule=decision.rule,
                action=decision.action,
                model=decision.chosen.name if decision.chosen else None,
                reason=decision.reason,
            )
            with telemetry.stage("mutation"):
                if isinstance(decision, Blocked):
                    error = RequestError(
                        decision.status,
                        decision.message,
                        type=decision.error_type,
                        code=decision.code,
                    )
                    reply = error_reply(spec, error, decision_headers(decision))
                else:
                    headers = [*decision_headers(decision), *decision.steps.headers.items()]
                    if request.stream:  # turns on the usage observer (deploy/envoy/envoy.yaml)
                        headers.append((STREAM_HEADER, "1"))
                    # The decision's facts ride with the request to its access log entry.
                    pending = await self.core.dispatch(
                        state.headers.get("x-request-id", ""), decision, telemetry.traceparent(span)
                    )
                    metadata = {DECISION_NAMESPACE: pending.to_fields()} if pending else None
                    upstream = spec.rewrite(request, decision.model, decision.steps)
                    reply = mutations.reroute_with_body(headers, upstream, metadata)
        state.end_span()
        return reply


def decision_headers(decision: Decision) -> list[tuple[str, str]]:
    """The headers that carry a decision; Envoy copies them onto the response."""
    # The client's reason never says what was detected (`routing.reason_detail`); the log line
    # and the span keep the full `decision.reason`.
    headers = [(DECISION_HEADER, decision.rule), (REASON_HEADER, decision.client_reason)]
    if decision.chosen is not None:
        headers.insert(0, (MODEL_HEADER, decision.chosen.name))
    return headers


def error_reply(
    spec: EndpointSpec | None, error: RequestError, headers: mutations.Headers = ()
) -> ProcessingResponse:
    """The error in the shape of the API the request came on (OpenAI's when none)."""
    body = spec.error_body(error) if spec is not None else None
    return mutations.error_response(error, headers, body)


def _pass_through(phase: str | None) -> ProcessingResponse:
    if phase == "response_headers":
        return mutations.continue_response_headers()
    if phase == "request_body":
        return mutations.continue_body()
    # Trailers and response bodies are not requested by deploy/envoy; answer harmlessly if a
    # custom Envoy config sends them anyway.
    return ProcessingResponse(**{phase: {}}) if phase else ProcessingResponse()


def _refuse_encoded(headers: dict[str, str]) -> None:
    """A body still encoded when it reaches the router (one the gateway did not inflate: brotli,
    deflate, gzip twice) cannot be read, so it is refused rather than routed unread."""
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise body_encoded(encoding)
