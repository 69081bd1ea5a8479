"""The router's time budgets: required signals are waited for and never read as clean when they
are missing; routing-only ones fail open, marked; a request the classifier could not read in time
is not queued (admission); every fallback and degradation is counted."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from meritorder import telemetry
from meritorder.config import ConfigError, RouterConfig, parse_config
from meritorder.endpoints import parse
from meritorder.policy import Classified, Decision, Rejection, Routed
from meritorder.request import RequestView
from meritorder.router import Router
from tests.helpers import StalledBudgetStore, chat_view

POLICY = """
models:
  - {name: local, cluster: a, upstream_model: l, cost: 0.1}
  - {name: coder, cluster: b, upstream_model: c, cost: 0.5}
  - {name: api, cluster: c, upstream_model: x, cost: 5, boundary: external}
default_model: api
signals:
  - {name: attack, type: prompt_attack, required: %(required)s}
  - {name: code, keywords: [python]}
decisions:
  - {name: refuse, priority: 100, when: attack, block: {status: 403, message: refused}}
  - {name: code, priority: 50, when: code, route: [coder]}
routing:
  decision_timeout_ms: 5
  required_timeout_ms: %(required_ms)s
  on_unavailable: %(unavailable)s
"""


def policy(
    *, required: bool = True, required_ms: float = 10, unavailable: str = "{action: block}"
) -> RouterConfig:
    return parse_config(
        POLICY % {"required": required, "required_ms": required_ms, "unavailable": unavailable}
    )


def chat(text: str, model: str = "auto") -> RequestView:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)


def classified(attack: float) -> Classified:
    return Classified("other", {"other": 1.0}, attack, 0.5, 0.0, (), 3)


class Classifier:
    """Answers `attack` after `delay` seconds (forever: never answers)."""

    def __init__(self, attack: float = 0.0, delay: float | None = None) -> None:
        self.attack, self.delay = attack, delay

    async def classify(self, request: RequestView) -> Classified:
        if self.delay is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(self.delay)
        return classified(self.attack)


class Broken:
    async def classify(self, request: RequestView) -> Classified:
        raise RuntimeError("the model fell over")


async def test_a_required_signal_is_waited_for_past_the_routing_budget() -> None:
    # slower than decision_timeout_ms (5 ms), well within required_timeout_ms (10 s)
    router = Router(policy(required_ms=10_000), Classifier(attack=0.9, delay=0.05))
    decision = await router.route(chat("python please"))
    assert (decision.action, decision.rule) == ("block", "refuse")


async def test_a_routing_only_signal_keeps_the_routing_budget_and_fails_open_marked() -> None:
    router = Router(policy(required=False, required_ms=10_000), Classifier(attack=0.9))
    decision = await router.route(chat("python please"))
    assert (decision.action, decision.rule, decision.chosen and decision.chosen.name) == (
        "route",
        "code",
        "coder",
    )  # the cheap signals still decide
    assert "classifier=timeout" in decision.reason
    assert "degraded=signals_skipped" in decision.reason


async def test_a_missing_required_signal_blocks_with_a_retry_hint_when_configured() -> None:
    router = Router(policy(unavailable="{action: block, retry_after_s: 2}"), Classifier())
    decision = await router.route(chat("hello"))
    assert (decision.action, decision.status, decision.code, decision.error_type) == (
        "block",
        503,
        "signals_unavailable",
        "server_error",
    )
    assert "retry in 2 s" in decision.message
    assert "required=attack" in decision.reason and "degraded=required_block" in decision.reason


async def test_a_missing_required_signal_keeps_the_request_private_when_configured() -> None:
    router = Router(policy(unavailable="{action: private}"), Classifier())
    decision = await router.route(chat("hello"))  # would go to the external default
    assert decision.action == "route" and isinstance(decision, Routed)
    assert decision.model.boundary == "private" and decision.model.name == "local"
    assert Rejection("api", "signals", "signals_unavailable") in decision.rejected
    assert "degraded=required_private" in decision.reason


async def test_a_missing_required_signal_goes_to_the_named_safe_model_when_configured() -> None:
    router = Router(policy(unavailable="{action: route, model: coder}"), Broken())
    decision = await router.route(chat("hello"))
    assert (decision.rule, decision.chosen and decision.chosen.name) == (
        "signals_unavailable",
        "coder",
    )
    assert "classifier=RuntimeError" in decision.reason


async def test_boundary_pii_is_required_even_for_an_explicitly_named_model() -> None:
    config = parse_config(
        POLICY % {"required": False, "required_ms": 10, "unavailable": "{action: block}"}
        + "boundaries: [{name: inside}]\n"
    )
    decision = await Router(config, Classifier()).route(chat("my ssn is ...", model="api"))
    assert (decision.action, decision.code) == ("block", "signals_unavailable")
    assert "required=boundary:inside" in decision.reason


async def test_a_computed_signal_is_used_as_computed() -> None:
    router = Router(policy(), Classifier(attack=0.0, delay=0))
    decision = await router.route(chat("hello"))
    assert (decision.action, decision.rule) == ("route", "default")
    assert "classifier=" not in decision.reason and "degraded" not in decision.reason


def counter(name: str, **labels: str) -> float:
    return telemetry.METRICS.registry.get_sample_value(name, labels) or 0.0


async def test_every_degraded_decision_is_counted_by_cause_and_action() -> None:
    labels = {"decision": "signals_unavailable", "cause": "timeout", "action": "required_block"}
    before = counter("meritorder_degraded_decisions_total", **labels)
    decision = await Router(policy(), Classifier()).route(chat("hello"))
    telemetry.record_decision(telemetry.tracer().start_span("test"), decision)
    assert counter("meritorder_degraded_decisions_total", **labels) == before + 1


async def test_a_fallback_on_timeout_is_counted() -> None:
    config = parse_config(
        POLICY % {"required": False, "required_ms": 10, "unavailable": "{action: block}"}
        + "budgets: {default_limit: 10}\n"
    )
    router = Router(config, budgets=StalledBudgetStore())
    before = counter("meritorder_fallbacks_total", decision="fallback", reason="timeout")
    decision = await router.route(chat("hello"), {"x-tenant": "acme"})
    telemetry.record_decision(telemetry.tracer().start_span("test"), decision)
    assert decision.rule == "fallback" and "fallback=timeout" in decision.reason
    assert counter("meritorder_fallbacks_total", decision="fallback", reason="timeout") == (
        before + 1
    )


async def test_a_fallback_on_timeout_goes_to_a_model_serving_the_requests_api() -> None:
    embed = "  - {name: embed, cluster: e, upstream_model: e, cost: 1, apis: [embeddings]}\n"
    config = parse_config(
        POLICY.replace("default_model:", embed + "default_model:")
        % {"required": False, "required_ms": 10, "unavailable": "{action: block}"}
        + "budgets: {default_limit: 10}\n"
    )
    router = Router(config, budgets=StalledBudgetStore())
    for api, model in (("embeddings", "embed"), ("chat", "local")):
        decision = await router.route(chat_view("hello", api=api), {})
        assert (decision.rule, decision.chosen and decision.chosen.name) == ("fallback", model)


class Recorder:
    """A span that keeps its attributes."""

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_status(self, *_: Any) -> None:
        return None


async def test_the_span_says_a_decision_was_degraded_and_why() -> None:
    decision: Decision = await Router(policy(), Classifier()).route(chat("hello"))
    span = Recorder()
    telemetry.record_decision(span, decision)  # type: ignore[arg-type]
    assert span.attributes["meritorder.degraded"] is True
    assert span.attributes["meritorder.degraded.cause"] == "timeout"
    assert span.attributes["meritorder.degraded.action"] == "required_block"
    assert span.attributes["meritorder.fallback"] is False


@pytest.mark.parametrize(
    ("routing", "problem"),
    [
        (
            "{decision_timeout_ms: 150, required_timeout_ms: 100}",
            "routing: required_timeout_ms (100) is shorter than decision_timeout_ms (150)",
        ),
        ("{on_unavailable: {action: route}}", "routing.on_unavailable: action 'route' sends"),
        (
            "{on_unavailable: {action: block, model: local}}",
            "routing.on_unavailable: model 'local' is only used with action 'route'",
        ),
        (
            "{on_unavailable: {action: route, model: locl}}",
            "routing.on_unavailable.model: unknown model 'locl'; did you mean 'local'?",
        ),
        (
            "{on_unavailable: {action: route, model: api}}",
            "routing.on_unavailable.model: 'api' is external",
        ),
        ("{on_unavailable: {action: drop}}", "routing.on_unavailable.action: Input should be"),
        ("{admission: always}", "routing.admission: Input should be 'estimate' or 'off'"),
    ],
)
def test_bad_routing_settings_name_the_field_the_value_and_the_fix(
    routing: str, problem: str
) -> None:
    text = (POLICY.split("routing:")[0] % {"required": True}) + (
        f"boundaries: [{{name: inside}}]\nrouting: {routing}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_required_is_refused_on_a_signal_the_router_computes_itself() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            POLICY.replace("keywords: [python]", "keywords: [python], required: true")
            % {"required": True, "required_ms": 10, "unavailable": "{action: block}"}
        )
    assert any("required" in p and "unknown field" in p for p in caught.value.problems)


class Queued(Classifier):
    """Estimates a wait of `wait_s` for every request (None: no estimate) and counts the
    requests it was asked to classify."""

    def __init__(self, wait_s: float | None, attack: float = 0.0, delay: float | None = 0) -> None:
        super().__init__(attack, delay)
        self.wait_s = wait_s
        self.classified = 0

    def estimate_wait_s(self, request: RequestView) -> float | None:
        return self.wait_s

    async def classify(self, request: RequestView) -> Classified:
        self.classified += 1
        return await super().classify(request)


def admitting(admission: str) -> RouterConfig:
    return parse_config(
        POLICY % {"required": False, "required_ms": 10, "unavailable": "{action: block}"}
        + f"  admission: {admission}\n"
    )


async def test_a_request_the_classifier_cannot_read_in_time_is_decided_at_once_unqueued() -> None:
    classifier = Queued(wait_s=1.0, attack=0.9)  # a second's queue against a 5 ms budget
    decision = await Router(policy(required=False), classifier).route(chat("python please"))
    assert classifier.classified == 0
    assert (decision.action, decision.rule) == ("route", "code")  # the cheap signals decide
    assert "classifier=busy" in decision.client_reason
    assert "degraded=signals_skipped" in decision.client_reason


async def test_a_required_signal_gets_on_unavailable_at_once_when_the_classifier_is_busy() -> None:
    # Never answers: without admission it would wait out required_timeout_ms, as a timeout.
    classifier = Queued(wait_s=20.0, delay=None)  # past the 10 s a required signal may wait
    decision = await Router(policy(required_ms=10_000), classifier).route(chat("hello"))
    assert classifier.classified == 0
    assert (decision.action, decision.status, decision.code) == (
        "block",
        503,
        "signals_unavailable",
    )
    assert "classifier=busy" in decision.reason and "degraded=required_block" in decision.reason


async def test_a_required_signal_is_never_skipped_to_fail_open_when_busy() -> None:
    router = Router(policy(unavailable="{action: private}"), Queued(wait_s=1.0, attack=0.9))
    decision = await router.route(chat("hello"))  # would go to the external default
    assert isinstance(decision, Routed) and decision.model.boundary == "private"
    assert "classifier=busy" in decision.reason and "degraded=required_private" in decision.reason
    assert "signals_skipped" not in decision.reason


async def test_a_request_within_its_budget_is_queued_and_read_as_before() -> None:
    classifier = Queued(wait_s=0.001, attack=0.9, delay=0.05)  # slower than 5 ms, under 10 s
    decision = await Router(policy(required_ms=10_000), classifier).route(chat("python please"))
    assert classifier.classified == 1
    assert (decision.action, decision.rule) == ("block", "refuse")
    assert "classifier=" not in decision.reason


async def test_without_an_estimate_nothing_is_refused() -> None:
    classifier = Queued(wait_s=None, attack=0.9)
    decision = await Router(policy(), classifier).route(chat("hello"))
    assert classifier.classified == 1 and decision.rule == "refuse"


async def test_with_admission_off_every_request_is_queued_and_the_timeout_decides() -> None:
    classifier = Queued(wait_s=1.0, delay=None)
    decision = await Router(admitting("off"), classifier).route(chat("python please"))
    assert classifier.classified == 1
    assert "classifier=timeout" in decision.reason and "degraded=signals_skipped" in decision.reason


async def test_admission_counts_the_time_already_spent_against_the_budget() -> None:
    router = Router(admitting("estimate"), Queued(wait_s=0.004))  # under the 5 ms budget...
    config, request = router.config, chat("python please")
    _, fresh = await router._observe_in_time(config, request, {}, time.monotonic())
    _, late = await router._observe_in_time(config, request, {}, time.monotonic() - 0.003)
    assert (fresh, late) == (None, "busy")  # ... but not under the 2 ms left of it


async def test_a_busy_decision_is_counted_as_degraded_not_as_a_fallback() -> None:
    labels = {"decision": "code", "cause": "busy", "action": "signals_skipped"}
    degraded = counter("meritorder_degraded_decisions_total", **labels)
    fallbacks = counter("meritorder_fallbacks_total", decision="code", reason="busy")
    decision = await Router(policy(required=False), Queued(wait_s=1.0)).route(chat("python"))
    span = Recorder()
    telemetry.record_decision(span, decision)  # type: ignore[arg-type]
    assert counter("meritorder_degraded_decisions_total", **labels) == degraded + 1
    assert counter("meritorder_fallbacks_total", decision="code", reason="busy") == fallbacks
    assert span.attributes["meritorder.degraded.cause"] == "busy"
    assert span.attributes["meritorder.fallback"] is False


# -- a long request the attack head read only part of (`read: spread | all`) -------------------

# A local default, a safe model and a coder: the pool of the two policies below.
POOL = """
models:
  - {name: local, cluster: a, upstream_model: l, cost: 0.1}
  - {name: safe, cluster: s, upstream_model: s, cost: 0.2}
  - {name: coder, cluster: b, upstream_model: c, cost: 0.5}
