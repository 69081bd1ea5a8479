"""The model's contract, read from the `signals.json` shipped next to the ONNX graph."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifiers.calibration import HEADS

MODEL_FILE = "signals.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
SPEC_FILE = "signals.json"

INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("domain_probs", "attack_prob", "difficulty_prob", "pii_probs")
# The harm head's output: only models trained with it have it (and `thresholds.harmful`).
HARM_OUTPUT = "harmful_prob"


class SpecError(ValueError):
    """`signals.json` is missing a field or has one of the wrong shape."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    prompt_attack: float
    pii_token: float
    difficulty: float
    # The attack head on one paragraph or window of a long request (the engine's default when
    # absent: calibrated for the accurate profile; `bench/classifier_sizes.py --calibrate`).
    attack_paragraph: float | None = None
    # The harm head's (absent: the model has none, and the harm signal is unavailable).
    harmful: float | None = None
    # The harm head on one paragraph or window of a long request (absent: the harm score is the
    # sequence row's alone; `bench/classifier_sizes.py --calibrate-harm`).
    harm_paragraph: float | None = None
    # The attack head on one short window of a line longer than a view (absent: no short
    # windows are read; `bench/classifier_sizes.py --calibrate`).
    attack_short: float | None = None
    # The attack head on the sequence row of a request whose last user turn it reads cut to
    # its head and tail (absent: the request's own threshold, `prompt_attack`;
    # `bench/classifier_sizes.py --calibrate`).
    attack_crop: float | None = None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Labels, thresholds and lengths the graph was trained and calibrated with."""

    version: str
    max_length: int
    train_length: int
    domain_labels: tuple[str, ...]
    pii_tags: tuple[str, ...]
    thresholds: Thresholds
    difficulty_pair: dict[str, str]
    # Each head's temperature (`classifiers.calibration`); a head without one keeps T = 1.
    temperatures: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def has_harm(self) -> bool:
        """Whether the model has the harm head (`harmful_prob` and its threshold)."""
        return self.thresholds.harmful is not None

    @property
    def outputs(self) -> tuple[str, ...]:
        """The graph outputs the engine runs, in this order."""
        return (*OUTPUTS, HARM_OUTPUT) if self.has_harm else OUTPUTS

    @classmethod
    def load(cls, path: Path) -> ModelSpec:
        """Read and validate `signals.json`; errors name the file and the field."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_json(data, source=str(path))

    @classmethod
    def from_json(cls, data: Any, source: str = "signals.json") -> ModelSpec:
        if not isinstance(data, dict):
            raise SpecError(f"{source}: must be a JSON object")

        def field(name: str, kind: type | tuple[type, ...]) -> Any:
            value = data.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise SpecError(f"{source}: {name!r} is {value!r}; expected {_kind_name(kind)}")
            return value

        def strings(name: str) -> tuple[str, ...]:
            value = field(name, list)
            if not value or not all(isinstance(v, str) for v in value):
                raise SpecError(f"{source}: {name!r} must be a non-empty list of strings")
            return tuple(value)

        max_length = field("max_length", int)
        if not 8 <= max_length <= 512:
            raise SpecError(f"{source}: 'max_length' is {max_length}; expected 8..512")
        tags = strings("pii_tags")
        if tags[0] != "O" or not all(t[:2] in ("B-", "I-") for t in tags[1:]):
            raise SpecError(f"{source}: 'pii_tags' must be 'O' then BIO tags (B-TYPE, I-TYPE)")
        for tag in tags[1:]:
            if tag[:2] == "B-" and f"I-{tag[2:]}" not in tags:
                raise SpecError(f"{source}: 'pii_tags' has {tag!r} without I-{tag[2:]}")
        raw = field("thresholds", dict)
        thresholds = {}
        for name in ("prompt_attack", "pii_token", "difficulty"):
            value = raw.get(name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise SpecError(f"{source}: 'thresholds.{name}' is {value!r}; expected a number")
            thresholds[name] = float(value)
        for name in (
            "attack_paragraph",
            "harmful",
            "harm_paragraph",
            "attack_short",
            "attack_crop",
        ):
            value = raw.get(name)
            if value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise SpecError(f"{source}: 'thresholds.{name}' is {value!r}; expected a number")
            if not 0 < value < 1:
                raise SpecError(f"{source}: 'thresholds.{name}' is {value}; expected (0, 1)")
            thresholds[name] = float(value)
        pair = data.get("difficulty_pair", {})
        return cls(
            version=field("version", str),
            max_length=max_length,
            train_length=int(data.get("train_length", max_length)),
            domain_labels=strings("domain_labels"),
            pii_tags=tags,
            thresholds=Thresholds(**thresholds),
            difficulty_pair={str(k): str(v) for k, v in pair.items()},
            temperatures=_temperatures(data.get("temperatures", {}), source),
        )


def _temperatures(raw: Any, source: str) -> dict[str, float]:
    """`temperatures`: a positive, finite number per known head; a head left out keeps T = 1."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: 'temperatures' is {raw!r}; expected an object")
    out = {}
    for head, value in raw.items():
        if head not in HEADS:
            raise SpecError(
                f"{source}: 'temperatures.{head}' names no head; expected one of {sorted(HEADS)}"
            )
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise SpecError(
                f"{source}: 'temperatures.{head}' is {value!r}; expected a number above 0"
            )
        out[head] = float(value)
    return out


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "int": "an integer", "list": "a list", "dict": "an object"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)
