"""The shipped learning examples: they validate, and they were fitted on rows the replay lacks."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from app.cli import main
from meritorder.config import load_config

EXAMPLES = Path("examples")
LEARNING = [
    EXAMPLES / "mmlu-pro-learning.yaml",
    EXAMPLES / "llmrouter-learning.yaml",
    EXAMPLES / "llmrouter-pool.yaml",
    EXAMPLES / "llmrouter-contextual.yaml",
]


def make_pool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_pool", EXAMPLES / "make_pool.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", LEARNING, ids=lambda p: p.name)
def test_a_shipped_learning_example_validates(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(path)]) in (0, None)
    assert f"{path}: ok" in capsys.readouterr().out


def test_the_llmrouter_pools_are_fitted_on_rows_the_replay_does_not_hold() -> None:
    pool = make_pool()
    source = pool.LLMR / "llmrouter_correctness.jsonl"
    if not source.exists():
        pytest.skip(f"{source} (the shared data) is not on this machine")
    replay = [json.loads(line) for line in (EXAMPLES / "data" / "llmrouter_shift.jsonl").open()]
    replay_ids = {r["id"] for r in replay}
    rows = [json.loads(line) for line in source.open()]
    fit = [r for r in rows if r["task"] in pool.FIT_TASKS and r["id"] not in replay_ids]
    # The stream starts on held-out rows of the fitted tasks, then shifts to the others for good.
    tasks = [r["task"] for r in replay]
    first_shift = next(i for i, t in enumerate(tasks) if t in pool.SHIFT_TASKS)
    assert first_shift > 0 and set(tasks[:first_shift]) <= set(pool.FIT_TASKS)
    assert set(tasks[first_shift:]) <= set(pool.SHIFT_TASKS)
    assert len(fit) + first_shift == sum(r["task"] in pool.FIT_TASKS for r in rows)

    learning = load_config(EXAMPLES / "llmrouter-learning.yaml")
    (decision,) = learning.decisions
    assert decision.learn is not None
    models = {m.name for m in learning.models}
    assert set(decision.route) == models
    for model, mean in decision.learn.prior.means.items():
        fitted = sum(r["correct"][model] for r in fit) / len(fit)
        assert mean == pytest.approx(fitted, abs=0.0005), model
    # The static pool: the cheapest model within a point of the best on the same fit rows.
    static = load_config(EXAMPLES / "llmrouter-pool.yaml")
    accuracy = {m: sum(r["correct"][m] for r in fit) / len(fit) for m in models}
    costs = {m.name: m.cost for m in static.models}
    within = [m for m in models if accuracy[m] >= max(accuracy.values()) - pool.TOLERANCE]
    assert static.decisions[0].route == (min(within, key=lambda m: costs[m]),)


def test_the_contextual_llmrouter_pool_shares_out_the_fit_rows_and_shrinks_each_prior() -> None:
    pool = make_pool()
    source = pool.LLMR / "llmrouter_correctness.jsonl"
    if not source.exists():
        pytest.skip(f"{source} (the shared data) is not on this machine")
    replay_ids = {
        json.loads(line)["id"] for line in (EXAMPLES / "data" / "llmrouter_shift.jsonl").open()
    }
    fit = [
        r
        for r in map(json.loads, source.open())
        if r["task"] in pool.FIT_TASKS and r["id"] not in replay_ids
    ]
    path = EXAMPLES / "llmrouter-contextual.yaml"
    config = load_config(path)
    # One decision per domain signal, each over every model: the bandit's contexts are domains.
    assert [d.when for d in config.decisions] == [s.name for s in config.signals]
    assert {s.type for s in config.signals} == {"domain"}
    counts = [int(n) for n in re.findall(r"prior:  # (\d+) fit rows", path.read_text())]
    assert len(counts) == len(config.decisions) and sum(counts) == len(fit)
    models = [m.name for m in config.models]
    pooled = {m: sum(r["correct"][m] for r in fit) / len(fit) for m in models}
    for decision, n in zip(config.decisions, counts, strict=True):
        assert decision.learn is not None and set(decision.route) == set(models)
        for model, mean in decision.learn.prior.means.items():
            # Undo the shrinkage: what is left is a whole number of right answers out of n.
            right = mean * (n + pool.SHRINK) - pool.SHRINK * pooled[model]
            assert -0.5 < right < n + 0.5, (decision.name, model)
            assert abs(right - round(right)) < 0.0005 * (n + pool.SHRINK) + 1e-9, (
                decision.name,
                model,
            )
