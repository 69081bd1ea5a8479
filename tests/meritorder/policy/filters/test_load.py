"""The load filter: saturated candidates give way to the next one, within the budget, and the
least loaded stays when all are saturated."""

from __future__ import annotations

import pytest

from meritorder.config import parse_config
from meritorder.policy import Note, Observation, PoolState, Rejection, Survivors, decide
from meritorder.policy.filters.load import LoadFilter
from meritorder.pool import ModelLoad
from tests.helpers import candidates, chat_view, names, pipeline_context

CONFIG = parse_config(
    """
models:
  - {name: a, cluster: a, upstream_model: a, cost: 1, metrics_url: http://a/metrics,
     saturation: {queue: 4, kv_cache: 0.9}}
  - {name: b, cluster: b, upstream_model: b, cost: 2,
     metrics_url: [http://b1/metrics, http://b2/metrics],
     saturation: {queue: 4}}
  - {name: c, cluster: c, upstream_model: c, cost: 3, metrics_url: http://c/metrics,
     saturation: {queue: 4, on_stale: saturated}}
  - {name: plain, cluster: p, upstream_model: p, cost: 1}
default_model: a
decisions:
  - {name: interactive, when: hi, route: [a, b], slo: {ttft_ms: 800}}
signals:
  - {name: hi, keywords: [hello]}
"""
)


def fresh(waiting: float = 0, kv: float | None = None, ttft: float | None = None) -> ModelLoad:
    return ModelLoad(replicas=1, reachable=1, waiting=waiting, kv_cache=kv, ttft_s=ttft, age_s=0.2)


IDLE = fresh()
QUEUED = fresh(waiting=9)
STALE = ModelLoad(replicas=1, age_s=12.0, stale=True)
NEVER = ModelLoad(replicas=1, stale=True)


@pytest.mark.parametrize(
    ("load", "expected", "rejected"),
    [
        # never read yet: a and b count it unknown (kept), c saturated (its on_stale)
        ({m: NEVER for m in "abc"}, ("a", "b"), (("c", "saturated_stale"),)),
        ({"a": IDLE, "b": IDLE, "c": IDLE}, ("a", "b", "c"), ()),
        ({"a": QUEUED, "b": IDLE, "c": IDLE}, ("b", "c"), (("a", "saturated_queue"),)),
        ({"a": fresh(kv=0.95), "b": IDLE, "c": IDLE}, ("b", "c"), (("a", "saturated_kv_cache"),)),
        (
            {"a": QUEUED, "b": QUEUED, "c": IDLE},
            ("c",),
            (("a", "saturated_queue"), ("b", "saturated_queue")),
        ),
        ({"a": IDLE, "b": IDLE, "c": STALE}, ("a", "b"), (("c", "saturated_stale"),)),
        ({"a": STALE, "b": IDLE, "c": IDLE}, ("a", "b", "c"), ()),  # a's stale data is unknown
    ],
)
def test_saturated_candidates_are_skipped_for_the_next(
    load: dict[str, ModelLoad], expected: tuple[str, ...], rejected: tuple[tuple[str, str], ...]
) -> None:
    out = LoadFilter().apply(
        pipeline_context(CONFIG, pool=PoolState(load=load)), candidates(CONFIG, "a", "b", "c")
    )
    assert isinstance(out, Survivors)
    assert names(out) == expected
    assert out.rejected == tuple(Rejection(m, "load", why) for m, why in rejected)
    assert Note("all_candidates_saturated") not in out.notes


def test_when_every_candidate_is_saturated_the_least_loaded_stays_and_it_is_noted() -> None:
    load = {"a": fresh(waiting=20), "b": fresh(waiting=5), "c": fresh(waiting=9)}
    out = LoadFilter().apply(
        pipeline_context(CONFIG, pool=PoolState(load=load)), candidates(CONFIG, "a", "b", "c")
    )
    assert isinstance(out, Survivors)
    assert names(out) == ("b",)
    assert Note("all_candidates_saturated") in out.notes
    assert {r.model for r in out.rejected} == {"a", "c"}


