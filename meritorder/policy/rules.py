"""Signals and rules: which signals fire, and which decisions' rules hold over them."""

from __future__ import annotations

from collections.abc import Mapping

from meritorder.config import AllOf, AnyOf, DecisionConfig, NotOf, RouterConfig, Rule
from meritorder.policy.observation import Observation


def evaluate_signals(config: RouterConfig, obs: Observation) -> dict[str, float]:
    """Score every configured signal; the result holds only those that fired, with their score.
    Each signal type scores itself (meritorder/signals/)."""
    fired: dict[str, float] = {}
    for signal in config.signals:
        score = signal.score(obs)
        if score is not None:
            fired[signal.name] = score
    return fired


def holds(rule: Rule, fired: Mapping[str, float]) -> bool:
    """Whether a rule tree holds over the fired signals."""
    if isinstance(rule, str):
        return rule in fired
    if isinstance(rule, AllOf):
        return all(holds(child, fired) for child in rule.children)
    if isinstance(rule, AnyOf):
        return any(holds(child, fired) for child in rule.children)
    if isinstance(rule, NotOf):
        return not holds(rule.child, fired)
    raise TypeError(f"not a rule: {rule!r}")  # parse_rule builds only the four kinds


def matching(config: RouterConfig, fired: Mapping[str, float]) -> list[DecisionConfig]:
    """The decisions whose rule holds, by descending priority (the first one wins)."""
    return [d for d in config.ordered_decisions() if holds(d.when, fired)]


def is_virtual(config: RouterConfig, model: str) -> bool:
    """Whether `model` asks the policy to choose (a virtual model such as `auto`)."""
    return model in config.virtual_models
