"""The router's policy file: pydantic models, loading, and errors that name the field and the fix.

Shape of a file (see deploy/config.yaml and examples/):

    models:        the real models, each behind one Envoy cluster
    virtual_models: names clients send to ask the router to choose (e.g. "auto")
    default_model: where a request goes when no decision matches or deciding fails open
    signals:       named facts about a request (keywords, patterns, ...)
    decisions:     prioritised rules over signals and what to do when they hold
    routing, limits: time budget, failure behaviour, body size
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from meritorder.learning.config import (
    DetectConfig,
    ExploreConfig,
    LearnConfig,
    LearningStoreConfig,
    PriorConfig,
)
from meritorder.pool.hints import PoolHintsConfig
from meritorder.sessions import SessionsConfig
from meritorder.signals import BY_TAG, CLASSIFIER_TYPES, SignalConfig
from meritorder.signals.base import NAME_PATTERN
from meritorder.signals.labels import PiiType
from meritorder.tenant import MAX_TENANT_LENGTH, TENANT_HEADER, UNVERIFIED, normalize_tenant


class ConfigError(ValueError):
    """A policy file that cannot be used; `problems` are one line each: where, what, how to fix."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems)
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


# The APIs a request can arrive on (one endpoint spec each, meritorder/endpoints/).
Api = Literal["chat", "completions", "embeddings", "responses", "messages"]
GENERATIVE_APIS: tuple[Api, ...] = ("chat", "completions", "responses", "messages")


class SaturationConfig(_Strict):
    """When a model counts as saturated (any threshold reached: the `load` filter skips it for
    the next candidate), and how its metrics count once they are stale or unreachable."""

    queue: float | None = Field(
        default=None, gt=0, description="requests waiting per replica (vllm:num_requests_waiting)"
    )
    kv_cache: float | None = Field(
        default=None, gt=0, le=1, description="KV-cache use, 0-1 (vllm:kv_cache_usage_perc)"
    )
    ttft_ms: float | None = Field(default=None, gt=0, description="predicted time to first token")
    itl_ms: float | None = Field(
        default=None,
        gt=0,
        description="mean inter-token latency (vllm:inter_token_latency_seconds)",
    )
    # healthy: stale metrics count as an idle model; unknown: neither saturated nor measured
    # (ranked after every measured one); saturated: skipped like a saturated model.
    on_stale: Literal["healthy", "unknown", "saturated"] = "unknown"


class ModelConfig(_Strict):
    """One real model behind an Envoy cluster."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$", max_length=128)
    cluster: str = Field(min_length=1, description="Envoy cluster that serves this model")
    upstream_model: str = Field(min_length=1, description="the model id the upstream expects")
    cost: float = Field(ge=0, description="relative cost per 1M tokens")
    boundary: Literal["private", "external"] = Field(
        default="private",
        description="private: runs inside the operator's boundary; external: a third-party API",
    )
    reasoning_family: ReasoningFamily | None = None
    context_window: int | None = Field(default=None, gt=0)
    health_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="polled by the router; a model failing it is skipped for its fallbacks",
    )
    apis: tuple[Api, ...] = Field(
        default=GENERATIVE_APIS,
        min_length=1,
        description="the APIs this model's upstream serves; an embedding model says [embeddings]",
    )
    # The Prometheus endpoints of the model's servers (vLLM or SGLang), one per replica: read
    # off the request path every `routing.pool_refresh_s` (meritorder/pool/).
    metrics_url: tuple[Annotated[str, Field(pattern=r"^https?://")], ...] = ()
    saturation: SaturationConfig = SaturationConfig()

    @field_validator("metrics_url", mode="before")
    @classmethod
    def _one_or_more_urls(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value


# How to switch a model's thinking on or off in the request body.
ReasoningFamily = Literal[
    "chat_template_kwargs.enable_thinking",  # vLLM/SGLang with Qwen3, DeepSeek-style templates
    "reasoning_effort",  # OpenAI o-series and gpt-oss
]

_NAME = NAME_PATTERN


@dataclass(frozen=True)
class AllOf:
    children: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple[Rule, ...]


@dataclass(frozen=True)
class NotOf:
    child: Rule


# A rule is a signal name, or {all: [...]}, {any: [...]}, {not: rule}, nested freely.
Rule = Union[str, AllOf, AnyOf, NotOf]  # noqa: UP007


def parse_rule(value: object, where: str = "when") -> Rule:
    """Build a rule tree from its YAML form; errors name the exact node and the fix."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((op, arg),) = value.items()
        if op in ("all", "any"):
            if not isinstance(arg, list) or not arg:
                raise ValueError(f"{where}.{op} must be a non-empty list of rules")
            children = tuple(parse_rule(child, f"{where}.{op}[{i}]") for i, child in enumerate(arg))
            return AllOf(children) if op == "all" else AnyOf(children)
        if op == "not":
            return NotOf(parse_rule(arg, f"{where}.not"))
    raise ValueError(
        f"{where} must be a signal name or a mapping with exactly one of 'all', 'any', 'not' "
        f"(got {value!r})"
    )