default_model: local
"""

READ_POLICY = (
    POOL
    + """signals:
  - {name: attack, type: prompt_attack, required: %(required)s, read: %(read)s}
  - {name: code, keywords: [python]}
decisions:
  - {name: refuse, priority: 100, when: attack, block: {status: 403, message: refused}}
  - {name: code, priority: 50, when: code, route: [coder]}
routing:
  on_unavailable: %(unavailable)s
"""
)


def read_policy(
    read: str, *, required: bool = True, unavailable: str = "{action: block}"
) -> RouterConfig:
    return parse_config(
        READ_POLICY % {"read": read, "required": required, "unavailable": unavailable}
    )


def partly_read(attack: float, share: float = 0.25) -> Classified:
    return Classified("other", {"other": 1.0}, attack, 0.5, 0.0, (), 9000, attack_read=share)


async def test_a_partly_read_request_is_refused_as_too_long_when_the_attack_signal_reads_all() -> (
    None
):
    labels = {
        "decision": "signals_unavailable",
        "cause": "partial_read",
        "action": "required_block",
    }
    before = counter("meritorder_degraded_decisions_total", **labels)
    decision = await Router(read_policy("all"), Answers(partly_read(0.1))).route(chat("python"))
    assert (decision.action, decision.status, decision.code) == ("block", 413, "too_long_to_check")
    assert "retry" not in decision.message  # a retry cannot help; a shorter request can
    for part in ("classifier=partial_read", "unavailable=attack", "required=attack"):
        assert part in decision.reason
    telemetry.record_decision(Recorder(), decision)  # type: ignore[arg-type]
    assert counter("meritorder_degraded_decisions_total", **labels) == before + 1


async def test_a_partly_read_request_goes_to_the_safe_model_when_configured() -> None:
    config = read_policy("all", unavailable="{action: route, model: safe}")
    decision = await Router(config, Answers(partly_read(0.1))).route(chat("python"))
    assert (decision.rule, decision.chosen and decision.chosen.name) == (
        "signals_unavailable",
        "safe",
    )


async def test_an_attack_in_the_part_read_is_refused_as_an_attack_when_all_must_be_read() -> None:
    decision = await Router(read_policy("all"), Answers(partly_read(0.9))).route(chat("python"))
    assert (decision.action, decision.rule, decision.status) == ("block", "refuse", 403)
    assert "degraded" not in decision.reason


async def test_a_spread_read_routes_as_computed_marked_degraded_and_counted() -> None:
    labels = {"decision": "code", "cause": "partial_read", "action": "read_spread"}
    before = counter("meritorder_degraded_decisions_total", **labels)
    decision = await Router(read_policy("spread"), Answers(partly_read(0.1))).route(chat("python"))
    assert (decision.rule, decision.chosen and decision.chosen.name) == ("code", "coder")
    assert (
        "classifier=partial_read" in decision.reason and "degraded=read_spread" in decision.reason
    )
    span = Recorder()
    telemetry.record_decision(span, decision)  # type: ignore[arg-type]
    assert counter("meritorder_degraded_decisions_total", **labels) == before + 1
    assert span.attributes["meritorder.degraded.cause"] == "partial_read"
    assert span.attributes["meritorder.classifier.attack_read"] == 0.25


async def test_a_request_read_whole_is_not_marked_in_either_mode() -> None:
    for read in ("spread", "all"):
        answer = partly_read(0.1, share=1.0)
        decision = await Router(read_policy(read), Answers(answer)).route(chat("python"))
        assert decision.rule == "code" and "partial_read" not in decision.reason


async def test_a_spread_read_of_a_routing_only_attack_signal_is_marked_too() -> None:
    config = read_policy("all", required=False)
    decision = await Router(config, Answers(partly_read(0.1))).route(chat("python"))
    assert (decision.rule, decision.chosen and decision.chosen.name) == ("code", "coder")
    assert "degraded=signals_skipped" in decision.reason and "unavailable=attack" in decision.reason


async def test_an_explicitly_named_model_never_reads_the_attack_signal_so_is_not_marked() -> None:
    decision = await Router(read_policy("all"), Answers(partly_read(0.1))).route(
        chat("python", model="coder")
    )
    assert (decision.action, decision.chosen and decision.chosen.name) == ("route", "coder")
    assert "partial_read" not in decision.reason


# -- signals the loaded model cannot compute (`harmful` without the harm head) ----------------

HARM_POLICY = (
    POOL
    + """signals:
  - {name: attack, type: prompt_attack, required: true}
  - {name: harm, type: harmful, required: %(required)s}
  - {name: code, keywords: [python]}
