"""The budget filter: the estimated cost must fit what the tenant has left."""

from __future__ import annotations

import pytest

from meritorder.config import RouterConfig, parse_config
from meritorder.policy import Block, Context, Note, PoolState, Rejection, Survivors
from meritorder.policy.filters.budget import BudgetFilter
from tests.helpers import candidates, chat_view, names, pipeline_context

# "hi" with max_tokens 999 is estimated at 1000 tokens: 0.001 on small, 0.003 on large.
POLICY = """
models:
  - {name: small, cluster: a, upstream_model: s, cost: 1}
  - {name: mid, cluster: m, upstream_model: m, cost: 2}
  - {name: large, cluster: b, upstream_model: l, cost: 3}
  - {name: embed, cluster: e, upstream_model: e, cost: 0.1, apis: [embeddings]}
default_model: small
budgets:
  limits: {acme: 0.009}
  on_exhausted: %s
  hard_limit_ratio: 1.5
"""
ACME = {"x-meritorder-tenant": "acme"}


def premium(on_exhausted: str, pool: PoolState) -> tuple[RouterConfig, Context]:
    """Acme's chat request for `large` with max_tokens 999, under `on_exhausted`."""
    config = parse_config(POLICY % on_exhausted)
    request = chat_view(model="large", max_tokens=999)
    return config, pipeline_context(config, request, headers=ACME, pool=pool)


@pytest.mark.parametrize(
    ("on_exhausted", "spent", "expected", "limit"),
    [
        ("step_down", 0.0, ("large",), 0.009),  # fits: the ceiling is the tenant's limit
        ("step_down", 0.006, ("large",), 0.009),  # 0.006 + 0.003 just fits
        ("step_down", 0.0061, ("small",), 0.0135),  # steps down, under the hard limit
        ("step_down", 0.0126, 429, None),  # past the hard limit even stepped down
        ("reject", 0.0061, 429, None),
    ],
)
def test_a_candidate_goes_through_only_if_its_cost_fits(
    on_exhausted: str, spent: float, expected: tuple[str, ...] | int, limit: float | None
) -> None:
    config, ctx = premium(on_exhausted, PoolState(tenant_spent=spent))
    out = BudgetFilter().apply(ctx, candidates(config, "large"))
    assert names(out) == expected
    if isinstance(out, Survivors):
        assert out.budget_limit == pytest.approx(limit)


def test_a_step_down_is_rejected_and_noted_and_caps_the_completion() -> None:
    config, ctx = premium("step_down", PoolState(tenant_spent=0.0061))  # past the limit
    out = BudgetFilter().apply(ctx, candidates(config, "large", "mid"))
    assert isinstance(out, Survivors)
    assert out.rejected == (
        Rejection("large", "budget", "budget"),
        Rejection("mid", "budget", "budget"),
    )
    assert out.notes == (Note("budget", "step_down(0.009)"),)
    assert out.steps.max_tokens == 999  # what it was charged for


def test_the_check_is_on_the_model_the_picker_would_choose() -> None:
    # The first candidate is unhealthy: the second one is what would be sent, and it fits.
    config, ctx = premium("reject", PoolState(tenant_spent=0.0075, unhealthy=frozenset({"large"})))
    assert names(BudgetFilter().apply(ctx, candidates(config, "large", "small"))) == (
        "large",
        "small",
    )


def test_without_budgets_or_a_tenant_nothing_is_checked() -> None:
    config = parse_config(POLICY % "reject")
    ctx = pipeline_context(config, pool=PoolState(tenant_spent=1e9))  # unverified, unlimited
    out = BudgetFilter().apply(ctx, candidates(config, "large"))
    assert isinstance(out, Survivors)
    assert (names(out), out.budget_limit, out.steps.max_tokens) == (("large",), None, None)


def test_an_exhausted_budget_is_a_429_naming_the_tenant_and_the_window() -> None:
    config = parse_config(POLICY % "reject")
    ctx = pipeline_context(
        config, chat_view(model="large"), headers=ACME, pool=PoolState(tenant_spent=0.009)
    )
    out = BudgetFilter().apply(ctx, candidates(config, "large"))
    assert isinstance(out, Block)
    assert (out.status, out.code, out.error_type) == (429, "budget_exhausted", "rate_limit_error")
    assert "'acme'" in out.message and "3600 s" in out.message


def test_a_step_down_only_goes_to_models_serving_the_api() -> None:
    config, ctx = premium("step_down", PoolState(tenant_spent=0.0061))  # past the limit
    # `embed` is the cheapest model of the config, but it serves no chat.
    assert names(BudgetFilter().apply(ctx, candidates(config, "large"))) == ("small",)
