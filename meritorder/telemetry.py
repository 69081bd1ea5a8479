"""Telemetry around the routing flow: OpenTelemetry traces, Prometheus metrics, log context.

Configured from the standard `OTEL_*` environment variables (endpoint, headers, service name,
sampler; parent-based by default). Without an OTLP endpoint, tracing is a no-op. Prompt text and
PII values are never recorded: spans carry scores, labels, names and counts only.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics import MetricWrapperBase

from meritorder.policy.decision import Blocked, Routed

if TYPE_CHECKING:
    from classifiers.signals import BatchTiming
    from meritorder.outcomes import Feedback, Outcome, Pending
    from meritorder.policy import Decision
    from meritorder.pool import ModelLoad
    from meritorder.sessions import Session, SessionView

log = structlog.get_logger("meritorder.telemetry")

TRACER_NAME = "meritorder"
_PROPAGATOR = TraceContextTextMapPropagator()
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
# Around the shipped budgets: 150 ms (routing signals) and 1 s (required ones).
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 5)


def setup_tracing() -> bool:
    """Install an OTLP-exporting tracer provider when the environment asks for one."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "meritorder"}
    provider = TracerProvider(
        resource=Resource.create(attributes)
    )  # sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("tracing to OTLP", endpoint=endpoint)
    return True


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if callable(shutdown):
        shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def start_route_span(headers: Mapping[str, str], operation: str) -> Span:
    """The `meritorder.route` span, continuing the caller's W3C trace when there is one."""
    parent = _PROPAGATOR.extract(carrier=dict(headers))
    span = tracer().start_span("meritorder.route", context=parent, kind=SpanKind.SERVER)
    span.set_attribute("gen_ai.operation.name", operation)
    request_id = headers.get("x-request-id")
    if request_id:
        span.set_attribute("http.request.header.x-request-id", request_id)
    return span


def traceparent(span: Span) -> str:
    """`span`'s W3C trace context (a `traceparent` value), or "" when it records nothing: then
    its outcome's span would record nothing either (parent-based sampling), so nothing is
    carried, and the access log entry's settlement starts no span."""
    if not span.is_recording():
        return ""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


def record_pool_read(model: str, ok: bool) -> None:
    METRICS.pool_reads.labels(model=model, result="ok" if ok else "error").inc()


def record_pool(loads: Mapping[str, ModelLoad]) -> None:
    """The pool state after a refresh, per model with metrics (the router's own view aside)."""
    for model, load in loads.items():
        if not load.replicas:
            continue
        measures = {
            "running": load.running,
            "waiting": load.waiting,
            "kv_cache": load.kv_cache,
            "itl_seconds": load.itl_s,
            "age_seconds": load.age_s,
            "stale": float(load.stale),
        }
        for measure, value in measures.items():
            gauge = METRICS.pool_load.labels(model=model, measure=measure)
            gauge.set(math.nan if value is None else value)


def record_outcome(outcome: Outcome) -> None:
    """The upstream's answer: metrics, and a `meritorder.response` span on the decision's trace
    (whichever process decided it: the trace context travels with the outcome)."""
    pending = outcome.pending
    model, status = pending.model, outcome.status or 0
    child(METRICS.upstream_responses, model, str(status)).inc()
    if outcome.prompt_tokens is not None:
        child(METRICS.tokens, model, "input").inc(outcome.prompt_tokens)
    if outcome.completion_tokens is not None:
        child(METRICS.tokens, model, "output").inc(outcome.completion_tokens)
    with _on_decisions_trace(pending, "meritorder.response") as span:
        if span is None:
            return
        span.set_attribute("meritorder.model", model)
        span.set_attribute("meritorder.decision", pending.rule)
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("meritorder.cost.estimate", pending.estimated_cost)
        if outcome.prompt_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", outcome.prompt_tokens)
        if outcome.completion_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", outcome.completion_tokens)
        measured = outcome.measured_cost
        if measured is not None:
            span.set_attribute("meritorder.cost.measured", measured)
        if outcome.duration_s is not None:
            span.set_attribute("meritorder.upstream.duration_s", outcome.duration_s)
        if outcome.first_byte_s is not None:
            span.set_attribute("meritorder.upstream.first_byte_s", outcome.first_byte_s)
        if status >= 500 or status == 0:
            span.set_status(Status(StatusCode.ERROR, f"upstream status {status}"))
            span.set_attribute("error.type", str(status))


