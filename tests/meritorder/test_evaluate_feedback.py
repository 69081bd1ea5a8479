"""`meritorder eval --feedback` on small synthetic files where the best model is known."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from app.cli import main
from meritorder import evaluate
from meritorder.config import parse_config
from meritorder.router import Router

POLICY = """
models:
  - {name: dear, cluster: dear, upstream_model: dear, cost: 10}
  - {name: cheap, cluster: cheap, upstream_model: cheap, cost: 1}
default_model: dear
signals:
  - {name: question, type: keyword, keywords: [question]}
decisions:
  - name: ask
    when: question
    route: [dear, cheap]
    learn:
      objective: within_epsilon
      epsilon: 0.01
      prior: {means: {dear: 0.9, cheap: 0.2}, weight: 10}
"""
STATIC = POLICY.split("    learn:")[0]


def rows(n: int, rates: dict[str, float], seed: int = 3) -> list[dict[str, object]]:
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "text": f"question {i}",
            "correct": {m: int(rng.random() < p) for m, p in rates.items()},
        }
        for i in range(n)
    ]


# The prior believes `dear`; the data says `cheap` is better and a tenth of the cost.
SHIFTED = {"dear": 0.4, "cheap": 0.8}


async def test_the_replay_learns_the_better_cheaper_model_against_its_prior() -> None:
    data = rows(600, SHIFTED)
    report = await evaluate.evaluate_feedback(Router(parse_config(POLICY)), data, None)
    fb = report.feedback
    assert fb is not None and fb.best_single == "cheap" and fb.learned == 600
    assert fb.windows[0].share.get("dear", 0) > 0.2  # it started on its prior
    assert fb.windows[-1].share["cheap"] >= 0.9  # and ended on what the outcomes said
    dear = next(p for p in report.singles if p.name == "dear")
    assert report.policy.accuracy > dear.accuracy + 0.25  # far better than keeping its prior
    assert fb.regret == sum(r["correct"]["cheap"] for r in data) - round(
        report.policy.accuracy * 600
    )
    assert [w.end for w in fb.windows] == list(range(60, 601, 60))


async def test_a_policy_that_does_not_learn_keeps_its_choice() -> None:
    data = rows(200, SHIFTED)
    report = await evaluate.evaluate_feedback(Router(parse_config(STATIC)), data, None, windows=4)
    assert report.feedback is not None and report.feedback.learned == 0
    assert all(w.share == {"dear": 1.0} for w in report.feedback.windows)
    assert report.feedback.regret > 0  # the static choice pays for not learning


async def test_each_decision_is_made_before_its_outcome_is_revealed() -> None:
    # The first row's outcome cannot change the first decision: the prior alone decides it.
    data = rows(1, {"dear": 0.0, "cheap": 1.0})
    report = await evaluate.evaluate_feedback(Router(parse_config(POLICY)), data, None)
    assert report.chosen == {"dear": 1}


def test_the_cli_keeps_the_json_shape_and_adds_feedback(tmp_path: Path) -> None:
    config, data = tmp_path / "p.yaml", tmp_path / "d.jsonl"
    config.write_text(POLICY)
    data.write_text("\n".join(json.dumps(r) for r in rows(300, SHIFTED)))
    out, plot = tmp_path / "r.json", tmp_path / "curve.png"
    argv = ["eval", "--config", str(config), "--data", str(data), "--json", str(out)]
    assert main([*argv, "--feedback", "--windows", "5", "--plot", str(plot)]) == 0
    got = json.loads(out.read_text())
    assert {"rows", "policy", "singles", "oracle", "random", "chosen", "vs_best_single"} <= set(got)
    feedback = got["feedback"]
    assert feedback["best_single"] == "cheap" and len(feedback["curve"]) == 5
    assert set(feedback["curve"][0]) == {
        "end",
        "accuracy",
        "cost",
        "regret",
        "share",
        "best_accuracy",
    }
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main(argv) == 0  # without --feedback: the report as before
    assert "feedback" not in json.loads(out.read_text())


def test_windows_below_one_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, data = tmp_path / "p.yaml", tmp_path / "d.jsonl"
    config.write_text(POLICY)
    data.write_text(json.dumps(rows(1, SHIFTED)[0]))
    code = main(
        ["eval", "--config", str(config), "--data", str(data), "--feedback", "--windows", "0"]
    )
    assert code != 0
    assert "--windows 0: use 1 or more" in capsys.readouterr().err


async def test_the_same_replay_makes_the_same_decisions() -> None:
    data = rows(300, {"dear": 0.6, "cheap": 0.6})  # close arms: the draws decide
    replays = [
        await evaluate.evaluate_feedback(Router(parse_config(POLICY), seed_key=b"k"), data, None)
        for _ in range(2)
    ]
    first, again = replays
    assert first.feedback is not None and again.feedback is not None
    assert first.feedback.windows == again.feedback.windows
    assert first.feedback.explored == again.feedback.explored


async def test_the_replay_counts_the_change_detectors_resets() -> None:
    # dear is right until row 400, then cheap is: the played arm's drop resets the context.
    detecting = POLICY.replace("weight: 10}", "weight: 10}\n      detect: {}")
    before, after = {"dear": 0.9, "cheap": 0.2}, {"dear": 0.2, "cheap": 0.9}
    data = rows(400, before) + rows(400, after, seed=4)
    report = await evaluate.evaluate_feedback(Router(parse_config(detecting)), data, None)
    fb = report.feedback
    assert fb is not None and fb.resets >= 1 and fb.to_json()["resets"] == fb.resets
    assert f"{fb.explored} explored, {fb.resets} resets)" in fb.table()[0]
    assert fb.windows[-1].share["cheap"] >= 0.9
    plain = await evaluate.evaluate_feedback(Router(parse_config(POLICY)), data, None)
    assert plain.feedback is not None and plain.feedback.resets == 0
    assert "resets" not in plain.feedback.table()[0]  # without detection: the line as before
