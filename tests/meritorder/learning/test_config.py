"""`learn:` and `learning:` in a policy file: errors name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from meritorder.config import ConfigError, parse_config
from meritorder.learning import bandit
from meritorder.learning.config import LearnConfig, reward_of

BASE = """
models:
  - {name: a, cluster: a, upstream_model: a, cost: 2}
  - {name: b, cluster: b, upstream_model: b, cost: 1}
default_model: a
signals: [{name: s, type: keyword, keywords: [x]}]
decisions:
  - {name: d, when: s, route: [a, b], learn: LEARN}
"""


def policy(learn: str, extra: str = "") -> str:
    return BASE.replace("LEARN", learn) + extra


def test_a_valid_learning_policy_loads_with_its_store() -> None:
    config = parse_config(policy("{half_life: 300}", "learning: {store: 'sqlite:/tmp/x.db'}"))
    learn = config.decisions[0].learn
    assert learn is not None and learn.half_life is not None
    assert learn.half_life.value == 300 and learn.half_life.unit == "observations"
    assert config.learning.store == "sqlite:/tmp/x.db"


@pytest.mark.parametrize(
    ("learn", "message"),
    [
        ("{objective: cheapest}", r"decisions\[0\]\.learn\.objective: .*'within_epsilon'"),
        ("{explore: {min: 0.5, max: 0.1}}", r"explore: min \(0.5\) must not exceed max \(0.1\)"),
        ("{prior: {means: {a: 1.5}}}", r"prior.means: .* must be accuracies in \[0, 1\]"),
        ("{prior: {file: /nonexistent.jsonl}}", r"prior.file: cannot read '/nonexistent.jsonl'"),
        ("{prior: {where: {category: math}}}", r"prior.where filters the rows of prior.file"),
        ("{epsilon: 2}", r"decisions\[0\]\.learn\.epsilon"),
        ("{detect: {threshold: 0}}", r"decisions\[0\]\.learn\.detect\.threshold: .*greater than 0"),
        ("{detect: {drift: 1.5}}", r"decisions\[0\]\.learn\.detect\.drift: .*less than 1"),
        ("{model: hierarchical}", r"decisions\[0\]\.learn\.model: .*'absolute' or 'relative'"),
        (
            "{level_step: 0.1}",
            r"learn.level_step moves the relative model's level: add 'model: relative'",
        ),
        (
            "{model: relative, level_step: 0}",
            r"decisions\[0\]\.learn\.level_step: .*greater than 0",
        ),
        (
            "{detect: {window: 50}}",
            r"detect\.window: unknown field; allowed fields: threshold, drift, keep",
        ),
    ],
)
def test_a_bad_learn_block_is_named(learn: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(policy(learn))


def test_detection_is_off_unless_asked_and_its_defaults_are_the_shipped_ones() -> None:
    assert LearnConfig().detect is None
    detect = parse_config(policy("{detect: {}}")).decisions[0].learn.detect  # type: ignore[union-attr]
    assert detect is not None
    assert (detect.threshold, detect.drift, detect.keep, detect.idle) == (16, 0.05, 30, 300)


def test_the_detectors_idle_reaches_the_stores_rules_and_null_turns_it_off() -> None:
    for learn, idle in (("{detect: {idle: 100}}", 100), ("{detect: {idle: null}}", None)):
        detect = bandit.rules(parse_config(policy(learn)).decisions[0].learn).detect
        assert detect is not None and detect.idle == idle


def test_the_model_is_absolute_unless_asked_and_relative_takes_its_step() -> None:
    assert LearnConfig().model == "absolute"
    learn = parse_config(policy("{model: relative, level_step: 0.02}")).decisions[0].learn
    assert learn is not None and (learn.model, learn.level_step) == ("relative", 0.02)


def test_a_bad_store_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"learning\.store"):
        parse_config(policy("{}", "learning: {store: 'postgres://x'}"))


def test_the_reward_mapping_reads_feedback_or_upstream_success() -> None:
    feedback, success = LearnConfig(reward="feedback"), LearnConfig(reward="success")
    assert reward_of(feedback, score=0.7, status=500) == 0.7
    assert reward_of(feedback, score=None, status=200) is None
    assert reward_of(success, score=None, status=200) == 1.0
    assert reward_of(success, score=None, status=503) == 0.0


def test_serve_refuses_a_bad_learning_store_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(policy("{}"))
    code = main(["serve", "--config", str(config), "--learning-store", "mysql:x"])
    assert code == 2
    assert "use memory, sqlite:PATH or redis://host:port/db" in capsys.readouterr().err
