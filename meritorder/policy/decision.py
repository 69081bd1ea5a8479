"""A decision as a tagged union, `Routed | Blocked`, with its structured explanation.

Rejections and notes are data (`Rejection`, `Note`); `reason` (logs, traces) and
`client_reason` (the x-meritorder-reason header) render them, the latter without what was
detected when `routing.reason_detail` is minimal. Nothing reads a rendered string back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, TypeVar

from meritorder.config import ModelConfig, ReasoningStep, SystemPromptStep
from meritorder.learning.bandit import Pick
from meritorder.policy.observation import Classified, PiiFinding


@dataclass(frozen=True)
class Rejection:
    """A candidate model that filter `filter` took out, and why (`reason`, as the reason header
    says it); `boundary` and `detected` (PII types) say what was found, hidden from clients when
    `routing.reason_detail` is minimal."""

    model: str
    filter: str
    reason: str
    boundary: str | None = None
    detected: tuple[str, ...] = ()

    def render(self, full: bool = True) -> str:
        text = f"{self.model}:{self.reason}"
        if full and self.boundary is not None:
            text += f"={self.boundary}"
        if full and self.detected:
            text += ":" + ",".join(self.detected)
        return text


@dataclass(frozen=True)
class Note:
    """A fact about how a decision was made (`budget=step_down(1)`, `fallback=timeout`...); a
    `detected` value says what was found (PII types, a boundary, the pool's load) and is hidden
    from clients when reason_detail is minimal."""

    kind: str
    value: str = ""
    detected: bool = False

    def render(self, full: bool = True) -> str:
        if not self.value or (self.detected and not full):
            return self.kind
        return f"{self.kind}={self.value}"


@dataclass(frozen=True)
class Steps:
    """Changes to the request body and headers that a decision asks for."""

    system_prompt: SystemPromptStep | None = None
    reasoning: ReasoningStep | None = None
    max_tokens: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    redact: tuple[PiiFinding, ...] = ()


_D = TypeVar("_D", bound="Explained")


@dataclass(frozen=True, kw_only=True)
class Explained:
    """What every decision carries: which rule made it and why."""

    action: ClassVar[Literal["route", "block"]]

    rule: str  # the matched decision's name, or default / explicit / fallback / ...
    fired: Mapping[str, float] = field(default_factory=dict)
    matched: tuple[str, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    notes: tuple[Note, ...] = ()
    tenant: str | None = None  # the budget's tenant (or tenant.UNVERIFIED) when budgets apply
    classified: Classified | None = None
    reason_detail: Literal["minimal", "full"] = "minimal"  # of `client_reason`
    hidden_signals: frozenset[str] = frozenset()  # pii signals: their firing says what was found

    @property
    def chosen(self) -> ModelConfig | None:
        """The model a routed decision sends to; None for a block."""
        return None

    @property
    def reason(self) -> str:
        """A compact, header-safe explanation for logs and traces: rule, fired signals, model,
        rejections (PII types and boundary names included, never a value), notes."""
        return self._render(full=True)

    @property
    def client_reason(self) -> str:
        """`reason` as the client sees it (x-meritorder-reason). With `routing.reason_detail:
        minimal`, nothing of what was detected: no pii signal, PII type or boundary name."""
        return self._render(full=self.reason_detail == "full")

    def noted(self: _D, *notes: Note) -> _D:
        return replace(self, notes=(*self.notes, *notes))

    def _render(self, full: bool) -> str:
        parts = [f"decision={self.rule}"]
        fired = {k: v for k, v in self.fired.items() if full or k not in self.hidden_signals}
        if fired:
            parts.append("signals=" + ",".join(f"{k}:{v:.2f}" for k, v in sorted(fired.items())))
        if self.chosen is not None:
            parts.append(f"model={self.chosen.name}")
        if self.rejected:
            parts.append("rejected=" + ",".join(r.render(full) for r in self.rejected))
        parts.extend(n.render(full) for n in self.notes)
        return "; ".join(parts).encode("ascii", "replace").decode()


@dataclass(frozen=True, kw_only=True)
class Routed(Explained):
    """Send the request to `model`, changed by `steps`."""

    action: ClassVar[Literal["route"]] = "route"

    model: ModelConfig
    steps: Steps = Steps()
    cost: float = 0.0  # the estimate, reserved against the tenant's budget
    # The ceiling `cost` was checked against: the router reserves the cost under it. None: none.
    budget_limit: float | None = None
    pick: Pick | None = None  # a decision that learned: the estimates behind its choice

    @property
    def chosen(self) -> ModelConfig:
        return self.model


@dataclass(frozen=True, kw_only=True)
class Blocked(Explained):
    """Answer the request with an error (`status`, OpenAI's error fields) and forward nothing."""

    action: ClassVar[Literal["block"]] = "block"

    status: int
    message: str
    code: str = "blocked_by_policy"
    error_type: str = "invalid_request_error"


Decision = Routed | Blocked


def _explained(decision: Explained) -> dict[str, Any]:
    return {f.name: getattr(decision, f.name) for f in fields(Explained)}


def blocked(
    decision: Explained,
    status: int,
    message: str,
    *,
    code: str = "blocked_by_policy",
    error_type: str = "invalid_request_error",
    rule: str | None = None,
    notes: Sequence[Note] = (),
) -> Blocked:
    """`decision`'s explanation, turned into a block (named `rule`, else keeping its own)."""
    base = _explained(decision)
    base["notes"] = (*decision.notes, *notes)
    if rule is not None:
        base["rule"] = rule
    return Blocked(**base, status=status, message=message, code=code, error_type=error_type)


def routed(
    decision: Explained, model: ModelConfig, *, rule: str | None = None, **routing: Any
) -> Routed:
    """`decision`'s explanation, turned into a route to `model` (`routing`: Routed's fields)."""
    base = _explained(decision)
    if rule is not None:
        base["rule"] = rule
    if isinstance(decision, Routed):
        routing = {"steps": decision.steps, "cost": decision.cost, **routing}
        routing.setdefault("budget_limit", decision.budget_limit)
    return Routed(**base, model=model, **routing)
