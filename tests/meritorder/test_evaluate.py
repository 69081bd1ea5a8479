"""The cost-quality evaluation: baselines, the policy's point and the difficulty sweep."""

from __future__ import annotations

import pytest

from meritorder.config import parse_config
from meritorder.evaluate import score
from tests.helpers import EVAL_ROWS

CONFIG = parse_config("""
models:
  - {name: weak, cluster: a, upstream_model: w, cost: 1}
  - {name: strong, cluster: b, upstream_model: s, cost: 10}
default_model: weak
""")


def test_policy_singles_oracle_and_random_points() -> None:
    report = score(CONFIG, EVAL_ROWS, ["strong", "weak", "weak", None], [0.0] * 4, None)
    assert (report.policy.accuracy, report.policy.cost) == (0.5, (10 + 1 + 1 + 0) / 4)
    assert {p.name: (p.accuracy, p.cost) for p in report.singles} == {
        "weak": (0.25, 1),
        "strong": (0.75, 10),
    }
    # oracle: cheapest correct model per row, cheapest model when none is correct
    assert (report.oracle.accuracy, report.oracle.cost) == (0.75, (10 + 10 + 1 + 1) / 4)
    assert (report.random.accuracy, report.random.cost) == (0.5, 5.5)
    assert report.chosen == {"blocked": 1, "strong": 1, "weak": 2}


def test_a_perfect_difficulty_score_recovers_the_gap_with_the_fewest_strong_calls() -> None:
    perfect = score(CONFIG, EVAL_ROWS, ["weak"] * 4, [0.9, 0.8, 0.1, 0.0], ("weak", "strong")).sweep
    assert perfect is not None
    assert perfect.cpt == {0.5: 0.25, 0.8: 0.5}
    # PGR over shares 0, .25, .5, .75, 1 is 0, .5, 1, 1, 1: area = (.25 + .75 + 1 + 1) / 4
    assert perfect.apgr == pytest.approx(0.75)
    backwards = score(
        CONFIG, EVAL_ROWS, ["weak"] * 4, [0.0, 0.1, 0.8, 0.9], ("weak", "strong")
    ).sweep
    assert backwards is not None and backwards.apgr < 0.5 < perfect.apgr
