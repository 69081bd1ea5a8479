"""The policy: a pure function of (request, signals, config) to a `Decision` with its explanation.

No I/O here: this is what `meritorder explain`, the batch router and the ext_proc path all call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from meritorder.config import (
    AllOf,
    AnyOf,
    DecisionConfig,
    KeywordSignal,
    ModelConfig,
    NotOf,
    RouterConfig,
    Rule,
)
from meritorder.request import ChatRequest


@dataclass(frozen=True)
class Decision:
    """What to do with one request, and why."""

    action: Literal["route", "block"]
    decision: str
    model: ModelConfig | None = None
    status: int = 200
    message: str = ""
    fired: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        """A compact, header-safe explanation: decision, fired signals, notes."""
        parts = [f"decision={self.decision}"]
        if self.fired:
            parts.append(
                "signals=" + ",".join(f"{k}:{v:.2f}" for k, v in sorted(self.fired.items()))
            )
        if self.model is not None:
            parts.append(f"model={self.model.name}")
        parts.extend(self.notes)
        return "; ".join(parts).encode("ascii", "replace").decode()


def evaluate_signals(config: RouterConfig, request: ChatRequest) -> dict[str, float]:
    """Score every configured signal; the result holds only those that fired (score > 0)."""
    text = request.prompt_text()
    fired: dict[str, float] = {}
    for signal in config.signals:
        score = _keyword_score(signal, text)
        if score > 0:
            fired[signal.name] = score
    return fired


def decide(config: RouterConfig, request: ChatRequest, fired: Mapping[str, float]) -> Decision:
    """The decision for a request whose `model` is virtual: the first matching rule by priority."""
    for rule in config.ordered_decisions():
        if holds(rule.when, fired):
            return _act(config, rule, fired)
    return route_to(config, config.default_model, "default", fired)


def route_explicit(config: RouterConfig, model_name: str) -> Decision | None:
    """The decision for a client that named a real model, or None when no such model exists."""
    if config.model(model_name) is None:
        return None
    return route_to(config, model_name, "explicit", {})


def route_to(
    config: RouterConfig,
    model_name: str,
    decision: str,
    fired: Mapping[str, float],
    notes: tuple[str, ...] = (),
) -> Decision:
    model = config.model(model_name)
    if model is None:  # the config validator makes this unreachable for names it checked
        raise KeyError(model_name)
    return Decision("route", decision, model=model, fired=fired, notes=notes)


def holds(rule: Rule, fired: Mapping[str, float]) -> bool:
    if isinstance(rule, str):
        return rule in fired
    if isinstance(rule, AllOf):
        return all(holds(child, fired) for child in rule.children)
    if isinstance(rule, AnyOf):
        return any(holds(child, fired) for child in rule.children)
    assert isinstance(rule, NotOf)
    return not holds(rule.child, fired)


def _act(config: RouterConfig, rule: DecisionConfig, fired: Mapping[str, float]) -> Decision:
    if rule.block is not None:
        return Decision(
            "block", rule.name, status=rule.block.status, message=rule.block.message, fired=fired
        )
    return route_to(config, rule.route[0], rule.name, fired)


def _keyword_score(signal: KeywordSignal, text: str) -> float:
    return 1.0 if _keyword_regex(signal.keywords, signal.patterns).search(text) else 0.0


@lru_cache(maxsize=256)
def _keyword_regex(keywords: tuple[str, ...], patterns: tuple[str, ...]) -> re.Pattern[str]:
    words = [rf"(?<!\w){re.escape(k)}(?!\w)" for k in keywords]
    return re.compile("|".join([*words, *(f"(?:{p})" for p in patterns)]), re.IGNORECASE)