def rule_signals(rule: Rule) -> Iterator[str]:
    """Every signal name a rule tree refers to."""
    if isinstance(rule, str):
        yield rule
    elif isinstance(rule, NotOf):
        yield from rule_signals(rule.child)
    else:
        for child in rule.children:
            yield from rule_signals(child)


class BlockAction(_Strict):
    status: int = Field(default=403, ge=400, le=599)
    message: str = "This request is not allowed by the routing policy."


class SystemPromptStep(_Strict):
    """Put `text` first as the system prompt: `prepend` keeps the client's system messages after
    it, `replace` drops them."""

    mode: Literal["prepend", "replace"] = "prepend"
    text: str = Field(min_length=1)


class ReasoningStep(_Strict):
    """Switch thinking on or off for the chosen model's `reasoning_family`."""

    enabled: bool = True
    effort: Literal["low", "medium", "high"] = "medium"


class SloConfig(_Strict):
    ttft_ms: float = Field(gt=0, description="the time to first token this traffic may wait")


class DecisionConfig(_Strict):
    """When `when` holds, route to the usable model of `route` that `pick` chooses, or `block`."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    priority: int = 0
    when: Rule

    @field_validator("when", mode="before")
    @classmethod
    def _parse_when(cls, value: object) -> Rule:
        return parse_rule(value)

    route: tuple[str, ...] = ()
    block: BlockAction | None = None
    system_prompt: SystemPromptStep | None = None
    reasoning: ReasoningStep | None = None
    # On PII found by the pii signals of the policy: refuse, mask the spans, or keep it private.
    pii: Literal["block", "redact", "private"] | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    # A cheaper tier for when every `route` candidate is saturated: each must pass every filter
    # (boundaries, budget, health, load) as a candidate of `route` would.
    under_pressure: tuple[str, ...] = ()
    # The InferenceObjective the pool's endpoint picker gives this traffic (`pool_hints`).
    objective: str | None = Field(default=None, pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
    # Which of the surviving candidates wins (meritorder/policy/pickers/): the first in `route`
    # order, the cheapest, ...
    pick: str = "first"

    @field_validator("pick")
    @classmethod
    def _known_picker(cls, pick: str) -> str:
        from meritorder.policy.pickers import PICKERS  # the policy imports this module

        if pick not in PICKERS:
            close = difflib.get_close_matches(pick, list(PICKERS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(PICKERS)}"
            raise ValueError(f"unknown picker {pick!r}; {hint}")
        return pick

    # Learn which of `route` to pick from outcomes (meritorder/learning); None: the first usable.
    learn: LearnConfig | None = None
    # A latency objective for this decision's traffic: a candidate whose predicted time to first
    # token exceeds it counts as saturated for it (the `load` filter).
    slo: SloConfig | None = None

    @model_validator(mode="after")
    def _one_action(self) -> DecisionConfig:
        if bool(self.route) == (self.block is not None):
            raise ValueError(
                "a decision needs exactly one action: 'route: [model, ...]' or 'block: {...}'"
            )
        if self.learn is not None and len(self.route) < 2:
            raise ValueError(
                "'learn' picks among the 'route' candidates; list at least two models in 'route'"
            )
        return self


class BoundaryConfig(_Strict):
    """PII of `pii_types` (any type when empty) never reaches an `external` model: a decision that
    would send it there is rerouted to the cheapest allowed model, or blocked."""

    name: str = Field(pattern=_NAME)
    pii_types: tuple[PiiType, ...] = ()
    min_score: float = Field(default=0.5, ge=0, le=1)
    action: Literal["reroute", "block"] = "reroute"
    status: int = Field(default=403, ge=400, le=599)
    message: str = "This request contains personal data that may not leave the private boundary."


class BudgetConfig(_Strict):
    """A spending ceiling per tenant in cost units per `window_s`.

    The tenant is read from `header`, which the gateway must set from a verified identity and
    strip from clients (the shipped Envoy sets x-meritorder-tenant from a JWT claim). Names are
    normalized (see `meritorder.tenant`). Listed tenants get their `limits`, others
    `default_limit`; requests without a valid tenant share one budget of `unverified_limit`
    (`default_limit` when unset), or get a 401 with `unverified: refuse`.

    A request costs (estimated prompt tokens + n x (max_tokens or `completion_tokens_estimate`))
    x model cost / 1M, and goes to a model only if that cost fits in what the tenant has left.
    With `cap_completion` (the default) a request under a limit gets the max_tokens it was
    charged for, so no answer can outgrow its reservation.
    Otherwise it steps down to the cheapest of `step_down_to` (the cheapest allowed model when
    empty), or gets a 429 (`reject`). With `step_down`, `hard_limit_ratio` x the ceiling bounds
    the stepped-down spending too (429 past it)."""

    header: str = Field(default=TENANT_HEADER, pattern=r"^[A-Za-z0-9-]+$")
    window_s: int = Field(default=3600, gt=0)
    limits: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    default_limit: float | None = Field(default=None, ge=0, description="None: unlimited")
    unverified: Literal["budget", "refuse"] = "budget"
    unverified_limit: float | None = Field(default=None, ge=0, description="None: default_limit")
    on_exhausted: Literal["step_down", "reject"] = "step_down"
    step_down_to: tuple[str, ...] = ()
    hard_limit_ratio: float | None = Field(default=None, ge=1)
    completion_tokens_estimate: int = Field(default=256, ge=0)
    cap_completion: bool = True

    @field_validator("header")
    @classmethod
    def _lowercase(cls, header: str) -> str:
        return header.lower()

    @field_validator("limits")
    @classmethod
    def _normalized_tenants(cls, limits: dict[str, float]) -> dict[str, float]:
        """Keys in canonical form, so a tenant's limit applies however its token spells it."""
        problems: list[str] = []
        normalized: dict[str, str] = {}
        for name in limits:
            canonical = normalize_tenant(name)
            if canonical is None:
                problems.append(
                    f"{name!r} is not a valid tenant name; use 1-{MAX_TENANT_LENGTH} characters "
                    "of a-z 0-9 . _ : @ - (case and full-width forms are folded)"
                )
            elif canonical in normalized:
                problems.append(
                    f"{normalized[canonical]!r} and {name!r} are the same tenant {canonical!r} "
                    "once normalized; keep one of them"
                )
            else:
                normalized[canonical] = name
        if problems:
            # The first line gets its location from pydantic; ConfigError splits the others off.
            where = [problems[0], *(f"budgets.limits: {p}" for p in problems[1:])]
            raise ValueError(_PROBLEM_SEPARATOR.join(where))
        return {canonical: limits[name] for canonical, name in normalized.items()}

    @model_validator(mode="after")
    def _one_unverified_rule(self) -> BudgetConfig:
        if self.unverified == "refuse" and self.unverified_limit is not None:
            raise ValueError(
                "unverified_limit: unverified requests are refused (unverified: refuse), "
                "so they have no budget; remove unverified_limit or set unverified: budget"
            )
        return self

    def limit_for(self, tenant: str) -> float | None:
        """The ceiling of a tenant's budget (a normalized name or `UNVERIFIED`); None: unlimited."""
        if tenant == UNVERIFIED:
            return self.default_limit if self.unverified_limit is None else self.unverified_limit
        return self.limits.get(tenant, self.default_limit)