def test_the_notes_show_the_pool_state_behind_the_choice() -> None:
    load = {
        "a": QUEUED,
        "b": ModelLoad(replicas=2, reachable=1, waiting=1, kv_cache=0.5, age_s=0.4),
    }
    out = LoadFilter().apply(
        pipeline_context(CONFIG, pool=PoolState(load=load)), candidates(CONFIG, "a", "b")
    )
    assert isinstance(out, Survivors)
    (pool,) = [n for n in out.notes if n.kind == "pool"]
    assert (
        pool.value
        == "a(queue=9,inflight=0,age=0.2s) b(queue=1,kv=50%,inflight=0,replicas=1/2,age=0.4s)"
    )
    # The load is the operator's: a client's reason under `reason_detail: minimal` omits it.
    assert (pool.render(full=True).startswith("pool=a(queue=9"), pool.render(full=False)) == (
        True,
        "pool",
    )


def test_models_without_metrics_or_limits_are_left_alone_and_unnoted() -> None:
    survivors = candidates(CONFIG, "plain")
    out = LoadFilter().apply(
        pipeline_context(CONFIG, pool=PoolState(load={"plain": QUEUED})), survivors
    )
    assert out is survivors


def test_the_decisions_slo_saturates_a_model_whose_predicted_ttft_exceeds_it() -> None:
    load = {"a": fresh(ttft=1.2), "b": fresh(ttft=0.3)}
    ctx = pipeline_context(CONFIG, rule="interactive", pool=PoolState(load=load))
    out = LoadFilter().apply(ctx, candidates(CONFIG, "a", "b"))
    assert names(out) == ("b",)
    assert isinstance(out, Survivors)
    assert out.rejected == (Rejection("a", "load", "saturated_slo"),)
    without_slo = LoadFilter().apply(
        pipeline_context(CONFIG, pool=PoolState(load=load)), candidates(CONFIG, "a", "b")
    )
    assert names(without_slo) == ("a", "b")


BUDGETED = parse_config(
    """
models:
  - {name: cheap, cluster: a, upstream_model: a, cost: 1,
     metrics_url: http://a/metrics, saturation: {queue: 1}}
  - {name: dear, cluster: b, upstream_model: b, cost: 1000,
     metrics_url: http://b/metrics, saturation: {queue: 1}}
  - {name: mid, cluster: c, upstream_model: c, cost: 2,
     metrics_url: http://c/metrics, saturation: {queue: 1}}
default_model: cheap
decisions:
  - {name: all, when: hi, route: [cheap, dear, mid]}
signals:
  - {name: hi, keywords: [hello]}
budgets:
  header: x-tenant
  window_s: 60
  limits: {t: 0.01}  # fits cheap and mid, never dear
  on_exhausted: reject
"""
)


@pytest.mark.parametrize(
    ("queued", "model", "saturated"),
    [
        ((), "cheap", False),
        (("cheap",), "mid", False),  # dear does not fit what the tenant has left: mid takes over
        (("cheap", "mid"), "cheap", True),  # nothing else fits: the least loaded that does stays
    ],
)
def test_a_saturated_model_never_moves_a_request_past_its_budget(
    queued: tuple[str, ...], model: str, saturated: bool
) -> None:
    load = {m: fresh(waiting=3 if m in queued else 0) for m in ("cheap", "dear", "mid")}
    if saturated:
        load["cheap"] = fresh(waiting=2)
    obs = Observation(chat_view("hello " * 50), {"x-tenant": "t"})
    decision = decide(BUDGETED, obs, PoolState(load=load))
    assert decision.chosen is not None and decision.chosen.name == model
    assert (Note("all_candidates_saturated") in decision.notes) == saturated
    assert Rejection("dear", "load", "budget") in decision.rejected or model == "cheap"