def record_session_turn(view: SessionView, after: Session, decision: str) -> None:
    """A routed turn of a session: new sessions, turns and model switches are counted (switches
    per session = switches / sessions)."""
    if view.last is None or view.turn == 1:
        METRICS.sessions.inc()
    METRICS.session_turns.inc()
    if view.last is not None and view.turn > 1 and after.model != view.last.model:
        METRICS.session_switches.labels(decision=decision).inc()
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("meritorder.session.turn", view.turn)
        span.set_attribute("meritorder.session.switches", after.switches)


def record_stream_usage(
    request_id: str, pending: Pending, prompt_tokens: int, completion_tokens: int, measured: float
) -> None:
    """A streamed answer's usage (`measured`: its cost): token metrics, and a `meritorder.usage`
    span on its trace."""
    METRICS.tokens.labels(model=pending.model, kind="input").inc(prompt_tokens)
    METRICS.tokens.labels(model=pending.model, kind="output").inc(completion_tokens)
    with _on_decisions_trace(pending, "meritorder.usage") as span:
        if span is None:
            return
        span.set_attribute("meritorder.model", pending.model)
        span.set_attribute("http.request.header.x-request-id", request_id)
        span.set_attribute("gen_ai.usage.input_tokens", prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", completion_tokens)
        span.set_attribute("meritorder.cost.estimate", pending.estimated_cost)
        span.set_attribute("meritorder.cost.measured", measured)


def record_feedback(outcome: Outcome, feedback: Feedback) -> None:
    """A verdict on a routed answer: the score histogram, and a span on the decision's trace."""
    pending = outcome.pending
    METRICS.feedback.labels(model=pending.model, decision=pending.rule).observe(feedback.score)
    with _on_decisions_trace(pending, "meritorder.feedback") as span:
        if span is None:
            return
        span.set_attribute("meritorder.model", pending.model)
        span.set_attribute("meritorder.decision", pending.rule)
        span.set_attribute("meritorder.feedback.score", feedback.score)
        if feedback.label:
            span.set_attribute("meritorder.feedback.label", feedback.label)


def record_learning_reset(context: str, model: str) -> None:
    """The change detector reset a learning context on an outcome of `model`: counted, logged,
    and an event on the current span (the outcome's or the feedback's)."""
    METRICS.learning_resets.labels(context=context).inc()
    log.info("learning context reset: a change was detected", context=context, model=model)
    span = trace.get_current_span()
    if span.is_recording():
        attributes = {"meritorder.learn.context": context, "meritorder.model": model}
        span.add_event("meritorder.learn.reset", attributes)


@contextmanager
def _on_decisions_trace(pending: Pending, name: str) -> Iterator[Span | None]:
    """A span `name` on the trace of the decision `pending` came from (whichever process made
    it: the trace context travels with its facts); None when that decision was not traced, or
    the span would record nothing."""
    if not pending.traceparent:
        yield None
        return
    parent = _PROPAGATOR.extract({"traceparent": pending.traceparent})
    with tracer().start_as_current_span(name, context=parent) as span:
        yield span if span.is_recording() else None


def stage(name: str) -> _Stage:
    """A child span of the current span, timed into the stage histogram (`with stage(...)`)."""
    return _Stage(name)


class _Stage:
    """`stage`'s context manager; a class, not a generator, since every request enters three."""

    __slots__ = ("_name", "_span", "_started")

    def __init__(self, name: str) -> None:
        self._name = name
        self._started = 0.0
        self._span: AbstractContextManager[Span] | None = None

    def __enter__(self) -> Span:
        self._started = time.perf_counter()
        parent = trace.get_current_span()
        if not parent.is_recording():  # nothing would be exported: time it, skip the span
            return parent
        self._span = tracer().start_as_current_span(self._name)
        return self._span.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._span is not None:
                self._span.__exit__(*exc)
        finally:
            elapsed = time.perf_counter() - self._started
            child(METRICS.stage_seconds, self._name).observe(elapsed)


_Metric = TypeVar("_Metric", bound=MetricWrapperBase)
_CHILDREN: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}
_MAX_CHILDREN = 4096