class UnavailableAction(_Strict):
    """What a request gets when a required signal (a `required: true` classifier signal, or PII
    under a boundary) could not be computed in time: refused, kept on private models, or sent to
    one named safe model. Never decided as if the signal were clean."""

    action: Literal["block", "private", "route"] = "block"
    model: str | None = Field(default=None, description="the safe model, for action: route")
    status: int = Field(default=503, ge=400, le=599)
    retry_after_s: int = Field(default=1, ge=0, description="the retry hint of a block")

    @model_validator(mode="after")
    def _model_iff_route(self) -> UnavailableAction:
        if self.action == "route" and self.model is None:
            raise ValueError("action 'route' sends the request to 'model'; name the safe model")
        if self.action != "route" and self.model is not None:
            raise ValueError(
                f"model {self.model!r} is only used with action 'route' (got {self.action!r}); "
                "remove it or set action: route"
            )
        return self


class RoutingConfig(_Strict):
    decision_timeout_ms: float = Field(default=150, gt=0, le=60_000)
    # How long a request waits for its classifier signals when one of them is required: longer
    # than the routing budget, so security holds under load; keep it under Envoy's ext_proc
    # message_timeout (2 s in deploy/envoy/envoy.yaml).
    required_timeout_ms: float = Field(default=1000, gt=0, le=60_000)
    # estimate: a request whose estimated wait for the classifier exceeds what is left of its
    # budget is not queued, and is decided at once as a timeout would be (cause `busy`); off:
    # every request is queued and waits its whole budget.
    admission: Literal["estimate", "off"] = "estimate"
    on_error: Literal["fail_open", "fail_closed"] = "fail_open"
    on_unavailable: UnavailableAction = UnavailableAction()
    health_check_interval_s: float = Field(default=5.0, gt=0)
    # Consecutive failed checks or 5xx responses after which a model's fallbacks take over.
    unhealthy_after: int = Field(default=2, ge=1)
    # What x-meritorder-reason tells the client. minimal: never what was detected (no PII
    # signal, type or boundary name: that would tell a client how to evade them); full: all of
    # it. Logs and traces always carry the full reason (types, never values).
    reason_detail: Literal["minimal", "full"] = "minimal"
    # How often the models' `metrics_url`s are read, and the age past which what was read last
    # is stale (then each model's `saturation.on_stale` says how it counts).
    pool_refresh_s: float = Field(default=1.0, gt=0, le=3600)
    pool_stale_s: float = Field(default=5.0, gt=0)

    @field_validator("admission", mode="before")
    @classmethod
    def _unquoted_off(cls, value: object) -> object:
        # YAML reads a bare `off` as false: it still means off.
        return "off" if value is False else value

    @model_validator(mode="after")
    def _stale_after_a_refresh(self) -> RoutingConfig:
        if self.pool_stale_s < self.pool_refresh_s:
            raise ValueError(
                f"pool_stale_s ({self.pool_stale_s:g}) is shorter than pool_refresh_s "
                f"({self.pool_refresh_s:g}): metrics would be stale before their next read; "
                "raise pool_stale_s (default 5) or lower pool_refresh_s"
            )
        return self

    @model_validator(mode="after")
    def _required_waits_longer(self) -> RoutingConfig:
        if self.required_timeout_ms < self.decision_timeout_ms:
            raise ValueError(
                f"required_timeout_ms ({self.required_timeout_ms:g}) is shorter than "
                f"decision_timeout_ms ({self.decision_timeout_ms:g}); required signals wait at "
                "least as long as routing ones: raise it (default 1000)"
            )
        return self


