"""The cost-quality evaluation: baselines, the policy's point and the difficulty sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from meritorder.config import parse_config
from meritorder.evaluate import score

CONFIG = parse_config("""
models:
  - {name: weak, cluster: a, upstream_model: w, cost: 1}
  - {name: strong, cluster: b, upstream_model: s, cost: 10}
default_model: weak
""")

# strong helps on rows 0 and 1 only; both are right on row 2; neither on row 3.
ROWS = [
    {"id": 0, "text": "a", "correct": {"weak": 0, "strong": 1}},
    {"id": 1, "text": "b", "correct": {"weak": 0, "strong": 1}},
    {"id": 2, "text": "c", "correct": {"weak": 1, "strong": 1}},
    {"id": 3, "text": "d", "correct": {"weak": 0, "strong": 0}},
]


def test_policy_singles_oracle_and_random_points() -> None:
    report = score(CONFIG, ROWS, ["strong", "weak", "weak", None], [0.0] * 4, None)
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
    perfect = score(CONFIG, ROWS, ["weak"] * 4, [0.9, 0.8, 0.1, 0.0], ("weak", "strong")).sweep
    assert perfect is not None
    assert perfect.cpt == {0.5: 0.25, 0.8: 0.5}
    # PGR over shares 0, .25, .5, .75, 1 is 0, .5, 1, 1, 1: area = (.25 + .75 + 1 + 1) / 4
    assert perfect.apgr == pytest.approx(0.75)
    backwards = score(CONFIG, ROWS, ["weak"] * 4, [0.0, 0.1, 0.8, 0.9], ("weak", "strong")).sweep
    assert backwards is not None and backwards.apgr < 0.5 < perfect.apgr


def test_eval_command_prints_the_table_and_writes_json_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "p.yaml"
    config.write_text("""
models:
  - {name: weak, cluster: a, upstream_model: w, cost: 1}
  - {name: strong, cluster: b, upstream_model: s, cost: 10}
default_model: weak
signals: [{name: hard, keywords: [b]}]
decisions: [{name: hard, when: hard, route: [strong]}]
""")
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps({"id": r["id"], "correct": r["correct"]}) for r in ROWS))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"id": r["id"], "text": r["text"]}) for r in ROWS))
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    args = [
        "eval",
        "--config",
        str(config),
        "--data",
        str(data),
        "--prompts",
        str(prompts),
        "--pair",
        "weak,strong",
        "--json",
        str(out_json),
        "--plot",
        str(out_png),
    ]
    assert main(args) == 0
    assert "| policy | 0.500 | 3.25 | 32% |" in capsys.readouterr().out
    figures = json.loads(out_json.read_text())
    assert figures["vs_best_single"] == {
        "model": "strong",
        "accuracy_delta": -0.25,
        "cost_ratio": 0.325,
    }
    assert out_png.read_bytes().startswith(b"\x89PNG")


def test_eval_without_prompts_says_how_to_fix_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"id": 1, "correct": {"weak": 1}}))
    assert main(["eval", "--config", "deploy/config.yaml", "--data", str(data)]) == 2
    assert "pass --prompts" in capsys.readouterr().err
