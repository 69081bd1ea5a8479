"""The policy: a pure function of (observation, pool state, config) to a `Decision` with its
explanation. No I/O here: `meritorder explain`, `meritorder route`, the evaluation and the ext_proc
path all call `decide`, and tests can run it by the thousand.

Order of a decision:
  1. score every signal; the decisions whose rule holds are `matched`, the first one wins;
  2. its action: block, or an ordered list of candidate models (explicit requests: the named one);
  3. the decision's PII step (block / redact / private), then the privacy boundaries;
  4. the tenant's budget: the cost must fit in what is left (else step down, or 429);
  5. the first healthy candidate wins; the rest are the fallbacks not taken. A decision that
     learns (`learn:`) picks with the bandit among the healthy candidates that fit the budget,
     on the estimates the router read into `PoolState.estimates`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal, Protocol

from meritorder.budget import fits
from meritorder.config import (
    AllOf,
    AnyOf,
    BoundaryConfig,
    DecisionConfig,
    DifficultySignal,
    DomainSignal,
    HeaderSignal,
    KeywordSignal,
    ModelConfig,
    NotOf,
    PiiSignal,
    PromptAttackSignal,
    ReasoningStep,
    RouterConfig,
    Rule,
    SignalConfig,
    SystemPromptStep,
    TokensSignal,
    ToolsSignal,
    TurnsSignal,
)
from meritorder.learning import bandit
from meritorder.learning.store import ContextEstimates
from meritorder.request import ChatRequest
from meritorder.tenant import UNVERIFIED, tenant_of


class PiiFinding(Protocol):
    """A PII span as the classifiers report it (character offsets into message `message`)."""

    @property
    def type(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def score(self) -> float: ...
    @property
    def message(self) -> int | None: ...
    @property
    def field(self) -> str | None: ...  # set when found outside message text: not redactable


@dataclass(frozen=True)
class Classified:
    """The classifier outputs the policy reads (a view of `classifiers.Signals`)."""

    domain: str
    domain_scores: Mapping[str, float]
    prompt_attack: float
    attack_threshold: float
    difficulty: float
    pii: Sequence[PiiFinding]
    tokens: int


@dataclass(frozen=True)
class Observation:
    """Everything the policy knows about one request."""

    request: ChatRequest
    headers: Mapping[str, str] = field(default_factory=dict)
    classified: Classified | None = None

    @property
    def tokens(self) -> int:
        """Prompt tokens: the classifier's count, else about four characters a token."""
        if self.classified is not None:
            return self.classified.tokens
        return sum(len(t) for t in self.request.texts()) // 4 + 1


@dataclass(frozen=True)
class PoolState:
    """What the router knows of the world at decision time."""

    unhealthy: frozenset[str] = frozenset()
    tenant_spent: float = 0.0  # this request's tenant, in the current budget window
    # Learned estimates of the contexts `learning_contexts` names, and the seed of this
    # request's draws (from its id: a decision can be replayed).
    estimates: Mapping[str, ContextEstimates] = field(default_factory=dict)
    seed: int = 0