MAX_BODY_BYTES_CEILING = 64 << 20


class LimitsConfig(_Strict):
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=MAX_BODY_BYTES_CEILING)


class RouterConfig(_Strict):
    """A whole policy file."""

    version: Literal[1] = 1
    models: tuple[ModelConfig, ...] = Field(min_length=1)
    virtual_models: tuple[str, ...] = ("auto",)
    default_model: str
    signals: tuple[SignalConfig, ...] = ()
    decisions: tuple[DecisionConfig, ...] = ()
    boundaries: tuple[BoundaryConfig, ...] = ()
    budgets: BudgetConfig | None = None
    sessions: SessionsConfig | None = None
    pool_hints: PoolHintsConfig | None = None  # headers for the endpoint picker (pool/hints.py)
    routing: RoutingConfig = RoutingConfig()
    limits: LimitsConfig = LimitsConfig()
    learning: LearningStoreConfig = LearningStoreConfig()  # where learned estimates live

    @model_validator(mode="after")
    def _references_resolve(self) -> RouterConfig:
        problems = _References.of(self).problems()
        hints = self.pool_hints
        known = [m.name for m in self.models]
        for i, d in enumerate(self.decisions):
            for j, name in enumerate(d.under_pressure):
                problems += _unknown(f"decisions[{i}].under_pressure[{j}]", name, known)
            if d.objective is not None and (hints is None or hints.objective_header is None):
                problems.append(
                    f"decisions[{i}].objective: {d.objective!r} is sent to the pool in "
                    "pool_hints.objective_header, and the policy sends none; add a pool_hints "
                    "block (or drop the objective)"
                )
        if problems:
            # One message per problem; ConfigError splits them back into lines.
            raise ValueError(_PROBLEM_SEPARATOR.join(problems))
        return self

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    def required_signals(self, virtual: bool) -> list[str]:
        """What must be computed before a request is decided: the `required` classifier signals
        (read for virtual models only) and, for every request, the boundaries' PII."""
        names = [s.name for s in self.signals if s.must_compute()]
        return [*(names if virtual else ()), *(f"boundary:{b.name}" for b in self.boundaries)]

    def uses_classifier(self) -> bool:
        """Whether any signal or boundary needs the classifier model."""
        return bool(self.boundaries) or any(s.type in CLASSIFIER_TYPES for s in self.signals)

    def cheapest(self, names: Iterable[str] | None = None) -> list[ModelConfig]:
        """Models (all, or those named) from cheapest to dearest; file order breaks ties."""
        pool = self.models if names is None else [m for m in self.models if m.name in set(names)]
        return sorted(pool, key=lambda m: m.cost)

    def ordered_decisions(self) -> list[DecisionConfig]:
        """Decisions by descending priority; file order breaks ties."""
        return sorted(self.decisions, key=lambda d: -d.priority)


