"""The pipeline: the rule's candidates, through every filter in order, to the decision's picker."""

from __future__ import annotations

import pytest

from meritorder.config import ConfigError, parse_config
from meritorder.policy import Blocked, Observation, PoolState, Rejection, Routed, decide
from meritorder.policy.filters import FILTERS
from meritorder.policy.pickers import PICKERS
from tests.conftest import Pii, chat_view, signals_of

POLICY = """
models:
  - {name: small, cluster: a, upstream_model: s, cost: 1}
  - {name: mid, cluster: b, upstream_model: m, cost: 2}
  - {name: gpt, cluster: c, upstream_model: g, cost: 0.5, boundary: external}
  - {name: embed, cluster: e, upstream_model: e, cost: 0.1, apis: [embeddings]}
default_model: small
signals:
  - {name: code, keywords: [python]}
  - {name: cheap, keywords: [cheap]}
decisions:
  - {name: code, priority: 10, when: code, route: [mid, gpt, small]}
  - {name: thrifty, when: cheap, route: [mid, gpt, small], pick: cheapest}
boundaries:
  - {name: cards, pii_types: [CREDIT_CARD]}
"""


def run(text: str, pool: PoolState | None = None, **kwargs: object) -> Routed | Blocked:
    config = parse_config(POLICY)
    return decide(
        config, Observation(chat_view(text, **kwargs), {}, signals_of()), pool or PoolState()
    )  # type: ignore[arg-type]


def test_the_filters_run_in_their_documented_order() -> None:
    assert [f.name for f in FILTERS] == ["api", "pii", "boundaries", "budget", "health", "load"]
    assert list(PICKERS) == ["first", "cheapest", "scored", "headroom"]


@pytest.mark.parametrize(
    ("text", "unhealthy", "expected"),
    [
        ("python", (), "mid"),  # pick: first
        ("cheap", (), "gpt"),  # pick: cheapest
        ("cheap", ("gpt",), "small"),  # the cheapest of the survivors
        ("python", ("mid",), "gpt"),
    ],
)
def test_the_decisions_picker_chooses_among_the_survivors(
    text: str, unhealthy: tuple[str, ...], expected: str
) -> None:
    decision = run(text, PoolState(unhealthy=frozenset(unhealthy)))
    assert isinstance(decision, Routed) and decision.model.name == expected


def test_rejections_of_every_filter_add_up_on_the_decision() -> None:
    config = parse_config(POLICY)
    card = signals_of(pii=(Pii("CREDIT_CARD", 0, 4),))
    obs = Observation(chat_view("cheap"), {}, card)
    decision = decide(config, obs, PoolState(unhealthy=frozenset({"small"})))
    assert isinstance(decision, Routed) and decision.model.name == "mid"
    assert decision.rejected == (
        Rejection("gpt", "boundaries", "boundary", "cards", ("CREDIT_CARD",)),
        Rejection("small", "health", "unhealthy"),
    )


def test_an_auto_embeddings_request_goes_to_a_model_serving_embeddings() -> None:
    decision = run("python", api="embeddings")
    assert isinstance(decision, Routed) and decision.model.name == "embed"
    assert decision.rejected[0] == Rejection("mid", "api", "unsupported_api")


def test_an_explicit_model_not_serving_the_api_is_a_400() -> None:
    decision = run("hi", model="small", api="embeddings")
    assert isinstance(decision, Blocked)
    assert (decision.rule, decision.status, decision.code) == ("explicit", 400, "unsupported_api")


def test_an_unknown_picker_is_a_load_error_with_a_hint() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(POLICY.replace("pick: cheapest", "pick: cheapst"))
    assert caught.value.problems == [
        "decisions[1].pick: unknown picker 'cheapst'; did you mean 'cheapest'?"
    ]


def test_no_private_model_serving_the_api_under_a_boundary_is_a_503_not_a_leak() -> None:
    config = parse_config(
        """
models:
  - {name: local, cluster: a, upstream_model: l, cost: 1}
  - {name: cloud-embed, cluster: b, upstream_model: e, cost: 1, boundary: external,
     apis: [embeddings]}
default_model: local
boundaries:
  - {name: cards, pii_types: [CREDIT_CARD]}
"""
    )
    card = signals_of(pii=(Pii("CREDIT_CARD", 0, 4),))
    decision = decide(config, Observation(chat_view("4111", api="embeddings"), {}, card))
    assert isinstance(decision, Blocked)
    assert (decision.status, decision.code) == (503, "no_model")
    assert decision.rejected == (
        Rejection("local", "api", "unsupported_api"),
        Rejection("cloud-embed", "boundaries", "boundary", "cards", ("CREDIT_CARD",)),
    )