@dataclass(frozen=True)
class Steps:
    """Changes to the request body and headers that a decision asks for."""

    system_prompt: SystemPromptStep | None = None
    reasoning: ReasoningStep | None = None
    max_tokens: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    redact: tuple[PiiFinding, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What to do with one request, and why."""

    action: Literal["route", "block"]
    decision: str
    model: ModelConfig | None = None
    status: int = 200
    message: str = ""
    code: str = "blocked_by_policy"
    error_type: str = "invalid_request_error"
    fired: Mapping[str, float] = field(default_factory=dict)
    matched: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    steps: Steps = Steps()
    tenant: str | None = None  # the budget's tenant (or tenant.UNVERIFIED) when budgets apply
    cost: float = 0.0
    # The ceiling `cost` was checked against: the router reserves the cost under it. None: none.
    budget_limit: float | None = None
    classified: Classified | None = None
    reason_detail: Literal["minimal", "full"] = "minimal"  # of `client_reason`
    hidden_signals: frozenset[str] = frozenset()  # pii signals: their firing says what was found
    pick: bandit.Pick | None = None  # a decision that learned: the estimates behind its choice

    @property
    def reason(self) -> str:
        """A compact, header-safe explanation for logs and traces: decision, fired signals,
        model, rejections (PII types and boundary names included, never a value)."""
        return _render(self.decision, self.fired, self.model, self.rejected, self.notes)

    @property
    def client_reason(self) -> str:
        """`reason` as the client sees it (x-meritorder-reason). With `routing.reason_detail:
        minimal`, nothing of what was detected: no pii signal, PII type or boundary name."""
        if self.reason_detail == "full":
            return self.reason
        return _render(
            self.decision,
            {k: v for k, v in self.fired.items() if k not in self.hidden_signals},
            self.model,
            tuple(_DETECTED_WHY.sub(r":\1", r) for r in self.rejected),
            tuple(_DETECTED_NOTE.sub(r"\1", n) for n in self.notes),
        )


# What a rejection or a note says was detected: `gpt:pii:EMAIL_ADDRESS`, `gpt:boundary=b:CARD`.
_DETECTED_WHY = re.compile(r":(pii|boundary)(?:=[A-Za-z0-9_.-]+)?(?::[A-Z_,]+)?$")
_DETECTED_NOTE = re.compile(r"^(boundary|pii)=.*$")


def _render(
    decision: str,
    fired: Mapping[str, float],
    model: ModelConfig | None,
    rejected: Sequence[str],
    notes: Sequence[str],
) -> str:
    parts = [f"decision={decision}"]
    if fired:
        parts.append("signals=" + ",".join(f"{k}:{v:.2f}" for k, v in sorted(fired.items())))
    if model is not None:
        parts.append(f"model={model.name}")
    if rejected:
        parts.append("rejected=" + ",".join(rejected))
    parts.extend(notes)
    return "; ".join(parts).encode("ascii", "replace").decode()


# -- signals -----------------------------------------------------------------------------------


def evaluate_signals(config: RouterConfig, obs: Observation) -> dict[str, float]:
    """Score every configured signal; the result holds only those that fired, with their score."""
    fired: dict[str, float] = {}
    for signal in config.signals:
        score = signal_score(signal, obs)
        if score is not None:
            fired[signal.name] = score
    return fired


def signal_score(signal: SignalConfig, obs: Observation) -> float | None:
    """The score of a signal that fired, or None. Classifier signals never fire without one."""
    request, classified = obs.request, obs.classified
    if isinstance(signal, KeywordSignal):
        return (
            1.0
            if _keyword_regex(signal.keywords, signal.patterns).search(request.prompt_text)
            else None
        )
    if isinstance(signal, TokensSignal):
        tokens = obs.tokens
        hit = tokens >= signal.min and (signal.max is None or tokens <= signal.max)
        return float(tokens) if hit else None
    if isinstance(signal, TurnsSignal):
        turns = sum(1 for m in request.messages if m.get("role") == "user")
        return float(turns) if turns >= signal.min else None
    if isinstance(signal, ToolsSignal):
        return 1.0 if request.has_tools else None
    if isinstance(signal, HeaderSignal):
        return _header_score(signal, obs.headers.get(signal.header))
    if classified is None:
        return None
    if isinstance(signal, DomainSignal):
        score = classified.domain_scores.get(classified.domain, 0.0)
        return score if classified.domain in signal.domains and score >= signal.min_score else None
    if isinstance(signal, PromptAttackSignal):
        threshold = classified.attack_threshold if signal.threshold is None else signal.threshold
        return classified.prompt_attack if classified.prompt_attack >= threshold else None
    if isinstance(signal, DifficultySignal):
        return classified.difficulty if classified.difficulty >= signal.threshold else None
    assert isinstance(signal, PiiSignal)
    found = _pii_matching(classified.pii, signal.pii_types, signal.min_score)
    return max(f.score for f in found) if found else None


def _header_score(signal: HeaderSignal, value: str | None) -> float | None:
    if value is None:
        return None
    if not signal.values and signal.pattern is None:
        return 1.0
    if value in signal.values or (signal.pattern and re.fullmatch(signal.pattern, value)):
        return 1.0
    return None


def _pii_matching(
    found: Sequence[PiiFinding], types: Sequence[str], min_score: float
) -> list[PiiFinding]:
    return [f for f in found if f.score >= min_score and (not types or f.type in types)]


@lru_cache(maxsize=256)
def _keyword_regex(keywords: tuple[str, ...], patterns: tuple[str, ...]) -> re.Pattern[str]:
    # One boundary check around the whole alternation: about 3x faster than one per keyword.
    branches = [f"(?:{p})" for p in patterns]
    if keywords:
        words = "|".join(re.escape(k) for k in sorted(keywords, key=len, reverse=True))
        branches.insert(0, rf"(?<!\w)(?:{words})(?!\w)")
    return re.compile("|".join(branches), re.IGNORECASE)


def holds(rule: Rule, fired: Mapping[str, float]) -> bool:
    if isinstance(rule, str):
        return rule in fired
    if isinstance(rule, AllOf):
        return all(holds(child, fired) for child in rule.children)
    if isinstance(rule, AnyOf):
        return any(holds(child, fired) for child in rule.children)
    assert isinstance(rule, NotOf)
    return not holds(rule.child, fired)


# -- decisions ---------------------------------------------------------------------------------


def is_virtual(config: RouterConfig, model: str) -> bool:
    return model in config.virtual_models


def decide(config: RouterConfig, obs: Observation, pool: PoolState = PoolState()) -> Decision:
    """The decision for one request. The caller has checked that `obs.request.model` is virtual
    or a configured model (see `Router.route`)."""
    virtual = is_virtual(config, obs.request.model)
    # Rules are only read for virtual models; an explicit request needs no signal scores.
    fired = evaluate_signals(config, obs) if virtual else {}
    tenant = tenant_of(obs.headers, config.budgets.header) if config.budgets else None
    base = Decision(
        "route",
        "default",
        fired=fired,
        tenant=tenant,
        classified=obs.classified,
        reason_detail=config.routing.reason_detail,
        hidden_signals=frozenset(s.name for s in config.signals if isinstance(s, PiiSignal)),
    )
    if config.budgets and config.budgets.unverified == "refuse" and tenant == UNVERIFIED:
        return _block(
            base,
            "unverified",
            401,
            "This request has no verified tenant; authenticate as a tenant and retry.",
            code="tenant_required",
            error_type="authentication_error",
        )

    if virtual:
        matched = [d for d in config.ordered_decisions() if holds(d.when, fired)]
        base = replace(base, matched=tuple(d.name for d in matched))
        rule = matched[0] if matched else None
    else:
        rule = None
        base = replace(base, decision="explicit")
    if rule is not None and rule.block is not None:
        return _block(base, rule.name, rule.block.status, rule.block.message)

    candidates = [config.model(n) for n in (rule.route if rule else [_target(config, obs)])]
    pool_models = [m for m in candidates if m is not None]
    decision = replace(base, decision=rule.name if rule else base.decision)
    return _choose(config, obs, pool, decision, pool_models, rule)


def _target(config: RouterConfig, obs: Observation) -> str:
    model = obs.request.model
    return config.default_model if is_virtual(config, model) else model


def _choose(
    config: RouterConfig,
    obs: Observation,
    pool: PoolState,
    decision: Decision,
    candidates: list[ModelConfig],
    rule: DecisionConfig | None,
) -> Decision:
    rejected: list[str] = []
    steps = _steps(rule)
    pii = _acted_on_pii(config, obs)

    # The decision's own PII step.
    if rule is not None and rule.pii is not None and pii:
        types = ",".join(sorted({f.type for f in pii}))
        if rule.pii == "block":
            named = f" ({types})" if config.routing.reason_detail == "full" else ""
            return _block(
                decision,
                decision.decision,
                403,
                f"This request contains personal data{named}; it is not forwarded.",
                code="pii_blocked",
                note=f"pii={types}",
            )
        if rule.pii == "redact":
            # Only message text can be masked; PII in any other field (tool arguments, schemas,
            # URLs, names...) stays in the body, so the request stays inside the boundary.
            redactable = tuple(f for f in pii if f.field is None)
            steps = replace(steps, redact=redactable)
            if len(redactable) < len(pii):
                candidates = _keep_private(config, candidates, rejected, f"pii:{types}")
        else:
            candidates = _keep_private(config, candidates, rejected, f"pii:{types}")

    # Boundaries: data that must not leave, unless it was redacted away.
    redacted = {id(f) for f in steps.redact}
    for boundary in config.boundaries:
        held = [f for f in _boundary_pii(boundary, obs) if id(f) not in redacted]
        unread = obs.request.unreadable
        if not (held or unread) or all(m.boundary == "private" for m in candidates):
            continue
        # Text the router cannot read (token ids) may hold anything: it stays inside too.
        types = ",".join(sorted({f.type for f in held} | ({"UNREADABLE"} if unread else set())))
        if boundary.action == "block" and not any(m.boundary == "private" for m in candidates):
            return _block(
                decision,
                decision.decision,
                boundary.status,
                boundary.message,
                code="boundary_blocked",
                note=f"boundary={boundary.name}",
            )
        candidates = _keep_private(
            config, candidates, rejected, f"boundary={boundary.name}:{types}"
        )

    # Budget: the estimated cost must fit in what the tenant has left of its ceiling.
    notes: list[str] = []
    ceiling: float | None = None
    budget = config.budgets
    if budget is not None and decision.tenant is not None:
        limit = ceiling = budget.limit_for(decision.tenant)
        spent = pool.tenant_spent
        if limit is not None and not _fits(
            config, obs, steps, spent, _preferred(candidates, pool), limit
        ):
            hard = limit * budget.hard_limit_ratio if budget.hard_limit_ratio else None
            exhausted = _exhausted(decision, budget.window_s, limit)
            if budget.on_exhausted == "reject":
                return exhausted
            allowed = {m.name for m in candidates} | {m.name for m in config.models}
            allowed &= {m.name for m in _allowed_models(config, obs, steps)}
            pool_names = budget.step_down_to or tuple(allowed)
            cheaper = [m for m in config.cheapest(pool_names) if m.name in allowed]
            if not cheaper:
                return exhausted
            rejected += [f"{m.name}:budget" for m in candidates if m.name != cheaper[0].name]
            candidates = cheaper[:1] + [m for m in cheaper[1:] if m.cost <= cheaper[0].cost]
            notes.append(f"budget=step_down({limit:g})")
            # Stepped down, spending is bounded by the hard limit only (none: unbounded).
            ceiling = hard
            if not _fits(config, obs, steps, spent, _preferred(candidates, pool), hard):
                return exhausted

    if ceiling is not None and budget is not None and budget.cap_completion:
        # What was charged bounds what may be spent: the answer gets the tokens it paid for.
        steps = replace(steps, max_tokens=_completion_tokens(config, obs, steps))

    # Health: the first healthy candidate wins.
    chosen = next((m for m in candidates if m.name not in pool.unhealthy), None)
    for model in candidates:
        if model is chosen:
            break
        rejected.append(f"{model.name}:unhealthy")
    learned = None
    if rule is not None and rule.learn is not None and chosen is not None:
        # The bandit picks only among candidates that passed every filter above.
        usable = [m for m in candidates if m.name not in pool.unhealthy]
        after = candidates[candidates.index(chosen) + 1 :]
        rejected += [f"{m.name}:unhealthy" for m in after if m.name in pool.unhealthy]
        if ceiling is not None:
            fitting = [
                m for m in usable if _fits(config, obs, steps, pool.tenant_spent, m, ceiling)
            ]
            rejected += [f"{m.name}:budget" for m in usable if m not in fitting]
            usable = fitting or [chosen]  # the first healthy one fitted: it was checked above
        context = learn_context(rule, obs)
        learned = bandit.pick(
            [bandit.Candidate(m.name, m.cost) for m in usable],
            pool.estimates.get(context, ContextEstimates()),
            rule.learn,
            random.Random(pool.seed),
            context,
        )
        chosen = next(m for m in usable if m.name == learned.model)
        notes.append(f"learn={'explore' if learned.explored else 'exploit'}")
    if chosen is None:
        if (
            not candidates
        ):  # unreachable with a validated config: the cheapest model is always allowed
            return _block(
                decision,
                decision.decision,
                503,
                "No model may serve this request.",
                code="no_model",
                error_type="server_error",
            )
        chosen = candidates[0]
        notes.append("all_candidates_unhealthy")
    if chosen.reasoning_family is None and steps.reasoning is not None:
        steps = replace(steps, reasoning=None)
    cost = _estimate_cost(config, obs, chosen, steps)
    return replace(
        decision,
        model=chosen,
        rejected=tuple(rejected),
        notes=(*decision.notes, *notes),
        steps=steps,
        cost=cost,
        budget_limit=ceiling,
        pick=learned,
    )


def learn_context(rule: DecisionConfig, obs: Observation) -> str:
    """The estimates a learning decision reads and updates: its own, or its domain's."""
    assert rule.learn is not None
    if rule.learn.context == "domain" and obs.classified is not None:
        return f"domain:{obs.classified.domain}"
    return f"decision:{rule.name}"


def learning_contexts(config: RouterConfig, obs: Observation) -> list[str]:
    """Every context a decision on `obs` may read: what the router loads before deciding."""
    return sorted({learn_context(d, obs) for d in config.decisions if d.learn is not None})


def _preferred(candidates: Sequence[ModelConfig], pool: PoolState) -> ModelConfig | None:
    """The candidate the health step will choose: the first healthy one, else the first."""
    return next((m for m in candidates if m.name not in pool.unhealthy), None) or next(
        iter(candidates), None
    )


def _fits(
    config: RouterConfig,
    obs: Observation,
    steps: Steps,
    spent: float,
    model: ModelConfig | None,
    limit: float | None,
) -> bool:
    return model is None or fits(spent, _estimate_cost(config, obs, model, steps), limit)


def _exhausted(decision: Decision, window_s: int, limit: float) -> Decision:
    who = (
        "Requests without a verified tenant have"
        if decision.tenant == UNVERIFIED
        else f"Tenant {decision.tenant!r} has"
    )
    return _block(
        decision,
        decision.decision,
        429,
        f"{who} no budget left for this request (the ceiling is {limit:g} cost units per "
        f"{window_s} s window); retry later.",
        code="budget_exhausted",
        error_type="rate_limit_error",
    )


def _steps(rule: DecisionConfig | None) -> Steps:
    if rule is None:
        return Steps()
    return Steps(
        system_prompt=rule.system_prompt,
        reasoning=rule.reasoning,
        max_tokens=rule.max_tokens,
        headers=dict(rule.headers),
    )


def _acted_on_pii(config: RouterConfig, obs: Observation) -> list[PiiFinding]:
    """PII found by the policy's pii signals (what a decision's `pii` step acts on)."""
    if obs.classified is None:
        return []
    found: dict[int, PiiFinding] = {}
    for signal in config.signals:
        if isinstance(signal, PiiSignal):
            for f in _pii_matching(obs.classified.pii, signal.pii_types, signal.min_score):
                found[id(f)] = f
    return list(found.values())


def _boundary_pii(boundary: BoundaryConfig, obs: Observation) -> list[PiiFinding]:
    if obs.classified is None:
        return []
    return _pii_matching(obs.classified.pii, boundary.pii_types, boundary.min_score)


def _keep_private(
    config: RouterConfig, candidates: list[ModelConfig], rejected: list[str], why: str
) -> list[ModelConfig]:
    private = [m for m in candidates if m.boundary == "private"]
    rejected += [f"{m.name}:{why}" for m in candidates if m.boundary == "external"]
    if private:
        return private
    cheapest = [m for m in config.cheapest() if m.boundary == "private"]
    return cheapest[:1]


def _allowed_models(config: RouterConfig, obs: Observation, steps: Steps) -> list[ModelConfig]:
    """Models no boundary forbids for this request."""
    redacted = {id(f) for f in steps.redact}
    held = any(id(f) not in redacted for b in config.boundaries for f in _boundary_pii(b, obs))
    held = held or bool(config.boundaries and obs.request.unreadable)
    return [m for m in config.models if not (held and m.boundary == "external")]


def _estimate_cost(
    config: RouterConfig, obs: Observation, model: ModelConfig, steps: Steps
) -> float:
    completion = _completion_tokens(config, obs, steps) * _choices(obs.request.body)
    return (obs.tokens + completion) * model.cost / 1e6


def _completion_tokens(config: RouterConfig, obs: Observation, steps: Steps) -> int:
    """The completion tokens a request is charged for, per choice: what it asked, else the
    budget's estimate, under the decision's own cap."""
    body = obs.request.body
    asked = body.get("max_completion_tokens") or body.get("max_tokens")
    default = config.budgets.completion_tokens_estimate if config.budgets else 256
    completion = asked if isinstance(asked, int) and asked > 0 else default
    if steps.max_tokens is not None:
        completion = min(completion, steps.max_tokens)
    return completion


def _choices(body: Mapping[str, object]) -> int:
    """How many completions one request asks for (`n`, completions' `best_of`)."""
    counts = [body.get(key) for key in ("n", "best_of")]
    return max([1, *(c for c in counts if isinstance(c, int) and not isinstance(c, bool))])


def _block(
    decision: Decision,
    name: str,
    status: int,
    message: str,
    *,
    code: str = "blocked_by_policy",
    error_type: str = "invalid_request_error",
    note: str | None = None,
) -> Decision:
    notes = (*decision.notes, note) if note else decision.notes
    return replace(
        decision,
        action="block",
        decision=name,
        status=status,
        message=message,
        code=code,
        model=None,
        notes=notes,
        error_type=error_type,
    )