def child(metric: _Metric, *values: str) -> _Metric:
    """`metric.labels(*values)`, remembered: prometheus_client validates the values and takes a
    lock on every call, which the request path would pay for several times per request."""
    key = (metric, values)
    found = _CHILDREN.get(key)
    if found is None:
        if len(_CHILDREN) >= _MAX_CHILDREN:  # label values an operator did not foresee
            _CHILDREN.clear()
        found = _CHILDREN[key] = metric.labels(*values)
    return cast(_Metric, found)


@contextmanager
def current(span: Span) -> Iterator[None]:
    """Make `span` the parent of the spans and log lines made inside the block."""
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)


def record_batch(timing: BatchTiming) -> None:
    """The tokenize and inference spans of the classifier batch that served this request."""
    METRICS.batch_size.observe(timing.requests)
    if not trace.get_current_span().is_recording():
        return
    for name, start, end in (
        ("tokenize", timing.tokenize_start_ns, timing.tokenize_end_ns),
        ("inference", timing.inference_start_ns, timing.inference_end_ns),
    ):
        span = tracer().start_span(name, start_time=start)
        span.set_attribute("meritorder.classifier.batch_requests", timing.requests)
        span.set_attribute("meritorder.classifier.batch_rows", timing.rows)
        span.end(end_time=end)


def record_wait_estimate(span: Span, seconds: float) -> None:
    """The classifier's estimate of a request's wait, as its admission read it."""
    METRICS.classifier_wait_estimate.observe(seconds)
    span.set_attribute("meritorder.classifier.wait_estimate_s", seconds)


def record_decision(span: Span, decision: Decision) -> None:
    """Every fact of a decision that an operator needs, none of the prompt."""
    _count_decision(decision)
    if span.is_recording():  # without an exporter (or unsampled), attributes would be thrown away
        _annotate(span, decision)


def _annotate(span: Span, decision: Decision) -> None:
    span.set_attribute("meritorder.decision", decision.rule)
    span.set_attribute("meritorder.action", decision.action)
    span.set_attribute("meritorder.reason", decision.reason)
    span.set_attribute("meritorder.matched", list(decision.matched))
    span.set_attribute("meritorder.rejected", [r.render() for r in decision.rejected])
    fallback, degraded = _fallback(decision), _degraded(decision)
    span.set_attribute("meritorder.fallback", fallback is not None)
    if fallback is not None:
        span.set_attribute("meritorder.fallback.reason", fallback)
    span.set_attribute("meritorder.degraded", degraded is not None)
    if degraded is not None:
        span.set_attribute("meritorder.degraded.cause", degraded[0])
        span.set_attribute("meritorder.degraded.action", degraded[1])
    pick = getattr(decision, "pick", None)  # a Routed decision that learned
    if pick is not None:  # the estimates behind a learned choice
        span.set_attribute("meritorder.learn.context", pick.context)
        span.set_attribute("meritorder.learn.why", pick.why)
        span.set_attribute("meritorder.learn.table", json.dumps(pick.to_json()["table"]))
        span.set_attribute("meritorder.learn.resets", pick.resets)
        span.set_attribute("meritorder.learn.since_reset", pick.since_reset)
        if pick.level is not None:  # the relative model's level
            span.set_attribute("meritorder.learn.level", pick.level)
    if decision.tenant is not None:
        span.set_attribute("meritorder.tenant", decision.tenant)
    for note in decision.notes:
        span.set_attribute(f"meritorder.note.{note.kind}", note.value or "true")
    for name, score in decision.fired.items():
        span.set_attribute(f"meritorder.signal.{name}", score)
    if isinstance(decision, Routed):
        span.set_attribute("meritorder.cost.estimate", decision.cost)
        span.set_attribute("meritorder.model", decision.model.name)
        span.set_attribute("meritorder.model.boundary", decision.model.boundary)
        span.set_attribute("gen_ai.response.model", decision.model.upstream_model)
    else:
        span.set_status(Status(StatusCode.ERROR, f"blocked: {decision.code}"))
        span.set_attribute("error.type", decision.code)
    if decision.classified is not None:
        for key, value in decision.classified.fields().items():
            span.set_attribute(f"meritorder.classifier.{key}", value)


