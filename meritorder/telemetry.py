"""Telemetry around the routing flow: OpenTelemetry traces, Prometheus metrics, log context.

Configured from the standard `OTEL_*` environment variables (endpoint, headers, service name,
sampler; parent-based by default). Without an OTLP endpoint, tracing is a no-op. Prompt text and
PII values are never recorded: spans carry scores, labels, names and counts only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from classifiers.signals import BatchTiming
    from meritorder.policy import Decision

log = structlog.get_logger("meritorder.telemetry")

TRACER_NAME = "meritorder"
_PROPAGATOR = TraceContextTextMapPropagator()
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


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


@contextmanager
def stage(name: str) -> Iterator[Span]:
    """A child span of the current span, timed into the stage histogram."""
    started = time.perf_counter()
    parent = trace.get_current_span()
    try:
        if parent.is_recording():
            with tracer().start_as_current_span(name) as span:
                yield span
        else:  # nothing would be exported: time the stage, skip the span and its context switch
            yield parent
    finally:
        METRICS.stage_seconds.labels(stage=name).observe(time.perf_counter() - started)


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


def record_decision(span: Span, decision: Decision) -> None:
    """Every fact of a decision that an operator needs, none of the prompt."""
    _count_decision(decision)
    if span.is_recording():  # without an exporter (or unsampled), attributes would be thrown away
        _annotate(span, decision)


def _annotate(span: Span, decision: Decision) -> None:
    span.set_attribute("meritorder.decision", decision.decision)
    span.set_attribute("meritorder.action", decision.action)
    span.set_attribute("meritorder.reason", decision.reason)
    span.set_attribute("meritorder.matched", list(decision.matched))
    span.set_attribute("meritorder.rejected", list(decision.rejected))
    fallback, degraded = _fallback(decision), _degraded(decision)
    span.set_attribute("meritorder.fallback", fallback is not None)
    if fallback is not None:
        span.set_attribute("meritorder.fallback.reason", fallback)
    span.set_attribute("meritorder.degraded", degraded is not None)
    if degraded is not None:
        span.set_attribute("meritorder.degraded.cause", degraded[0])
        span.set_attribute("meritorder.degraded.action", degraded[1])
    span.set_attribute("meritorder.cost.estimate", decision.cost)
    if decision.pick is not None:  # the estimates behind a learned choice
        span.set_attribute("meritorder.learn.context", decision.pick.context)
        span.set_attribute("meritorder.learn.why", decision.pick.why)
        span.set_attribute("meritorder.learn.table", json.dumps(decision.pick.to_json()["table"]))
    if decision.tenant is not None:
        span.set_attribute("meritorder.tenant", decision.tenant)
    for note in decision.notes:
        key, _, value = note.partition("=")
        span.set_attribute(f"meritorder.note.{key}", value or "true")
    for name, score in decision.fired.items():
        span.set_attribute(f"meritorder.signal.{name}", score)
    if decision.model is not None:
        span.set_attribute("meritorder.model", decision.model.name)
        span.set_attribute("meritorder.model.boundary", decision.model.boundary)
        span.set_attribute("gen_ai.response.model", decision.model.upstream_model)
    classified = decision.classified
    if classified is not None:
        span.set_attribute("meritorder.classifier.domain", classified.domain)
        span.set_attribute(
            "meritorder.classifier.domain_score",
            classified.domain_scores.get(classified.domain, 0.0),
        )
        span.set_attribute("meritorder.classifier.prompt_attack", classified.prompt_attack)
        span.set_attribute("meritorder.classifier.difficulty", classified.difficulty)
        span.set_attribute(
            "meritorder.classifier.pii_types", sorted({f.type for f in classified.pii})
        )
        span.set_attribute("meritorder.classifier.pii_count", len(classified.pii))
        span.set_attribute("meritorder.prompt_tokens", classified.tokens)
    if decision.action == "block":
        span.set_status(Status(StatusCode.ERROR, f"blocked: {decision.code}"))
        span.set_attribute("error.type", decision.code)


def _count_decision(decision: Decision) -> None:
    outcome = "blocked" if decision.action == "block" else "routed"
    METRICS.requests.labels(
        decision=decision.decision,
        model=decision.model.name if decision.model else "",
        outcome=outcome,
    ).inc()
    if decision.action == "block":
        METRICS.blocks.labels(decision=decision.decision, code=decision.code).inc()
        if decision.code == "budget_exhausted":
            METRICS.budget_rejections.inc()
    fallback = _fallback(decision)
    if fallback is not None:
        METRICS.fallbacks.labels(decision=decision.decision, reason=fallback).inc()
    degraded = _degraded(decision)
    if degraded is not None:
        cause, action = degraded
        METRICS.degraded.labels(decision=decision.decision, cause=cause, action=action).inc()


def _notes(decision: Decision) -> dict[str, str]:
    return dict(note.partition("=")[::2] for note in decision.notes)


def _fallback(decision: Decision) -> str | None:
    """Why the decision fell back: deciding failed (`timeout`, an error's type), or a chosen
    model was unhealthy and a fallback took its place (`unhealthy`)."""
    why = _notes(decision).get("fallback")
    if why:
        return why
    return "unhealthy" if any(r.endswith(":unhealthy") for r in decision.rejected) else None


def _degraded(decision: Decision) -> tuple[str, str] | None:
    """(why the classifier's signals were missing, what the router did instead), if they were."""
    notes = _notes(decision)
    action = notes.get("degraded")
    return (notes.get("classifier", "unknown"), action) if action else None


def record_error(span: Span | None, error_type: str, status: int) -> None:
    """A request that failed before or instead of a decision (bad input, router failure)."""
    METRICS.errors.labels(type=error_type).inc()
    METRICS.requests.labels(decision="", model="", outcome="error").inc()
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, error_type))
        span.set_attribute("error.type", error_type)
        span.set_attribute("http.response.status_code", status)


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
            "Decisions made without the classifier's signals (cause: timeout, an error type, "
            "unavailable), by what was done instead (signals_skipped, required_block, "
            "required_private, required_route)",
            ["decision", "cause", "action"], registry=r,
        )  # fmt: skip
        self.blocks = Counter(
            "meritorder_blocks", "Blocked requests", ["decision", "code"], registry=r
        )
        self.budget_store_fallbacks = Counter(
            "meritorder_budget_store_fallbacks",
            "Budget store calls that failed (the shared store unreachable), by operation and "
            "what was done instead: local (this process's own store) or error",
            ["op", "to"], registry=r,
        )  # fmt: skip
        self.learning_store_fallbacks = Counter(
            "meritorder_learning_store_fallbacks",
            "Learned-estimate store calls that failed (Redis unreachable), by operation and "
            "what was done instead: local (this process's estimates) or error",
            ["op", "to"], registry=r,
        )  # fmt: skip
        self.budget_spent = Gauge(
            "meritorder_budget_window_spent",
            "Cost units a budget tenant has spent in the current window, as of this router's last "
            "reservation for it (tenant: a verified, normalized name, or (unverified))",
            ["tenant"], registry=r,
        )  # fmt: skip
        self.classifier_queue = Gauge(
            "meritorder_classifier_queue_rows",
            "Rows of the classifier's input waiting for its worker", registry=r,
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

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)


METRICS = Metrics()