_PROBLEM_SEPARATOR = "\n"


@dataclass(frozen=True)
class _Decision:
    index: int
    name: str | None
    route: tuple[str, ...]
    signals: tuple[str, ...] | None  # None: the rule itself is malformed (a schema problem)
    pii: str | None


@dataclass(frozen=True)
class _References:
    """What the names of a policy point at, from a validated config or from raw YAML whose
    schema failed, so one run reports the reference problems along with the schema ones."""

    models: tuple[tuple[str, str], ...] | None  # (name, boundary); None: no usable list
    signals: tuple[tuple[str, str], ...] | None  # (name, type)
    decisions: tuple[_Decision, ...]
    virtual_models: tuple[str, ...]
    default_model: str | None
    step_down_to: tuple[str, ...]
    safe_model: str | None
    has_boundaries: bool

    @classmethod
    def of(cls, config: RouterConfig) -> _References:
        return cls(
            models=tuple((m.name, m.boundary) for m in config.models),
            signals=tuple((s.name, s.type) for s in config.signals),
            decisions=tuple(
                _Decision(i, d.name, d.route, tuple(rule_signals(d.when)), d.pii)
                for i, d in enumerate(config.decisions)
            ),
            virtual_models=config.virtual_models,
            default_model=config.default_model,
            step_down_to=config.budgets.step_down_to if config.budgets else (),
            safe_model=config.routing.on_unavailable.model,
            has_boundaries=bool(config.boundaries),
        )

    @classmethod
    def of_raw(cls, data: dict[str, Any]) -> _References:
        """Whatever can be read of the references; malformed parts are left to the schema."""

        def items(value: object) -> list[dict[str, Any]]:
            return [i for i in value if isinstance(i, dict)] if isinstance(value, list) else []

        def names(value: object) -> tuple[str, ...]:
            return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

        def text(value: object) -> str | None:
            return value if isinstance(value, str) else None

        def kinds(value: object, key: str, default: str) -> tuple[tuple[str, str], ...] | None:
            """(name, `key`) of each named item of a list; None for no list at all."""
            if not isinstance(value, list):
                return None
            named = (i for i in items(value) if isinstance(i.get("name"), str))
            return tuple((i["name"], str(i.get(key, default))) for i in named)

        def rule(value: object) -> tuple[str, ...] | None:
            try:
                return tuple(rule_signals(parse_rule(value)))
            except ValueError:
                return None

        raw_models, raw_signals = data.get("models"), data.get("signals", [])
        budgets, routing = data.get("budgets"), data.get("routing")
        unavailable = routing.get("on_unavailable") if isinstance(routing, dict) else None
        return cls(
            models=kinds(raw_models, "boundary", "private"),
            signals=kinds(raw_signals, "type", "keyword"),
            decisions=tuple(
                _Decision(
                    i,
                    text(d.get("name")),
                    names(d.get("route")),
                    rule(d.get("when")),
                    text(d.get("pii")),
                )
                for i, d in enumerate(raw_decisions)
                if isinstance(d, dict)
            )
            if isinstance(raw_decisions := data.get("decisions"), list)
            else (),
            virtual_models=names(data.get("virtual_models", ["auto"])),
            default_model=text(data.get("default_model")),
            step_down_to=names(budgets.get("step_down_to")) if isinstance(budgets, dict) else (),
            safe_model=text(unavailable.get("model")) if isinstance(unavailable, dict) else None,
            has_boundaries=bool(data.get("boundaries")),
        )

    def problems(self) -> list[str]:
        problems: list[str] = []
        models = [name for name, _ in self.models] if self.models is not None else None
        signals = [name for name, _ in self.signals] if self.signals is not None else None
        if models is not None:
            problems += _duplicates("models", models)
        if signals is not None:
            problems += _duplicates("signals", signals)
        problems += _duplicates("decisions", [d.name for d in self.decisions if d.name])
        if models is not None and self.default_model is not None:
            problems += _unknown("default_model", self.default_model, models)
        clash = set(self.virtual_models) & set(models or ())
        if clash:
            problems.append(
                f"virtual_models: {sorted(clash)} are also real model names; rename one"
            )
        has_pii_signal = any(kind == "pii" for _, kind in self.signals or ())
        for d in self.decisions:
            if models is not None:
                for j, model in enumerate(d.route):
                    problems += _unknown(f"decisions[{d.index}].route[{j}]", model, models)
            if signals is not None:
                for signal in d.signals or ():
                    problems += _unknown(f"decisions[{d.index}].when", signal, signals, "signal")
            if d.pii is not None and self.signals is not None and not has_pii_signal:
                problems.append(
                    f"decisions[{d.index}].pii: {d.pii!r} acts on PII found by a pii signal, "
                    "and the policy has none; add one (type: pii) under 'signals'"
                )
        if models is not None:
            for j, model in enumerate(self.step_down_to):
                problems += _unknown(f"budgets.step_down_to[{j}]", model, models)
        safe = self.safe_model
        if safe is not None and self.models is not None and models is not None:
            problems += _unknown("routing.on_unavailable.model", safe, models)
            if self.has_boundaries and dict(self.models).get(safe) == "external":
                problems.append(
                    f"routing.on_unavailable.model: {safe!r} is external, and unread requests "
                    "may hold what the boundaries keep inside; name a private model"
                )
        return problems