def _count_decision(decision: Decision) -> None:
    model = decision.chosen
    outcome = "routed" if isinstance(decision, Routed) else "blocked"
    child(METRICS.requests, decision.rule, model.name if model is not None else "", outcome).inc()
    if isinstance(decision, Blocked):
        METRICS.blocks.labels(decision=decision.rule, code=decision.code).inc()
        if decision.code == "budget_exhausted":
            METRICS.budget_rejections.inc()
    fallback = _fallback(decision)
    if fallback is not None:
        METRICS.fallbacks.labels(decision=decision.rule, reason=fallback).inc()
    degraded = _degraded(decision)
    if degraded is not None:
        cause, action = degraded
        METRICS.degraded.labels(decision=decision.rule, cause=cause, action=action).inc()


def _note(decision: Decision, kind: str) -> str | None:
    return next((n.value for n in decision.notes if n.kind == kind), None)


def _fallback(decision: Decision) -> str | None:
    """Why the decision fell back: deciding failed (`timeout`, an error's type), or a candidate
    was unhealthy and a healthy one took its place (`unhealthy`)."""
    why = _note(decision, "fallback")
    if why:
        return why
    return "unhealthy" if any(r.filter == "health" for r in decision.rejected) else None


def _degraded(decision: Decision) -> tuple[str, str] | None:
    """(why the classifier's signals were missing, what the router did instead), if they were."""
    action = _note(decision, "degraded")
    return (_note(decision, "classifier") or "unknown", action) if action else None


def record_error(span: Span | None, error_type: str, status: int) -> None:
    """A request that failed before or instead of a decision (bad input, router failure)."""
    METRICS.errors.labels(type=error_type).inc()
    METRICS.requests.labels(decision="", model="", outcome="error").inc()
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, error_type))
        span.set_attribute("error.type", error_type)
        span.set_attribute("http.response.status_code", status)


def _store_fallbacks(name: str, what: str, local: str, registry: CollectorRegistry) -> Counter:
    """`meritorder_<name>_store_fallbacks`: a shared store's calls that Redis failed."""
    return Counter(
        f"meritorder_{name}_store_fallbacks",
        f"{what} store calls that failed (Redis unreachable), by operation and what was done "
        f"instead: local (this process's {local}) or error",
        ["op", "to"],
        registry=registry,
    )


