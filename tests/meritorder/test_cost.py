"""The one cost formula."""

from __future__ import annotations

import pytest

from meritorder.cost import cost


@pytest.mark.parametrize(
    ("per_million", "prompt", "completion", "expected"),
    [(1.0, 1_000_000, 0, 1.0), (3.0, 100, 900, 0.003), (0.0, 10, 10, 0.0), (2.0, 0, 0, 0.0)],
)
def test_cost_is_all_tokens_at_the_models_price_per_million(
    per_million: float, prompt: int, completion: int, expected: float
) -> None:
    assert cost(per_million, prompt, completion) == pytest.approx(expected)
