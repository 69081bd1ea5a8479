"""`learn:` on a decision: how a decision that learns picks among its `route` candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from meritorder.jsonl import jsonl_values


class _Strict(BaseModel):
    # The same strictness as meritorder.config's models: unknown fields are errors.
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriorConfig(_Strict):
    """What a decision believes before it sees an outcome: per-model accuracy from an eval
    file (JSONL rows with `correct: {model: score}`, the `meritorder eval` format) or inline."""

    file: Path | None = Field(
        default=None, description="eval-format JSONL; relative paths from the working directory"
    )
    where: dict[str, str] = Field(
        default_factory=dict, description="use only the file's rows whose fields equal these"
    )
    means: dict[str, float] = Field(
        default_factory=dict, description="inline prior accuracy per model, in [0, 1]"
    )
    # A pseudo-count, capped: a prior worth `weight` observations, so that data overturns it.
    weight: float = Field(default=10.0, ge=0, le=10_000)

    @model_validator(mode="after")
    def _one_source(self) -> PriorConfig:
        if self.file is not None and self.means:
            raise ValueError("prior: give either 'file' or 'means', not both")
        if self.file is None and self.where:
            raise ValueError("prior.where filters the rows of prior.file; add 'file'")
        bad = {m: v for m, v in self.means.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"prior.means: {bad} must be accuracies in [0, 1]")
        if self.file is not None:
            # Read once at load time: a policy that cannot find its prior fails to load.
            object.__setattr__(self, "means", _means_from_file(self.file, self.where))
        return self


def _means_from_file(path: Path, where: dict[str, str]) -> dict[str, float]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"prior.file: cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for number, row, error in jsonl_values(lines):
        if error is not None:
            raise ValueError(f"prior.file line {number}: invalid JSON ({error.msg})") from error
        correct = row.get("correct") if isinstance(row, dict) else None
        if not isinstance(correct, dict):
            raise ValueError(f"prior.file line {number}: needs a 'correct' object of model: score")
        if any(str(row.get(k)) != v for k, v in where.items()):
            continue
        for model, score in correct.items():
            sums[model] = sums.get(model, 0.0) + min(1.0, max(0.0, float(score)))
            counts[model] = counts.get(model, 0) + 1
    if not counts:
        raise ValueError(f"prior.file: no row of {str(path)!r} matches where={where}")
    return {m: sums[m] / counts[m] for m in sorted(counts)}


class ExploreConfig(_Strict):
    """Bounds on the share of picks that differ from the greedy (best posterior mean) choice."""

    min: float = Field(default=0.0, ge=0, le=1, description="floor: explore at least this share")
    max: float = Field(default=0.2, ge=0, le=1, description="ceiling: never explore more")

    @model_validator(mode="after")
    def _ordered(self) -> ExploreConfig:
        if self.min > self.max:
            raise ValueError(f"explore: min ({self.min}) must not exceed max ({self.max})")
        return self


class HalfLife(_Strict):
    """Evidence older than one half-life counts half: estimates follow drift."""

    value: float = Field(gt=0)
    unit: Literal["observations", "seconds"] = "observations"


class DetectConfig(_Strict):
    """Change detection: a two-sided CUSUM of each arm's prediction errors (reward minus the
    posterior mean before it; under the relative model, minus level + offset: the residual);
    past `threshold`, the context's evidence and prior are shrunk to at most `keep`
    observations each (with `idle`, fewer for an arm the longer ago it was last observed), so
    exploration re-opens where the stream changed."""

    threshold: float = Field(
        default=16.0, gt=0, description="CUSUM alarm level, in reward units (higher: fewer resets)"
    )
    drift: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="error per observation ignored: half the smallest shift worth a reset",
    )
    keep: float = Field(
        default=30.0, gt=0, description="observations each arm (and the prior) keeps on a reset"
    )
    idle: float | None = Field(
        default=300.0,
        gt=0,
        description="on a reset, an arm last observed this many observations ago keeps half of "
        "keep (twice as long ago: a quarter), so an arm whose evidence is old is tried again; "
        "null: every arm keeps keep",
    )


class LearnConfig(_Strict):
    """A decision that learns which of its `route` candidates to pick (Thompson sampling)."""

    # absolute: each arm's quality is the mean of its rewards. relative: the context keeps a
    # level (the stream's current difficulty, learned from every arm's rewards) and each arm
    # an offset against it, so a change common to every arm moves the level, not one arm.
    model: Literal["absolute", "relative"] = "absolute"
    # relative: the share of each prediction error (reward - level - offset) the level takes.
    level_step: float = Field(default=0.02, gt=0, le=1)

    objective: Literal["quality_minus_cost", "within_epsilon"] = "within_epsilon"
    # lambda of `quality - lambda * cost`, cost divided by the dearest candidate's (so in [0, 1]).
    cost_weight: float = Field(default=0.1, ge=0)
    # within_epsilon: the cheapest candidate whose sampled quality is within epsilon of the best.
    epsilon: float = Field(default=0.01, ge=0, le=1)
    context: Literal["decision", "domain"] = "decision"
    prior: PriorConfig = PriorConfig()
    explore: ExploreConfig = ExploreConfig()
    half_life: HalfLife | None = None
    # Reset the context's evidence when an arm's rewards leave its posterior (None: never).
    detect: DetectConfig | None = None
    # What settles an observation: the client's feedback score, or the upstream's success.
    reward: Literal["feedback", "success"] = "feedback"

    @model_validator(mode="before")
    @classmethod
    def _short_half_life(cls, data: object) -> object:
        # `half_life: 500` means 500 observations.
        if isinstance(data, dict) and isinstance(data.get("half_life"), int | float):
            return {**data, "half_life": {"value": data["half_life"]}}
        return data

    @model_validator(mode="after")
    def _step_needs_relative(self) -> LearnConfig:
        if "level_step" in self.model_fields_set and self.model != "relative":
            raise ValueError(
                "learn.level_step moves the relative model's level: add 'model: relative' "
                "or remove level_step"
            )
        return self


class LearningStoreConfig(_Strict):
    """Where learned estimates live: this process, a local SQLite file, or a shared Redis."""

    store: str = Field(
        default="memory",
        pattern=r"^(memory|sqlite:.+|rediss?://.+)$",
        description="memory | sqlite:PATH | redis://host:port/db",
    )
    on_unavailable: Literal["local", "fail"] = Field(
        default="local", description="Redis unreachable: learn in this process, or fail"
    )


def reward_of(learn: LearnConfig, *, score: float | None, status: int | None) -> float | None:
    """The reward an outcome gives under `learn.reward` (None: this outcome settles nothing)."""
    if learn.reward == "feedback":
        return None if score is None else min(1.0, max(0.0, score))
    if status is None:
        return None
    return 1.0 if 200 <= status < 300 else 0.0
