"""A decision that learns: the bandit picks among the candidates every filter let through, and
the router feeds outcomes back into the store it reads (SQLite: across a restart)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from meritorder import policy, telemetry
from meritorder.batch import explain
from meritorder.config import ConfigError, parse_config
from meritorder.endpoints import parse
from meritorder.learning.store import Arm, ContextEstimates, SqliteEstimates
from meritorder.outcomes import Feedback, Outcome
from meritorder.policy import Observation, PoolState
from meritorder.request import RequestView
from meritorder.router import Router

POLICY = """
models:
  - {name: big, cluster: big, upstream_model: big, cost: 70}
  - {name: small, cluster: small, upstream_model: small, cost: 20}
  - {name: tiny, cluster: tiny, upstream_model: tiny, cost: 1}
default_model: big
signals:
  - {name: code, type: keyword, keywords: [python]}
decisions:
  - name: code
    when: code
    route: [big, small]
    learn: {objective: within_epsilon, epsilon: 0.02, explore: {max: 0.0}}
"""
BUDGET = """
budgets:
  limits: {acme: 0.01}
  step_down_to: [tiny]
  header: x-tenant
"""


def request(body: dict[str, object] | None = None) -> RequestView:
    payload = body or {"model": "auto", "messages": [{"role": "user", "content": "python?"}]}
    return parse("chat", json.dumps(payload).encode(), max_bytes=1 << 20)


def strong(mean: float, n: float = 5000) -> Arm:
    return Arm(wins=mean * n, losses=(1 - mean) * n)


# big is clearly better: the bandit (no exploration) picks it whenever it may.
BIG_WINS = {"decision:code": ContextEstimates(arms={"big": strong(0.9), "small": strong(0.5)})}


def test_the_learned_pick_is_on_the_decision_with_its_table() -> None:
    config = parse_config(POLICY)
    decision = policy.decide(config, Observation(request()), PoolState(estimates=BIG_WINS))
    assert decision.model is not None and decision.model.name == "big"
    assert decision.pick is not None and decision.pick.context == "decision:code"
    assert [r.model for r in decision.pick.table] == ["big", "small"]
    assert "learn=exploit" in decision.reason


def test_a_learned_choice_still_skips_an_unhealthy_model() -> None:
    config = parse_config(POLICY)
    pool = PoolState(unhealthy=frozenset({"big"}), estimates=BIG_WINS)
    decision = policy.decide(config, Observation(request()), pool)
    assert decision.model is not None and decision.model.name == "small"
    assert ("big", "health") in [(r.model, r.filter) for r in decision.rejected]
    assert decision.pick is not None and [r.model for r in decision.pick.table] == ["small"]


def test_a_learned_choice_still_fits_the_budget() -> None:
    config = parse_config(POLICY + BUDGET)
    # ~260 tokens at cost 70 per 1M is 0.018: over the 0.01 limit; small's 0.005 fits.
    body = {"model": "auto", "max_tokens": 256, "messages": [{"role": "user", "content": "python"}]}
    obs = Observation(request(body), {"x-tenant": "acme"})
    config = config.model_copy(
        update={"decisions": (config.decisions[0].model_copy(update={"route": ("small", "big")}),)}
    )
    decision = policy.decide(config, obs, PoolState(estimates=BIG_WINS))
    assert decision.model is not None and decision.model.name == "small"
    assert ("big", "budget") in [(r.model, r.filter) for r in decision.rejected]


def test_learn_needs_two_route_candidates_and_says_so() -> None:
    bad = POLICY.replace("route: [big, small]", "route: [big]")
    with pytest.raises(ConfigError, match=r"decisions\[0\].*at least two models in 'route'"):
        parse_config(bad)


def test_an_unknown_learn_field_is_named_with_a_hint() -> None:
    bad = POLICY.replace("epsilon: 0.02", "epsilom: 0.02")
    with pytest.raises(ConfigError, match=r"decisions\[0\]\.learn\.epsilom: unknown field"):
        parse_config(bad)


async def test_the_router_learns_from_rewards_it_is_fed() -> None:
    router = Router(parse_config(POLICY))
    for _ in range(300):  # small is as good as big here, and cheaper
        await router.observe_reward("decision:code", "big", 0.8)
        await router.observe_reward("decision:code", "small", 0.8)
    decision = await router.route(request(), {"x-request-id": "r-1"})
    assert decision.model is not None and decision.model.name == "small"
    assert decision.pick is not None
    assert {r.model: round(r.count) for r in decision.pick.table} == {"big": 300, "small": 300}
    again = await router.route(request(), {"x-request-id": "r-1"})
    assert again.pick is not None
    assert [r.sample for r in again.pick.table] == [r.sample for r in decision.pick.table]
    ctx = (await router.estimates.read(["decision:code"]))["decision:code"]
    assert ctx.picks == 2


async def test_a_restart_with_sqlite_keeps_learned_estimates(tmp_path: Path) -> None:
    path = tmp_path / "learned.db"
    first = Router(parse_config(POLICY), estimates=SqliteEstimates(path))
    for _ in range(200):  # big fails, small succeeds: the router learns to prefer small
        await first.observe_reward("decision:code", "big", 0.0)
        await first.observe_reward("decision:code", "small", 1.0)
    await first.estimates.close()

    restarted = Router(parse_config(POLICY), estimates=SqliteEstimates(path))
    decision = await restarted.route(request(), {"x-request-id": "after-restart"})
    assert decision.model is not None and decision.model.name == "small"
    assert decision.pick is not None
    assert {r.model: round(r.count) for r in decision.pick.table} == {"big": 200, "small": 200}
    await restarted.estimates.close()


async def test_a_client_cannot_choose_the_draws_of_its_request() -> None:
    # The same x-request-id on two routers (two processes' keys) draws differently.
    config = parse_config(POLICY)
    one, two = Router(config, seed_key=b"one"), Router(config, seed_key=b"two")
    headers = {"x-request-id": "client-chosen"}
    a, b = await one.route(request(), headers), await two.route(request(), headers)
    assert a.pick is not None and b.pick is not None
    assert [r.sample for r in a.pick.table] != [r.sample for r in b.pick.table]


async def test_feedback_on_a_learned_answer_reaches_the_estimates_it_was_picked_on() -> None:
    """The feedback seam: the decision's learning context rides in its facts, so a verdict
    (arriving at any process) updates the arm that was chosen, once."""
    router = Router(parse_config(POLICY))
    decision = await router.route(request(), {"x-request-id": "r-7"})
    assert decision.pick is not None
    pending = await router.dispatch("r-7", decision)
    assert pending is not None and pending.learn_context == "decision:code"
    await router.feedback(Feedback("r-7", 1.0), {})
    arms = (await router.estimates.read(["decision:code"]))["decision:code"].arms
    assert {name: arm.wins for name, arm in arms.items()} == {decision.model.name: 1.0}


async def test_an_answers_success_is_the_reward_when_the_decision_says_so() -> None:
    config = parse_config(
        POLICY.replace("explore: {max: 0.0}}", "explore: {max: 0.0}, reward: success}")
    )
    router = Router(config)
    decision = await router.route(request(), {"x-request-id": "r-8"})
    pending = await router.dispatch("r-8", decision)
    assert pending is not None
    await router.settle(Outcome("r-8", pending, status=503))
    arms = (await router.estimates.read(["decision:code"]))["decision:code"].arms
    (arm,) = arms.values()
    assert (arm.wins, arm.losses) == (0.0, 1.0)
    # Feedback is not this decision's reward: it changes nothing.
    await router.feedback(Feedback("r-8", 1.0), {})
    arms = (await router.estimates.read(["decision:code"]))["decision:code"].arms
    assert [(a.wins, a.losses) for a in arms.values()] == [(0.0, 1.0)]


async def test_a_detected_change_is_counted_traced_and_shown_by_explain_and_the_next_pick() -> None:
    detecting = POLICY.replace(
        "explore: {max: 0.0}}", "explore: {max: 0.0}, detect: {threshold: 3, keep: 5}}"
    )
    router = Router(parse_config(detecting))
    counter = telemetry.METRICS.learning_resets.labels(context="decision:code")
    before = counter._value.get()
    for _ in range(50):
        await router.observe_reward("decision:code", "big", 1.0)
    assert counter._value.get() == before  # a steady run of successes: nothing to detect
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("outcome"):
        for _ in range(4):  # then four failures in a row, far below a posterior mean of 0.98
            await router.observe_reward("decision:code", "big", 0.0)
    assert counter._value.get() == before + 1
    (span,) = exporter.get_finished_spans()
    (event,) = span.events  # the outcome that reset the context says so
    assert event.name == "meritorder.learn.reset"
    assert dict(event.attributes or {}) == {
        "meritorder.learn.context": "decision:code",
        "meritorder.model": "big",
    }
    decision = await router.route(request(), {"x-request-id": "r-9"})
    assert decision.pick is not None
    assert (decision.pick.resets, decision.pick.since_reset) == (1, 0)
    with provider.get_tracer("test").start_as_current_span("route") as route_span:
        telemetry._annotate(route_span, decision)
    attributes = dict(exporter.get_finished_spans()[-1].attributes or {})
    assert attributes["meritorder.learn.resets"] == 1
    assert attributes["meritorder.learn.since_reset"] == 0
    assert {r.model: round(r.count) for r in decision.pick.table} == {"big": 5, "small": 0}
    text = await explain(router, "python?", {"x-request-id": "r-9"}, "auto")
    assert "reset 1x by the change detector, the last 0 observations ago" in text


async def test_the_relative_models_level_is_on_the_pick_the_span_and_explain() -> None:
    relative = POLICY.replace(
        "explore: {max: 0.0}}",
        "explore: {max: 0.0}, model: relative, level_step: 0.5, "
        "prior: {means: {big: 0.8, small: 0.6}}}",
    )
    router = Router(parse_config(relative))
    await router.observe_reward("decision:code", "big", 0.0)  # predicted 0.7 + 0.1: the level falls
    decision = await router.route(request(), {"x-request-id": "r-10"})
    assert decision.pick is not None and "learn=exploit" in decision.reason
    assert decision.pick.level == pytest.approx(0.7 - 0.5 * 0.8)
    assert decision.pick.to_json()["level"] == pytest.approx(0.3)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("route") as route_span:
        telemetry._annotate(route_span, decision)
    attributes = dict(exporter.get_finished_spans()[-1].attributes or {})
    assert attributes["meritorder.learn.level"] == pytest.approx(0.3)
    text = await explain(router, "python?", {"x-request-id": "r-10"}, "auto")
    assert "level 0.300 (relative model: each mean is level + offset)" in text
    # The absolute model has no level, and says none.
    plain = await Router(parse_config(POLICY)).route(request(), {"x-request-id": "r-11"})
    assert plain.pick is not None and plain.pick.level is None
