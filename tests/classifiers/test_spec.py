"""`signals.json`: the optional harm threshold and temperatures, and errors that name the field."""

from __future__ import annotations

import pytest

from classifiers.spec import HARM_OUTPUT, OUTPUTS, ModelSpec, SpecError
from tests.classifiers.tiny_signals_model import spec_json

THRESHOLDS = {"prompt_attack": 0.5, "pii_token": 0.5, "difficulty": 0.5}


def test_an_old_spec_has_no_harm_head_and_every_temperature_one() -> None:
    spec = ModelSpec.from_json(spec_json())
    assert not spec.has_harm and spec.thresholds.harmful is None
    assert spec.temperatures == {} and spec.outputs == OUTPUTS


def test_a_harm_threshold_adds_the_harm_output() -> None:
    spec = ModelSpec.from_json(spec_json(thresholds={**THRESHOLDS, "harmful": 0.3}))
    assert spec.has_harm and spec.thresholds.harmful == 0.3
    assert spec.outputs == (*OUTPUTS, HARM_OUTPUT)


def test_temperatures_are_read_per_head_and_a_missing_head_keeps_one() -> None:
    spec = ModelSpec.from_json(spec_json(temperatures={"prompt_attack": 2, "domain": 0.5}))
    assert spec.temperatures == {"prompt_attack": 2.0, "domain": 0.5}


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"thresholds": {**THRESHOLDS, "harmful": 1.0}},
            "'thresholds.harmful' is 1.0; expected (0, 1)",
        ),
        (
            {"thresholds": {**THRESHOLDS, "harmful": "x"}},
            "'thresholds.harmful' is 'x'; expected a number",
        ),
        ({"temperatures": [2.0]}, "'temperatures' is [2.0]; expected an object"),
        ({"temperatures": {"attack": 2.0}}, "'temperatures.attack' names no head; expected one of"),
        (
            {"temperatures": {"harmful": 0}},
            "'temperatures.harmful' is 0; expected a number above 0",
        ),
        ({"temperatures": {"pii": -1}}, "'temperatures.pii' is -1; expected a number above 0"),
        ({"temperatures": {"domain": True}}, "'temperatures.domain' is True; expected a number"),
        ({"temperatures": {"difficulty": float("inf")}}, "'temperatures.difficulty' is inf;"),
    ],
)
def test_a_bad_harm_threshold_or_temperature_names_the_field(
    changes: dict[str, object], problem: str
) -> None:
    with pytest.raises(SpecError) as caught:
        ModelSpec.from_json(spec_json(**changes), source="m/signals.json")
    assert str(caught.value).startswith(f"m/signals.json: {problem}"), str(caught.value)
