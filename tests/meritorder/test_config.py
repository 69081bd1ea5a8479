from pathlib import Path

import pytest

from meritorder.config import ConfigError, load_config, parse_config
from tests.helpers import REPO

VALID = """
models:
  - {name: small, cluster: c-small, upstream_model: s, cost: 0.1}
  - {name: large, cluster: c-large, upstream_model: l, cost: 3}
default_model: small
signals:
  - {name: code, keywords: [python]}
decisions:
  - {name: code, when: code, route: [large]}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return caught.value.problems


BAD_EXAMPLE = Path("examples/bad.yaml")  # the README's `validate` example: wrong on purpose


def test_shipped_configs_are_valid() -> None:
    for path in [Path("deploy/config.yaml"), *Path("examples").glob("*.yaml")]:
        if path != BAD_EXAMPLE:
            load_config(path)


# Every policy the project ships (the demo, the no-classifier demo, the examples, Kubernetes).
SHIPPED = [
    REPO / "deploy" / "config.yaml",
    REPO / "deploy" / "keywords.yaml",
    *sorted((REPO / "deploy" / "kubernetes").rglob("policy.yaml")),
    *(p for p in sorted((REPO / "examples").glob("*.yaml")) if p.name != BAD_EXAMPLE.name),
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_no_shipped_policy_reads_the_difficulty_signal(path: Path) -> None:
    # It does not predict where the strong model wins on unseen traffic (README, "What a
    # policy buys"): the type stays in the language, off in what ships.
    assert [s.name for s in load_config(path).signals if s.type == "difficulty"] == []


@pytest.mark.parametrize(
    "path", [REPO / "deploy" / "config.yaml", REPO / "examples" / "enterprise.yaml"]
)
def test_the_shipped_policies_refuse_harmful_requests_with_their_own_message(path: Path) -> None:
    config = load_config(path)
    harmful = [s for s in config.signals if s.type == "harmful"]
    attacks = [s.name for s in config.signals if s.type == "prompt_attack"]
    assert len(harmful) == 1 and harmful[0].required
    (rule,) = [d for d in config.decisions if d.when == harmful[0].name]
    (attack_rule,) = [d for d in config.decisions if d.when in attacks]
    assert rule.block is not None and attack_rule.block is not None
    assert rule.block.status == 403 and rule.block.message != attack_rule.block.message
    assert (
        attack_rule.priority
        > rule.priority
        > max(d.priority for d in config.decisions if d.block is None)
    )


def test_schema_and_reference_problems_are_reported_in_one_run() -> None:
    text = VALID.replace("cost: 3", "cots: 3").replace("route: [large]", "route: [lage]")
    assert problems(text) == [
        "models[1].cost: required field is missing; add it",
        "models[1].cots: unknown field; did you mean 'cost'?",
        "decisions[0].route[0]: unknown model 'lage'; did you mean 'large'?",
    ]


def test_a_reference_check_on_a_broken_file_reads_what_it_can() -> None:
    text = VALID.replace("default_model: small", "default_model: tiny").replace(
        "models:", "budgets: {window_s: 0, step_down_to: [smal]}\nmodels:"
    )
    assert problems(text) == [
        "budgets.window_s: Input should be greater than 0 (got 0)",
        "default_model: unknown model 'tiny'; define it under 'models' (known: ['small', 'large'])",
        "budgets.step_down_to[0]: unknown model 'smal'; did you mean 'small'?",
    ]


def test_the_shipped_bad_example_shows_every_kind_of_problem_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(BAD_EXAMPLE)
    assert caught.value.problems == [
        "models[1].cost: required field is missing; add it",
        "models[1].boundary: Input should be 'private' or 'external' (got 'extrenal'); "
        "did you mean 'external'?",
        "models[1].cots: unknown field; did you mean 'cost'?",
        "decisions[0].route[0]: unknown model 'lage'; did you mean 'large'?",
        "decisions[0].when: unknown signal 'hard'; did you mean 'hard_math'?",
    ]


def test_a_misspelt_field_names_the_field_and_suggests_the_fix() -> None:
    assert sorted(problems(VALID.replace("cost: 3", "cots: 3"))) == [
        "models[1].cost: required field is missing; add it",
        "models[1].cots: unknown field; did you mean 'cost'?",
    ]


def test_an_unknown_model_reference_names_where_and_suggests_the_closest() -> None:
    found = problems(VALID.replace("route: [large]", "route: [lage]"))
    assert found == ["decisions[0].route[0]: unknown model 'lage'; did you mean 'large'?"]


def test_every_reference_problem_is_reported_at_once() -> None:
    text = VALID.replace("default_model: small", "default_model: tiny").replace(
        "when: code", "when: kode"
    )
    found = problems(text)
    assert any(p.startswith("default_model: unknown model 'tiny'") for p in found)
    assert any(
        p.startswith("decisions[0].when: unknown signal 'kode'; did you mean 'code'") for p in found
    )


def test_a_bad_value_shows_what_was_given() -> None:
    (problem,) = problems(VALID.replace("cost: 0.1", "cost: -1"))
    assert (
        problem.startswith("models[0].cost:")
        and "greater than or equal to 0" in problem
        and "-1" in problem
    )


def test_an_invalid_regex_is_named_with_its_position() -> None:
    (problem,) = problems(VALID.replace("keywords: [python]", "patterns: ['(']"))
    assert problem.startswith("signals[0].patterns:") and "'('" in problem


def test_a_rule_with_an_unknown_operator_explains_the_allowed_forms() -> None:
    (problem,) = problems(VALID.replace("when: code", "when: {either: [code]}"))
    assert "exactly one of 'all', 'any', 'not'" in problem


def test_a_decision_needs_exactly_one_action() -> None:
    (problem,) = problems(VALID.replace("route: [large]", "route: [large], block: {status: 403}"))
    assert "exactly one action" in problem


def test_duplicate_names_are_rejected() -> None:
    text = VALID.replace(
        "cluster: c-large, upstream_model: l", "cluster: c-large, upstream_model: l"
    ).replace("name: large", "name: small")
    assert any("'small' is used more than once" in p for p in problems(text))


def test_not_yaml_and_not_a_mapping_are_clear() -> None:
    assert problems("models: [")[0].startswith("not valid YAML")
    assert "YAML mapping" in problems("- a\n- b")[0]


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
