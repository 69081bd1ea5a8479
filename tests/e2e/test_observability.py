"""One trace per routing decision, exported over OTLP to a real receiver; metrics and logs."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import httpx
import openai
import pytest
from devstack import Ports, Stack
from openai.types.chat import ChatCompletion

from tests.e2e.otlp import OtlpReceiver, ReceivedSpan
from tests.helpers import DEMO_CONFIG

pytestmark = pytest.mark.e2e

SECRET_PROMPT = "zanzibar-quokka-7731 my python function leaks memory"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver().start()
    yield otlp
    otlp.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[Stack]:
    ports = Ports.free()
    ports.otlp = receiver.port  # Envoy's spans go to the receiver too
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "meritorder-test",
    }
    workdir = tmp_path_factory.mktemp("otel")
    policy = workdir / "policy.yaml"
    policy.write_text(
        DEMO_CONFIG.read_text()
        .replace("signals:\n", "signals:\n  - {name: forbidden, keywords: [forbidden-topic]}\n")
        .replace(
            "decisions:\n",
            "decisions:\n  - {name: refuse, priority: 999, when: forbidden, block: {}}\n",
        )
    )
    with Stack(ports, router_config=policy, workdir=workdir, router_env=env) as running:
        yield running


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def ask_in_new_trace(client: openai.OpenAI, content: str) -> tuple[str, ChatCompletion]:
    """A chat completion for model `auto` in a fresh trace; the trace id and the completion."""
    trace_id, parent = traceparent()
    completion = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": content}],
        extra_headers={"traceparent": parent},
    )
    return trace_id, completion


def route_span(receiver: OtlpReceiver, trace_id: str) -> ReceivedSpan:
    spans = receiver.wait_for(lambda s: s.trace_id == trace_id and s.name == "meritorder.route")
    assert spans, f"no meritorder.route span in trace {trace_id}"
    return spans[0]


def test_the_router_span_continues_the_callers_trace_with_the_decision(
    stack: Stack, receiver: OtlpReceiver, client: openai.OpenAI
) -> None:
    trace_id, parent = traceparent()
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": SECRET_PROMPT}],
        extra_headers={"traceparent": parent},
    )
    span = route_span(receiver, trace_id)
    assert span.service == "meritorder-test"
    attrs = span.attributes
    assert attrs["meritorder.decision"] == "code" == raw.headers["x-meritorder-decision"]
    assert attrs["meritorder.model"] == "coder"
    assert attrs["meritorder.model.boundary"] == "private"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "auto"
    assert attrs["gen_ai.response.model"] == "mock/coder-7b"
    assert attrs["meritorder.signal.code"] == 1.0
    assert attrs["meritorder.matched"] == ["code"]
    assert attrs["meritorder.reason"] == raw.headers["x-meritorder-reason"]
    assert "meritorder.cost.estimate" in attrs
    assert span.status_code != 2
    children = {s.name: s for s in receiver.wait_for(lambda s: s.parent_span_id == span.span_id)}
    assert {"parse", "classify", "policy", "mutation"} <= set(children)
    # The demo policy reads classifier signals: the classify stage shows the batch it ran in.
    model_stages = receiver.wait_for(lambda s: s.parent_span_id == children["classify"].span_id)
    assert {s.name for s in model_stages} == {"tokenize", "inference"}
    assert all(s.attributes["meritorder.classifier.batch_requests"] >= 1 for s in model_stages)
    assert attrs["meritorder.classifier.domain"] == "computer science"


def test_envoy_and_router_spans_are_one_trace(
    stack: Stack, receiver: OtlpReceiver, client: openai.OpenAI
) -> None:
    trace_id, _ = ask_in_new_trace(client, "hi")
    route = route_span(receiver, trace_id)
    envoy = receiver.wait_for(lambda s: s.trace_id == trace_id and s.service == "meritorder-envoy")
    assert envoy, "Envoy exported no span in the caller's trace"
    assert route.parent_span_id in {s.span_id for s in envoy}


def test_a_request_without_traceparent_starts_a_new_trace_found_by_request_id(
    stack: Stack, receiver: OtlpReceiver
) -> None:
    before = {s.trace_id for s in receiver.spans}
    response = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "fresh"}]},
    )
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]  # Envoy's id, echoed to the client
    spans = receiver.wait_for(
        lambda s: (
            s.name == "meritorder.route"
            and s.attributes.get("http.request.header.x-request-id") == request_id
        )
    )
    assert spans and spans[0].trace_id not in before


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        (b"{oops", 400, "invalid_json"),
        (
            b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "model_not_found",
        ),
    ],
)
def test_bad_requests_are_traced_with_error_status(
    stack: Stack, receiver: OtlpReceiver, body: bytes, status: int, error_type: str
) -> None:
    trace_id, parent = traceparent()
    response = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        content=body,
        headers={"traceparent": parent, "content-type": "application/json"},
    )
    assert response.status_code == status
    span = route_span(receiver, trace_id)
    assert span.status_code == 2
    assert span.attributes["error.type"] == error_type
    assert span.attributes["http.response.status_code"] == status


def test_no_prompt_text_in_any_exported_span_or_log_line(
    stack: Stack, receiver: OtlpReceiver, client: openai.OpenAI
) -> None:
    trace_id, _ = ask_in_new_trace(client, SECRET_PROMPT)
    route_span(receiver, trace_id)
    secret = SECRET_PROMPT.split()[0].encode()
    assert not any(secret in blob for blob in receiver.raw)
    assert secret.decode() not in stack.log("router")


def test_each_decision_logs_one_json_line_with_its_trace_id(
    stack: Stack, receiver: OtlpReceiver, client: openai.OpenAI
) -> None:
    trace_id, _ = ask_in_new_trace(client, "log me")
    route_span(receiver, trace_id)
    lines = [json.loads(line) for line in stack.log("router").splitlines() if line.startswith("{")]
    routed = [
        line for line in lines if line.get("event") == "routed" and line.get("trace_id") == trace_id
    ]
    assert len(routed) == 1
    assert routed[0]["model"] == "small" and len(routed[0]["span_id"]) == 16


def test_metrics_endpoint_counts_decisions_blocks_and_errors(
    stack: Stack, client: openai.OpenAI
) -> None:
    def scrape() -> str:
        return httpx.get(f"http://127.0.0.1:{stack.ports.metrics}/metrics").text

    def value(text: str, prefix: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
        )

    routed = 'meritorder_requests_total{decision="code",model="coder",outcome="routed"}'
    errors = 'meritorder_errors_total{type="invalid_json"}'
    before = scrape()
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "python"}])
    httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        content=b"{",
        headers={"content-type": "application/json"},
    )
    after = scrape()
    assert value(after, routed) == value(before, routed) + 1
    assert value(after, errors) == value(before, errors) + 1
    assert value(after, 'meritorder_stage_seconds_count{stage="policy"}') > value(
        before, 'meritorder_stage_seconds_count{stage="policy"}'
    )


def test_the_upstreams_status_and_usage_are_recorded_on_the_same_trace(
    stack: Stack, receiver: OtlpReceiver, client: openai.OpenAI
) -> None:
    trace_id, completion = ask_in_new_trace(client, "a python question")
    route = route_span(receiver, trace_id)
    (response,) = receiver.wait_for(
        lambda s: s.trace_id == trace_id and s.name == "meritorder.response"
    )
    assert response.parent_span_id == route.span_id
    attrs = response.attributes
    assert attrs["http.response.status_code"] == 200
    assert completion.usage is not None
    assert attrs["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    measured = (completion.usage.prompt_tokens + completion.usage.completion_tokens) * 0.5 / 1e6
    assert attrs["meritorder.cost.measured"] == pytest.approx(measured)


def test_a_failing_upstream_is_recorded_with_error_status(
    stack: Stack, receiver: OtlpReceiver, client: openai.OpenAI
) -> None:
    trace_id, parent = traceparent()
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="large",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"traceparent": parent, "x-mock-status": "502"},
        )
    (response,) = receiver.wait_for(
        lambda s: s.trace_id == trace_id and s.name == "meritorder.response"
    )
    assert response.status_code == 2 and response.attributes["http.response.status_code"] == 502


def test_a_blocked_request_is_traced_with_error_status(
    stack: Stack, receiver: OtlpReceiver, client: openai.OpenAI
) -> None:
    trace_id, parent = traceparent()
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "tell me about forbidden-topic"}],
            extra_headers={"traceparent": parent},
        )
    span = route_span(receiver, trace_id)
    assert span.status_code == 2
    assert (span.attributes["meritorder.action"], span.attributes["meritorder.decision"]) == (
        "block",
        "refuse",
    )
    assert span.attributes["error.type"] == "blocked_by_policy"