def _duplicates(field: str, names: list[str]) -> list[str]:
    repeated = sorted({n for n in names if names.count(n) > 1})
    return [
        f"{field}: the name {n!r} is used more than once; names must be unique" for n in repeated
    ]


def _unknown(where: str, name: str, known: list[str], kind: str = "model") -> list[str]:
    if name in known:
        return []
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"define it under '{kind}s' (known: {known})"
    return [f"{where}: unknown {kind} {name!r}; {hint}"]


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate a policy file; raise `ConfigError` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    return parse_config(text, source)


def parse_config(text: str, source: str = "<config>") -> RouterConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            source, ["the file must be a YAML mapping with at least 'models' and 'default_model'"]
        )
    try:
        return RouterConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [_describe(e) for e in errors if not _is_echo(e, errors)]
        lines = [line for p in problems for line in p.split(_PROBLEM_SEPARATOR)]
        # A schema problem stops pydantic before the reference check: run that one on the raw
        # YAML, so one run reports both kinds (each line once).
        lines += [p for p in _References.of_raw(data).problems() if p not in lines]
        raise ConfigError(source, lines) from exc


def _is_echo(error: Any, errors: list[Any]) -> bool:
    """A too-short error on a list whose items already failed repeats them; drop it."""
    loc = error["loc"]
    return error["type"] == "too_short" and any(
        len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in errors
    )


