"""`meritorder classify` and the router's classifier: the command-line contract over the
classifier runtime, the signal cache's metrics, span attribute and serve options, and the wait
estimate that admission reads."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from app.cli import main
from classifiers.engine import SignalEngine
from meritorder import telemetry
from meritorder.classify import EngineClassifier, load_classifier
from meritorder.config import RoutingConfig
from meritorder.endpoints import parse
from meritorder.request import RequestView
from tests.helpers import RedisServer, serve_never_starts


def test_classify_writes_the_contract_fields_per_line_and_an_error_for_bad_lines(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    lines = [
        {"id": "t", "text": "mail alice@example.com about the invoice"},
        {
            "id": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "my ssn is 123-45-6789"},
            ],
        },
    ]
    source.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    out = tmp_path / "out.jsonl"
    args = [
        "classify",
        "--model-dir",
        str(model_dir),
        "--cpu",
        "--input",
        str(source),
        "--output",
        str(out),
    ]
    assert main(args) == 0
    text_line, messages_line, bad = (json.loads(x) for x in out.read_text().splitlines())
    keys = {
        "id", "domain", "prompt_attack", "harmful", "pii", "difficulty", "tokens", "latency_ms"
    }  # fmt: skip
    assert set(text_line) == keys and set(messages_line) == keys
    assert set(text_line["domain"]) == {"label", "scores", "confidence"}
    assert len(text_line["domain"]["scores"]) == 14
    assert set(text_line["prompt_attack"]) == {"score", "flagged", "read", "by"}
    email = next(p for p in text_line["pii"] if p["type"] == "EMAIL_ADDRESS")
    assert lines[0]["text"][email["start"] : email["end"]] == "alice@example.com"
    ssn = next(p for p in messages_line["pii"] if p["type"] == "US_SSN")
    assert (ssn["message"], ssn["start"], ssn["end"]) == (1, 10, 21)
    assert bad["id"] is None and "invalid JSON" in bad["error"]
    assert "could not be classified" in capsys.readouterr().err


def test_classify_without_a_model_explains_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["classify", "--model-dir", str(tmp_path), "--input", "-"]) == 2
    assert "cannot load the classifier model" in capsys.readouterr().err


def metric(name: str) -> float:
    return telemetry.METRICS.registry.get_sample_value(name) or 0.0


async def test_signal_cache_hits_and_misses_reach_prometheus_and_the_classify_span(
    model_dir: Path,
) -> None:
    engine = SignalEngine.load(model_dir, force_cpu=True, cache_entries=100)
    classifier = EngineClassifier(engine)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    messages = [
        {"role": "system", "content": "you write to alice smith"},
        {"role": "user", "content": "hello bob"},
    ]
    turns = [messages, [*messages, {"role": "assistant", "content": "hi"}, messages[1]]]
    hits, misses = (
        metric("meritorder_signal_cache_hits_total"),
        metric("meritorder_signal_cache_misses_total"),
    )
    try:
        for turn in turns:
            request = conversation(turn)
            with provider.get_tracer("test").start_as_current_span("classify"):
                await classifier.classify(request)
    finally:
        classifier.close()
    stats = engine.cache_stats
    assert stats.hits > 0 and stats.misses == stats.rows_encoded > 0
    assert metric("meritorder_signal_cache_hits_total") - hits == stats.hits
    assert metric("meritorder_signal_cache_misses_total") - misses == stats.misses
    cached = [
        dict(span.attributes or {})["meritorder.classifier.cached_rows"]
        for span in exporter.get_finished_spans()
    ]
    assert cached[0] == 0 and cached[1] == stats.hits


@pytest.mark.parametrize("flag", ["--signal-cache-entries", "--signal-cache-ttl-s"])
def test_serve_refuses_a_negative_signal_cache_bound(
    flag: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_never_starts(monkeypatch, "a negative signal cache bound")
    config = Path(__file__).resolve().parents[2] / "examples" / "enterprise.yaml"
    assert main(["serve", "--config", str(config), flag, "-1"]) == 2
    assert f"{flag} -1" in capsys.readouterr().err


async def test_routers_on_one_redis_share_the_signal_cache_and_count_its_outage(
    model_dir: Path, redis_server: RedisServer
) -> None:
    first, second = (
        load_classifier(model_dir, force_cpu=True, cache_entries=100, cache_ttl_s=60,
                        cache_url=redis_server.url)
        for _ in range(2)
    )  # fmt: skip
    assert first is not None and second is not None
    messages = [
        {"role": "system", "content": "you write to alice smith"},
        {"role": "user", "content": "hello bob"},
    ]
    later = [*messages, {"role": "assistant", "content": "hi"}, {"role": "user", "content": "cat"}]
    errors = metric("meritorder_signal_cache_errors_total")
    try:
        await first.classify(conversation(messages))
        await second.classify(conversation(later))
        assert second.engine.cache_stats.hits > 0  # the system prompt, encoded by the first
        redis_server.stop()
        classified = await second.classify(conversation(later))
        assert classified.domain in second.engine.spec.domain_labels
        assert metric("meritorder_signal_cache_errors_total") - errors == 2  # get and put
    finally:
        first.close()
        second.close()


def conversation(messages: list[dict[str, str]]) -> RequestView:
    return parse(
        "chat", json.dumps({"model": "m", "messages": messages}).encode(), max_bytes=1 << 20
    )


class GatedSession:
    """The engine's onnxruntime session, held on a gate: the worker stays busy until it opens."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()

    def run(self, *args: Any) -> Any:
        self.entered.set()
        self.gate.wait(10)
        return self._session.run(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


async def test_the_wait_estimate_grows_with_the_queue_and_is_none_while_idle(
    engine: SignalEngine,
) -> None:
    classifier = EngineClassifier(engine)
    request = conversation([{"role": "user", "content": "hello there"}])
    assert classifier.estimate_wait_s(request) is None  # nothing measured yet
    await classifier.classify(request)
    # Idle: no grounds to refuse (it would run at once, and re-measure the cost of a row).
    assert classifier.estimate_wait_s(request) is None
    gated = GatedSession(engine.session)
    engine.session = gated  # type: ignore[assignment]
    gated.gate.clear()
    calls = [asyncio.ensure_future(classifier.classify(request))]
    while not gated.entered.is_set():
        await asyncio.sleep(0.001)
    estimates = []
    for _ in range(3):
        estimates.append(classifier.estimate_wait_s(request))
        calls.append(asyncio.ensure_future(classifier.classify(request)))
        await asyncio.sleep(0)
    gated.gate.set()
    await asyncio.gather(*calls)
    assert all(e is not None and e > 0 for e in estimates)
    assert estimates == sorted(estimates) and estimates[0] != estimates[-1]


async def test_the_read_share_comes_from_planning_and_matches_what_classifying_reads(
    engine: SignalEngine,
) -> None:
    classifier = EngineClassifier(engine)
    lines = "".join(f"line {i} of a long list, item {i * 7}\n" for i in range(1500))
    short, long = (conversation([{"role": "user", "content": t}]) for t in ("hi", lines))
    encoded = engine.cache_stats.rows_encoded
    shares = [await classifier.read_share(r) for r in (short, long)]
    assert shares[0] == 1.0 and shares[1] is not None and shares[1] < 1.0
    assert engine.cache_stats.rows_encoded == encoded  # planning runs no forward
    assert shares == [(await classifier.classify(r)).attack_read for r in (short, long)]
    assert engine.cache_stats.rows_encoded > encoded  # classifying does


async def test_the_router_reads_the_harm_score_and_the_domain_confidence(
    harm_model_dir: Path, engine: SignalEngine
) -> None:
    harm = EngineClassifier(SignalEngine.load(harm_model_dir, force_cpu=True))
    old = EngineClassifier(engine)
    request = conversation([{"role": "user", "content": "hello mat"}])
    try:
        classified = await harm.classify(request)
        without = await old.classify(request)
    finally:
        harm.close()
    assert classified.harmful is not None and classified.harmful > 0.5
    assert classified.harmful_threshold == 0.5
    assert classified.domain_confidence == max(classified.domain_scores.values())
    assert classified.fields()["harmful"] == classified.harmful
    assert classified.fields()["domain_confidence"] == classified.domain_confidence
    # A model without the harm head: no score, and no field that could read as clean.
    assert without.harmful is None and without.harmful_threshold is None
    assert "harmful" not in without.fields()


def test_the_speed_check_times_the_model_and_leaves_the_engine_serving(model_dir: Path) -> None:
    engine = SignalEngine.load(model_dir, force_cpu=True)
    classifier = EngineClassifier(engine)
    try:
        rate = classifier.check_speed(RoutingConfig(), required=True)
        assert rate > 0 and telemetry.METRICS.classifier_speed._value.get() == rate
        request = parse(
            "chat",
            b'{"model":"auto","messages":[{"role":"user","content":"hi"}]}',
            max_bytes=1 << 20,
        )
        assert asyncio.run(classifier.classify(request)).tokens > 0
    finally:
        classifier.close()


@pytest.mark.parametrize(
    ("required_ms", "decision_ms", "required", "warnings"),
    [
        (10_000, 500, True, []),  # 10,000 row tokens covered: the costliest request fits
        (1_000, 500, True, ["required"]),  # 1,000: it does not, and a required signal waits
        (1_000, 500, False, []),  # nothing required: no request is refused for want of time
        (10_000, 200, True, ["decision"]),  # 200 row tokens: not one full row (256)
        (1_000, 200, True, ["required", "decision"]),
    ],
)
def test_the_speed_check_warns_where_the_budgets_do_not_cover_the_requests(
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    required_ms: float,
    decision_ms: float,
    required: bool,
    warnings: list[str],
) -> None:
    engine = SignalEngine.load(model_dir, force_cpu=True)
    monkeypatch.setattr(engine, "measure_speed", lambda: 1000.0)  # row tokens a second
    classifier = EngineClassifier(engine)
    routing = RoutingConfig(required_timeout_ms=required_ms, decision_timeout_ms=decision_ms)
    try:
        with capture_logs() as logs:
            classifier.check_speed(routing, required=required)
    finally:
        classifier.close()
    said = [
        "required" if "required_timeout_ms" in log["event"] else "decision"
        for log in logs
        if log["log_level"] == "warning"
    ]
    assert said == warnings
    assert len(logs) == max(1, len(warnings))  # one info line when nothing is wrong
    for log in logs:
        assert log["costliest_request_row_tokens"] == engine.max_request_row_tokens == 6656
        assert log["costliest_request_s"] == 6.66
        assert log["required_covers_row_tokens"] == required_ms
        assert ("faster cores" in log["event"]) == (log["log_level"] == "warning")


async def test_pii_in_a_tool_description_stays_a_field_finding_and_the_models_guesses_there_go(
    model_dir: Path,
) -> None:
    """A description is read by every head, but PII there is reported as the field it is (not
    redactable: the policy keeps the request private, as before descriptions were read), and
    the PII model's spans in it are dropped."""
    from classifiers.signals import PiiEntity
    from meritorder.classify import _in_tool_specs_as_fields

    tools = [{"type": "function", "function": {"name": "m", "description": "Mail bob@x.io"}}]
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
    request = parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)
    found = (
        PiiEntity("EMAIL_ADDRESS", 5, 13, 1.0, message=1, source="pattern"),
        PiiEntity("PERSON", 0, 4, 0.9, message=1, source="model"),
        PiiEntity("PERSON", 0, 2, 0.9, message=0, source="model"),
    )
    assert _in_tool_specs_as_fields(request, found) == (
        PiiEntity(
            "EMAIL_ADDRESS", 5, 13, 1.0, message=None, source="pattern",
            field="tools[0].function.description",
        ),
        found[2],
    )  # fmt: skip
    engine = SignalEngine.load(model_dir, force_cpu=True)
    classifier = EngineClassifier(engine)
    try:
        classified = await classifier.classify(request)
    finally:
        classifier.close()
    emails = [p for p in classified.pii if p.type == "EMAIL_ADDRESS"]
    assert [(p.field, p.message) for p in emails] == [("tools[0].function.description", None)]