decisions:
  - {name: refuse, priority: 100, when: attack, block: {status: 403, message: refused}}
  - {name: to-safe, priority: 90, when: harm, route: [safe]}
  - {name: code, priority: 50, when: code, route: [coder]}
routing:
  on_unavailable: %(unavailable)s
"""
)


def harm_policy(*, required: bool, unavailable: str = "{action: block}") -> RouterConfig:
    return parse_config(HARM_POLICY % {"required": required, "unavailable": unavailable})


class Answers:
    """Answers `classified` at once."""

    def __init__(self, classified: Classified) -> None:
        self.answer = classified

    async def classify(self, request: RequestView) -> Classified:
        return self.answer


class Planned(Answers):
    """Answers `classified`, and says from planning alone that it would read `share` of any
    request; counts the requests planned and classified."""

    def __init__(self, classified: Classified, share: float) -> None:
        super().__init__(classified)
        self.share = share
        self.planned = self.classified = 0

    async def read_share(self, request: RequestView) -> float | None:
        self.planned += 1
        return self.share

    async def classify(self, request: RequestView) -> Classified:
        self.classified += 1
        return await super().classify(request)


async def test_a_request_known_too_long_to_read_whole_is_refused_without_being_classified() -> None:
    # An attack in the part that would be read makes no difference: refused either way, and
    # the seconds its classification would cost are not spent.
    planner = Planned(partly_read(0.9), share=0.25)
    decision = await Router(read_policy("all"), planner).route(chat("python"))
    assert (decision.action, decision.status, decision.code) == ("block", 413, "too_long_to_check")
    assert "classifier=partial_read" in decision.reason and "required=attack" in decision.reason
    assert (planner.planned, planner.classified) == (1, 0)


async def test_a_request_the_attack_head_would_read_whole_is_classified_as_before() -> None:
    planner = Planned(partly_read(0.9, share=1.0), share=1.0)
    decision = await Router(read_policy("all"), planner).route(chat("python"))
    assert (decision.rule, decision.status) == ("refuse", 403)
    assert (planner.planned, planner.classified) == (1, 1)


async def test_a_request_is_classified_unplanned_unless_a_required_whole_read_would_block() -> None:
    # A private or named safe model still needs the PII in it found; a spread read, a routing-
    # only signal or an explicitly named model reads what it can.
    cases = [
        (read_policy("all", unavailable="{action: route, model: safe}"), "auto"),
        (read_policy("all", unavailable="{action: private}"), "auto"),
        (read_policy("spread"), "auto"),
        (read_policy("all", required=False), "auto"),
    ]
    for config, model in cases:
        planner = Planned(partly_read(0.1), share=0.25)
        await Router(config, planner).route(chat("python", model=model))
        assert (planner.planned, planner.classified) == (0, 1), (config.routing, model)
    planner = Planned(partly_read(0.1), share=0.25)
    await Router(read_policy("all"), planner).route(chat("python", model="coder"))
    assert planner.planned == 0  # and, with no boundary, not classified either


def harm_scored(harmful: float | None) -> Classified:
    threshold = None if harmful is None else 0.5
    return Classified("other", {"other": 1.0}, 0.0, 0.5, 0.0, (), 3, harmful, threshold)


async def test_a_harmful_request_goes_where_the_policy_sends_it() -> None:
    router = Router(harm_policy(required=True), Answers(harm_scored(0.9)))
    decision = await router.route(chat("python please"))
    assert (decision.rule, decision.chosen and decision.chosen.name) == ("to-safe", "safe")
    assert decision.fired["harm"] == pytest.approx(0.9)
    benign = await Router(harm_policy(required=True), Answers(harm_scored(0.1))).route(
        chat("python please")
    )
    assert (benign.rule, "degraded" in benign.reason) == ("code", False)


async def test_a_required_harm_signal_without_a_harm_head_gets_on_unavailable() -> None:
    router = Router(harm_policy(required=True), Answers(harm_scored(None)))
    decision = await router.route(chat("python please"))
    assert (decision.action, decision.status, decision.code) == (
        "block",
        503,
        "signals_unavailable",
    )
    for part in ("classifier=not_in_model", "unavailable=harm", "required=harm"):
        assert part in decision.reason
    assert "degraded=required_block" in decision.reason


async def test_a_harm_signal_without_a_harm_head_goes_to_the_safe_model_when_configured() -> None:
    config = harm_policy(required=True, unavailable="{action: route, model: safe}")
    decision = await Router(config, Answers(harm_scored(None))).route(chat("python please"))
    assert (decision.rule, decision.chosen and decision.chosen.name) == (
        "signals_unavailable",
        "safe",
    )


async def test_an_attack_is_still_refused_as_an_attack_without_a_harm_head() -> None:
    attack = Classified("other", {"other": 1.0}, 0.9, 0.5, 0.0, (), 3)
    config = harm_policy(required=True, unavailable="{action: route, model: safe}")
    decision = await Router(config, Answers(attack)).route(chat("python please"))
    assert (decision.action, decision.rule, decision.status) == ("block", "refuse", 403)
    assert "unavailable=harm" in decision.reason and "degraded" not in decision.reason


async def test_a_routing_only_harm_signal_without_a_harm_head_fails_open_marked_and_counted() -> (
    None
):
    labels = {"decision": "code", "cause": "not_in_model", "action": "signals_skipped"}
    before = counter("meritorder_degraded_decisions_total", **labels)
    router = Router(harm_policy(required=False), Answers(harm_scored(None)))
    decision = await router.route(chat("python please"))
    assert (decision.rule, decision.chosen and decision.chosen.name) == ("code", "coder")
    assert "unavailable=harm" in decision.reason
    assert "degraded=signals_skipped" in decision.reason
    span = Recorder()
    telemetry.record_decision(span, decision)  # type: ignore[arg-type]
    assert counter("meritorder_degraded_decisions_total", **labels) == before + 1
    assert span.attributes["meritorder.degraded.cause"] == "not_in_model"
    assert span.attributes["meritorder.note.unavailable"] == "harm"


async def test_an_explicitly_named_model_is_not_degraded_by_a_harm_signal_it_never_reads() -> None:
    # A boundary makes the router classify every request, explicitly named ones too.
    config = parse_config(
        HARM_POLICY % {"required": True, "unavailable": "{action: block}"}
        + "boundaries: [{name: inside}]\n"
    )
    router = Router(config, Answers(harm_scored(None)))
    decision = await router.route(chat("python please", model="coder"))
    assert (decision.action, decision.chosen and decision.chosen.name) == ("route", "coder")
    assert "degraded" not in decision.reason