def _describe(error: Any) -> str:
    loc = _location(error["loc"])
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _allowed_fields(error["loc"][:-1])
        close = difflib.get_close_matches(str(error["loc"][-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed fields: {', '.join(allowed)}"
        return f"{loc}: unknown field; {hint}"
    if kind == "missing":
        return f"{loc}: required field is missing; add it"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        close = difflib.get_close_matches(str(error["input"]), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{loc}: {message} (got {error['input']!r}){hint}"
    if kind == "union_tag_invalid" and error["loc"][:1] == ("signals",):
        tag = str(error.get("ctx", {}).get("tag", ""))
        close = difflib.get_close_matches(tag, list(BY_TAG), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known types: {', '.join(BY_TAG)}"
        return f"{loc}.type: unknown signal type {tag!r}; {hint}"
    if kind.startswith("union_tag") or "input" not in error:
        return f"{loc}: {message}"
    if kind in ("value_error", "assertion_error"):
        return f"{loc}: {message}" if loc else message
    return f"{loc}: {message} (got {error['input']!r})"


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for position, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif position == 2 and loc[0] == "signals" and item in _SIGNAL_TAGS:
            continue  # the signal type's union branch name is noise to a reader of the YAML
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


_SIGNAL_TAGS = frozenset(BY_TAG)


_FIELDS_BY_SECTION: dict[str, type[BaseModel]] = {
    "models": ModelConfig,
    "decisions": DecisionConfig,
    "routing": RoutingConfig,
    "on_unavailable": UnavailableAction,
    "limits": LimitsConfig,
    "block": BlockAction,
    "system_prompt": SystemPromptStep,
    "reasoning": ReasoningStep,
    "boundaries": BoundaryConfig,
    "budgets": BudgetConfig,
    **BY_TAG,
    "learn": LearnConfig,
    "prior": PriorConfig,
    "explore": ExploreConfig,
    "detect": DetectConfig,
    "learning": LearningStoreConfig,
}


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    names = [str(x) for x in loc if isinstance(x, str) and x in _FIELDS_BY_SECTION]
    model = _FIELDS_BY_SECTION[names[-1]] if names else RouterConfig
    return [f.alias or name for name, f in model.model_fields.items()]