class Metrics:
    """The router's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "meritorder_requests", "Routed requests by decision, model and outcome",
            ["decision", "model", "outcome"], registry=r,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            "meritorder_stage_seconds", "Time per routing stage", ["stage"],
            buckets=_STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "meritorder_classifier_batch_size", "Sequences per classifier forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r,
        )  # fmt: skip
        self.fallbacks = Counter(
            "meritorder_fallbacks",
            "Decisions that fell back: deciding failed (timeout, error) or a model was unhealthy",
            ["decision", "reason"], registry=r,
        )  # fmt: skip
        self.degraded = Counter(
            "meritorder_degraded_decisions",
            "Decisions made without the classifier's signals (cause: busy, i.e. not queued "
            "because the estimated wait exceeded the budget; timeout; an error type; "
            "unavailable; not_in_model, i.e. the loaded model has no head for a signal the "
            "policy names, such as harmful; partial_read, i.e. the attack head read a spread of "
            "a long request), by what was done instead (signals_skipped, required_block, "
            "required_private, required_route, read_spread: the spread's score stood)",
            ["decision", "cause", "action"], registry=r,
        )  # fmt: skip
        self.blocks = Counter(
            "meritorder_blocks", "Blocked requests", ["decision", "code"], registry=r
        )
        self.budget_store_fallbacks = _store_fallbacks("budget", "Budget", "own store", r)
        self.learning_store_fallbacks = _store_fallbacks(
            "learning", "Learned-estimate", "estimates", r
        )
        self.learning_resets = Counter(
            "meritorder_learning_resets",
            "Learning contexts reset by the change detector (an arm's rewards left its "
            "posterior: every arm's evidence and the prior shrunk to learn.detect.keep), by "
            "context (decision:<name> or domain:<domain>)",
            ["context"], registry=r,
        )  # fmt: skip
        self.budget_spent = Gauge(
            "meritorder_budget_window_spent",
            "Cost units a budget tenant has spent in the current window, as of this router's last "
            "reservation for it (tenant: a verified, normalized name, or (unverified))",
            ["tenant"], registry=r,
        )  # fmt: skip
        self.classifier_speed = Gauge(
            "meritorder_classifier_row_tokens_per_second",
            "Row tokens a second the classifier's model ran at when the router started (one "
            "timed forward): a request's cost is its row tokens over this", registry=r,
        )  # fmt: skip
        self.classifier_queue = Gauge(
            "meritorder_classifier_queue_rows",
            "Rows of the classifier's input waiting for its worker", registry=r,
        )  # fmt: skip
        self.classifier_wait_estimate = Histogram(
            "meritorder_classifier_wait_estimate_seconds",
            "The classifier's estimate of a request's wait for its signals (rows queued, running "
            "and its own, at the measured cost of a row), as admission read it per request",
            buckets=_WAIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.budget_rejections = Counter(
            "meritorder_budget_rejections", "Requests refused for a spent budget", registry=r
        )
        self.errors = Counter("meritorder_errors", "Errors by type", ["type"], registry=r)
        self.upstream_responses = Counter(
            "meritorder_upstream_responses", "Upstream responses by model and status",
            ["model", "status"], registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "meritorder_tokens", "Tokens the upstreams reported", ["model", "kind"], registry=r
        )
        self.pool_reads = Counter(
            "meritorder_pool_reads", "Reads of the models' metrics endpoints by result (ok, error)",
            ["model", "result"], registry=r,
        )  # fmt: skip
        self.pool_load = Gauge(
            "meritorder_pool_load",
            "Each model's load as the router's pool state last saw it: running, waiting, "
            "kv_cache (0-1), age_seconds of its metrics, stale (1: older than pool_stale_s)",
            ["model", "measure"], registry=r,
        )  # fmt: skip
        self.state_store_errors = Counter(
            "meritorder_state_store_errors",
            "Calls to a shared state store (outcomes, ...) that failed, by store and operation",
            ["store", "op"],
            registry=r,
        )
        self.sessions = Counter(
            "meritorder_sessions", "Sessions started (a conversation's first routed turn)",
            registry=r,
        )  # fmt: skip
        self.session_turns = Counter(
            "meritorder_session_turns", "Routed turns of requests that name a session", registry=r
        )
        self.session_switches = Counter(
            "meritorder_session_switches",
            "Turns routed to another model than the session's previous turn, by decision",
            ["decision"], registry=r,
        )  # fmt: skip
        # The classifier engine's signal cache, advanced after each request (classify.py).
        self.signal_cache_hits = Counter(
            "meritorder_signal_cache_hits", "Classifier input rows read from the signal cache",
            registry=r,
        )  # fmt: skip
        self.signal_cache_misses = Counter(
            "meritorder_signal_cache_misses",
            "Classifier input rows the signal cache lacked (encoded)", registry=r,
        )  # fmt: skip
        self.signal_cache_errors = Counter(
            "meritorder_signal_cache_errors",
            "Calls to the shared signal cache (Redis) that failed; their rows were encoded",
            registry=r,
        )  # fmt: skip
        self.pii_second_opinion = Counter(
            "meritorder_pii_second_opinion",
            "Model name and address spans the PII second opinion was asked about, by outcome: "
            "kept (it found one too), dropped (it found none), unchecked (past its window cap: "
            "kept as the model found them)",
            ["outcome"],
            registry=r,
        )  # fmt: skip
        self.feedback = Histogram(
            "meritorder_feedback_score", "Feedback scores in [0, 1], by model and decision",
            ["model", "decision"], buckets=(0.0, 0.25, 0.5, 0.75, 1.0), registry=r,
        )  # fmt: skip

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)


METRICS = Metrics()
