"""The routing core: holds the live policy and turns a parsed request into a `Decision`.

It adds to the pure policy what needs time and state: the classifier call under its time
budget, what a request gets when its signals are missing (required ones: `routing.on_unavailable`;
routing-only ones: decided on the cheap signals, marked degraded; the same for a signal the
loaded model has no head for, such as `harmful` without the harm head), the fail-open or fail-closed
behaviour, upstream health, budget spending, and swapping in a new policy. The ext_proc adapter,
the gRPC API and the CLI all route through here.

Time budgets: the classifier gets `routing.decision_timeout_ms`, or `routing.required_timeout_ms`
when a required signal is at stake for this request; the rest of deciding (the budget store,
the policy) gets `decision_timeout_ms` on its own.

Admission (`routing.admission: estimate`): before a request joins the classifier's queue, the
classifier's estimate of its wait is set against what is left of its budget. When it would not
be classified in time it is not queued: it is decided at once as a timeout would decide it, with
the cause `busy` (the queue drains instead of growing). The timeout stays as the backstop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import structlog

from meritorder import policy, telemetry
from meritorder.budget import BudgetStore, InMemoryBudgetStore, Window
from meritorder.config import BudgetConfig, ModelConfig, RouterConfig
from meritorder.cost import cost
from meritorder.errors import RequestError
from meritorder.health import HealthMonitor
from meritorder.learning.bandit import rules
from meritorder.learning.config import LearnConfig, reward_of
from meritorder.learning.store import EstimatesStore, InMemoryEstimates
from meritorder.outcomes import (
    Feedback,
    InMemoryOutcomes,
    Outcome,
    OutcomeStore,
    Pending,
    StoreUnavailable,
)
from meritorder.policy import (
    Classified,
    Decision,
    Note,
    Observation,
    PoolState,
    Rejection,
    Routed,
    blocked,
    routed,
)
from meritorder.pool import ModelLoad, PoolMonitor
from meritorder.pool.hints import PoolHintsConfig, pool_hints
from meritorder.request import RequestView
from meritorder.sessions import (
    InMemorySessions,
    SessionStore,
    SessionView,
    advance,
    session_name,
    user_turn,
)
from meritorder.signals.base import PARTIAL_READ
from meritorder.tenant import TENANT_HEADER, UNVERIFIED, tenant_of

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = structlog.get_logger("meritorder.router")

# Decisions re-made when concurrent requests took the budget between the read and the reserve.
_RESERVE_ATTEMPTS = 3


class Classifier(Protocol):
    """What the router needs from `classifiers`: the policy's view of one request's signals."""

    async def classify(self, request: RequestView) -> Classified: ...


# A classifier that knows its queue also has `estimate_wait_s(request) -> float | None`: the
# seconds `request` would wait if queued now (None: no estimate yet). Optional, so fakes and
# other classifiers need not have it; without it every request is queued.
Estimate = Callable[[RequestView], float | None]
# One that can plan a request without reading it also has `async read_share(request) -> float |
# None`: the share of it the attack head would read (1.0: whole). Optional too; without it a
# request too long to read whole is classified before it is refused.
ReadShare = Callable[[RequestView], Awaitable[float | None]]


class Router:
    """Decides where each request goes under the current policy."""

    def __init__(
        self,
        config: RouterConfig,
        classifier: Classifier | None = None,
        budgets: BudgetStore | None = None,
        health: HealthMonitor | None = None,
        outcomes: OutcomeStore | None = None,
        sessions: SessionStore | None = None,
        *,
        enforce_timeout: bool = True,
        estimates: EstimatesStore | None = None,
        seed_key: bytes | None = None,
        pool: PoolMonitor | None = None,
    ) -> None:
        # Offline tools (route, explain, eval) have no client waiting: they switch the budget off.
        self.enforce_timeout = enforce_timeout
        self.classifier = classifier
        self.budgets = budgets or InMemoryBudgetStore()
        self.health = health or HealthMonitor()
        self.outcomes = InMemoryOutcomes() if outcomes is None else outcomes
        self.sessions = InMemorySessions() if sessions is None else sessions
        # What learning decisions learned.
        self.estimates = InMemoryEstimates() if estimates is None else estimates
        # Each model's load (app/server.py refreshes it).
        self.pool = PoolMonitor() if pool is None else pool
        # Keys the seed of a learned pick's draws: a client that sets its own x-request-id
        # cannot choose them. Offline tools pass a fixed key, so their decisions replay.
        self.seed_key = os.urandom(16) if seed_key is None else seed_key
        self.replace_config(config)

    @property
    def config(self) -> RouterConfig:
        return self._config

    def replace_config(self, config: RouterConfig) -> None:
        """Use `config` for every request that starts from now on."""
        self._config = config
        self._models_json, self._model_json = _models_listing(config)
        self.health.failures = config.routing.unhealthy_after
        self._reads_load = _reads_load(config)

    @property
    def max_body_bytes(self) -> int:
        return self._config.limits.max_body_bytes

    @property
    def default_virtual_model(self) -> str:
        return self._config.virtual_models[0]

    @property
    def protected_headers(self) -> frozenset[str]:
        hints = self._config.pool_hints
        return frozenset(hints.protected()) if hints is not None else frozenset()

    async def classify(self, request: RequestView) -> tuple[Classified | None, Mapping[str, float]]:
        """The classifier's view of `request` (None without a classifier), whether or not the
        policy reads it, and the policy's signals that fire on it."""
        config = self._config
        classified = await self.classifier.classify(request) if self.classifier else None
        return classified, policy.evaluate_signals(config, Observation(request, {}, classified))

    def models_json(self) -> bytes:
        """The body of `GET /v1/models`: virtual and real models of the policy."""
        return self._models_json

    def model_json(self, name: str) -> bytes | None:
        """The body of `GET /v1/models/{name}`, or None for a name the policy does not know."""
        return self._model_json.get(name)

    async def route(
        self,
        request: RequestView,
        headers: Mapping[str, str] | None = None,
        observed: Observation | None = None,
    ) -> Decision:
        """The decision for `request`; raises `RequestError` for an unknown model or fail-closed.
        `observed` skips classification when the caller already observed the request."""
        config = self._config  # one policy for the whole request, even if a reload lands meanwhile
        started = time.monotonic()  # the classifier's budget counts from here
        headers = headers or {}
        if not policy.is_virtual(config, request.model) and config.model(request.model) is None:
            raise RequestError(
                404,
                f"The model {request.model!r} does not exist. Use one of "
                f"{[*config.virtual_models, *(m.name for m in config.models)]}.",
                param="model",
                code="model_not_found",
            )
        try:
            if observed is None:
                observed, missing = await self._observe_in_time(config, request, headers, started)
            else:
                unread = observed.classified is None and _needs_classifier(config, request)
                missing = "unavailable" if unread else None
            session = await self._session(config, request, headers)
            if session is not None:
                observed = replace(observed, session=session)
            deciding = self._decide(config, request, observed, missing)
            # Only the budget store can still be slow; without one a decision is a few
            # microseconds of pure policy, and a timeout task would cost more than the decision.
            if self.enforce_timeout and config.budgets is not None:
                decision = await asyncio.wait_for(
                    deciding, config.routing.decision_timeout_ms / 1000
                )
            else:
                decision = await deciding
        except Exception as exc:  # deciding must never take the request down with it
            decision = self._on_error(config, request, exc)
            session = None
        if session is not None:
            await self._remember(config, session, decision)
        if config.pool_hints is not None:
            decision = _with_pool_hints(config, config.pool_hints, request, headers, decision)
        return decision

    async def _session(
        self, config: RouterConfig, request: RequestView, headers: Mapping[str, str]
    ) -> SessionView | None:
        """The request's session, when the policy keeps sessions and the request names one."""
        if config.sessions is None or not policy.is_virtual(config, request.model):
            return None
        tenant = tenant_of(headers, config.budgets.header) if config.budgets else ""
        name = session_name(config.sessions, request, headers, tenant)
        if name is None:
            return None
        last = await self.sessions.get(name)
        return SessionView(name, user_turn(request, name, last), last)

    async def _remember(self, config: RouterConfig, view: SessionView, decision: Decision) -> None:
        """The session after a routed turn; a block leaves it as it was."""
        if config.sessions is None or not isinstance(decision, Routed):
            return
        rule = next((d for d in config.decisions if d.name == decision.rule), None)
        priority = rule.priority if rule is not None else -math.inf
        after = advance(view, decision.model.name, decision.rule, priority, decision.model.cost)
        telemetry.record_session_turn(view, after, decision.rule)
        await self.sessions.put(view.name, after, config.sessions.ttl_s)

    async def dispatch(
        self, request_id: str, decision: Decision, traceparent: str = ""
    ) -> Pending | None:
        """The facts a routed request carries to its outcome (None for a block), remembered
        under its id at once: feedback may arrive before Envoy reports the outcome."""
        if not isinstance(decision, Routed):
            return None
        budgets = self._config.budgets
        pending = Pending(
            model=decision.model.name,
            rule=decision.rule,
            cost_per_million=decision.model.cost,
            estimated_cost=decision.cost,
            tenant=decision.tenant or "",
            budget_window_s=budgets.window_s if budgets and decision.tenant else 0,
            traceparent=traceparent,
            decided_at=time.time(),
            learn_context=decision.pick.context if decision.pick is not None else "",
        )
        if request_id:
            await self.outcomes.add(Outcome(request_id, pending))
        self.pool.dispatched(pending.model)
        return pending

    async def settle(self, outcome: Outcome) -> None:
        """Take in a routed request's outcome: the model's health, the tenant's budget corrected
        from the estimate to the measured cost, the outcome store (for feedback), telemetry."""
        pending = outcome.pending
        self.health.observe_status(pending.model, outcome.status or 0)
        self.pool.settled(pending.model, outcome.first_byte_s, outcome.duration_s)
        measured = outcome.measured_cost
        if measured is not None:
            await self._settle_budget(pending, measured)
        await self.outcomes.add(outcome)
        telemetry.record_outcome(outcome)
        await self._reward(pending, status=outcome.status)

    async def settle_usage(
        self, request_id: str, pending: Pending, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """A streamed answer's usage, read from its events (the access log carries none): the
        tenant's budget settles at the measured cost."""
        measured = cost(pending.cost_per_million, prompt_tokens, completion_tokens)
        await self._settle_budget(pending, measured)
        telemetry.record_stream_usage(
            request_id, pending, prompt_tokens, completion_tokens, measured
        )

    async def _settle_budget(self, pending: Pending, measured: float) -> None:
        """Correct the tenant's reservation from the estimate to `measured`, in its own window."""
        if pending.tenant and pending.budget_window_s:
            window = Window(pending.tenant, pending.budget_window_s, pending.decided_at or None)
            await self.budgets.settle(window, pending.estimated_cost, measured)

    async def feedback(
        self, feedback: Feedback, headers: Mapping[str, str], *, any_tenant: bool = False
    ) -> Outcome:
        """Record a verdict on a routed request's answer; raises `RequestError` 404 for an
        unknown or expired request (or another tenant's, unless `any_tenant`: the operator's
        own API), 409 when it was judged already."""
        try:
            outcome = await self.outcomes.get(feedback.request_id)
        except StoreUnavailable as error:
            raise _store_down() from error
        budgets = self._config.budgets
        # A tenant judges its own requests only; another's look unknown.
        if (
            outcome is not None
            and not any_tenant
            and outcome.pending.tenant
            and budgets is not None
            and tenant_of(headers, budgets.header) != outcome.pending.tenant
        ):
            outcome = None
        if outcome is None:
            raise RequestError(
                404,
                f"No routed request {feedback.request_id!r} is known: send the x-request-id of "
                "a routed response (or the response's id), before the router forgets it "
                "(an hour by default).",
                param="request_id",
                code="unknown_request",
            )
        try:
            added = await self.outcomes.add_feedback(outcome, feedback)
        except StoreUnavailable as error:
            raise _store_down() from error
        if not added:
            raise RequestError(
                409,
                f"The request {outcome.request_id!r} has feedback already; each request takes "
                "one verdict.",
                param="request_id",
                code="feedback_exists",
            )
        telemetry.record_feedback(outcome, feedback)
        await self._reward(outcome.pending, score=feedback.score)
        return outcome

    async def _reward(
        self, pending: Pending, *, score: float | None = None, status: int | None = None
    ) -> None:
        """Feed an outcome to the estimates of the learning decision that chose its model, as
        that decision's `learn.reward` says: the feedback score, or the upstream's success."""
        if not pending.learn_context:
            return
        learn = self._learn_config(pending.learn_context)
        reward = reward_of(learn, score=score, status=status) if learn is not None else None
        if reward is not None:
            await self._observe(pending.learn_context, pending.model, reward, learn)

    async def observe(self, request: RequestView, headers: Mapping[str, str]) -> Observation:
        """What the policy sees of `request`; the classifier runs only if the policy needs it:
        for a virtual model with classifier signals, or for any model when boundaries apply."""
        config = self._config
        classified = None
        if self._classifies(config, request):
            assert self.classifier is not None
            classified = await self.classifier.classify(request)
        return Observation(request, headers, classified)

    def _classifies(self, config: RouterConfig, request: RequestView) -> bool:
        return self.classifier is not None and _needs_classifier(config, request)

    async def _observe_in_time(
        self,
        config: RouterConfig,
        request: RequestView,
        headers: Mapping[str, str],
        started: float,
    ) -> tuple[Observation, str | None]:
        """The observation, and why the classifier's signals are missing from it (None: they are
        there, or the policy needs none): `busy` (not queued: it would not be read in time),
        `timeout`, an error's type. Classifier trouble never fails the request here."""
        if not _needs_classifier(config, request):
            return Observation(request, headers), None
        if self.classifier is None:
            return Observation(request, headers), "unavailable"
        required = config.required_signals(policy.is_virtual(config, request.model))
        routing = config.routing
        budget_ms = routing.required_timeout_ms if required else routing.decision_timeout_ms
        left_s = budget_ms / 1000 - (time.monotonic() - started)
        with telemetry.stage("classify") as span:
            why = await self._too_long_to_read(config, request, required)
            if why is None and self.enforce_timeout and routing.admission == "estimate":
                why = self._refused(request, left_s, span)
            if why is None:
                classifying = self.classifier.classify(request)
                try:
                    if self.enforce_timeout:
                        classified = await asyncio.wait_for(classifying, max(0.0, left_s))
                    else:
                        classified = await classifying
                except Exception as exc:  # timeout or failure: decided without, never silently
                    why = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            if why is not None:
                span.set_attribute("meritorder.classifier.ran", False)
                span.set_attribute("meritorder.classifier.missing", why)
                log.warning(
                    "classifier signals missing", why=why, required=required, budget_ms=budget_ms
                )
                return Observation(request, headers), why
            span.set_attribute("meritorder.classifier.ran", True)
        return Observation(request, headers, classified), None

    async def _too_long_to_read(
        self, config: RouterConfig, request: RequestView, required: Sequence[str]
    ) -> str | None:
        """`partial_read` when a required signal must read the request whole (`read: all`),
        the policy blocks what it cannot read, and the classifier can tell from planning alone
        that it would read only part: the 413 comes without classifying (a request past the
        attack head's budget costs its whole budget to classify, seconds on a slow CPU). An
        attack in the part that would have been read is then refused as too long, not as an
        attack: refused either way. None otherwise (classify)."""
        if config.routing.on_unavailable.action != "block":
            return None  # a private or named model still needs the PII found in it
        if not any(s.name in required and s.reads_whole() for s in config.signals):
            return None
        share: ReadShare | None = getattr(self.classifier, "read_share", None)
        if share is None:
            return None
        read = await share(request)
        return PARTIAL_READ if read is not None and read < 1.0 else None

    def _refused(self, request: RequestView, left_s: float, span: Span) -> str | None:
        """`busy` when the classifier estimates that `request` would wait longer than the
        `left_s` seconds of its budget; None (queue it) when it fits or there is no estimate."""
        estimate: Estimate | None = getattr(self.classifier, "estimate_wait_s", None)
        wait_s = estimate(request) if estimate is not None else None
        if wait_s is None:  # nothing measured yet: no grounds to refuse
            return None
        telemetry.record_wait_estimate(span, wait_s)
        return "busy" if wait_s > left_s else None

    async def _decide(
        self,
        config: RouterConfig,
        request: RequestView,
        obs: Observation,
        missing: str | None,
    ) -> Decision:
        virtual = policy.is_virtual(config, request.model)  # explicit requests never learn
        contexts = policy.learning_contexts(config, obs) if virtual else []
        estimates = await self.estimates.read(contexts) if contexts else {}
        # Only a learned pick draws: no keyed hash for a request that cannot learn.
        seed = _seed(self.seed_key, obs.headers.get("x-request-id")) if contexts else 0
        load = self._load(config)

        def decide(spent: float) -> Decision:
            pool = PoolState(
                self.health.unhealthy, spent, estimates=estimates, seed=seed, load=load
            )
            with telemetry.stage("policy"):
                decision = policy.decide(config, obs, pool)
            if missing is not None:
                return self._without_signals(config, request, decision, missing)
            if not virtual:
                return decision
            # The classifier answered, but could not compute these: its model has no head for
            # them, or it read only part of a request they must read whole.
            unread = {s.name: why for s in config.signals if (why := s.unavailable(obs))}
            if not unread:
                return _marked_if_partly_read(config, obs, decision)
            why = ",".join(dict.fromkeys(unread.values()))
            # A refusal stands (an attack the model did read stays a 403): no missing signal
            # could make it safer.
            if not isinstance(decision, Routed):
                return decision.noted(
                    Note("classifier", why), Note("unavailable", ",".join(unread))
                )
            return self._without_signals(config, request, decision, why, list(unread))

        if config.budgets is None:
            decision = decide(0.0)
        else:
            decision = await self._decide_and_reserve(config.budgets, obs, decide)
        if isinstance(decision, Routed) and decision.pick is not None:
            await self.estimates.note_pick(decision.pick.context, decision.pick.explored)
        return decision

    @property
    def reads_load(self) -> bool:
        """Whether the live policy reads the pool's load (metrics, TTFT limits, an SLO)."""
        return self._reads_load

    def pool_state(self) -> Mapping[str, ModelLoad]:
        """Each model's load as a decision would read it now (empty when the policy reads none)."""
        return self._load(self._config)

    def _load(self, config: RouterConfig) -> Mapping[str, ModelLoad]:
        """The pool state a decision reads; none when the policy reads no load."""
        reads = self._reads_load if config is self._config else _reads_load(config)  # a reload
        if not reads:
            return {}
        return self.pool.snapshot(config.models, config.routing.pool_stale_s)

    async def observe_reward(self, context: str, model: str, reward: float) -> bool:
        """Feed one outcome (a reward in [0, 1]) back to the context a learning decision
        picked `model` in (`Decision.pick.context`); settle and feedback call it. True when
        it reset the context (a change detected: counted and traced)."""
        return await self._observe(context, model, reward, self._learn_config(context))

    async def _observe(
        self, context: str, model: str, reward: float, learn: LearnConfig | None
    ) -> bool:
        reset = await self.estimates.observe(context, model, reward, rules(learn))
        if reset:
            telemetry.record_learning_reset(context, model)
        return reset

    def _learn_config(self, context: str) -> LearnConfig | None:
        """The `learn` block of the decision that owns a learning context."""
        return next(
            (
                d.learn
                for d in self._config.decisions
                if d.learn is not None
                and (
                    context == f"decision:{d.name}"
                    or (context.startswith("domain:") and d.learn.context == "domain")
                )
            ),
            None,
        )

    def _without_signals(
        self,
        config: RouterConfig,
        request: RequestView,
        decision: Decision,
        why: str,
        unread: Sequence[str] | None = None,
    ) -> Decision:
        """A decision made without the classifier's signals (all of them, or only the `unread`
        ones its model cannot compute): `routing.on_unavailable` when one of them was required,
        else marked degraded."""
        notes = (*decision.notes, Note("classifier", why))
        if unread is None:
            required = config.required_signals(policy.is_virtual(config, request.model))
        else:
            notes = (*notes, Note("unavailable", ",".join(unread)))
            required = [s.name for s in config.signals if s.name in unread and s.must_compute()]
        if not required:
            # Routing-only signals may fail open, marked with what could not be read. Required
            # ones never do, whatever the cause: a timeout, an error, or no classifier at all.
            return replace(decision, notes=(*notes, Note("degraded", "signals_skipped")))
        unavailable = config.routing.on_unavailable
        notes = (*notes, Note("required", ",".join(required)))
        log.warning(
            "required signals missing", why=why, required=required, action=unavailable.action
        )
        retry = f"retry in {unavailable.retry_after_s} s."
        if unavailable.action == "block" and why == PARTIAL_READ:  # retrying cannot help
            message = "This request is too long for the router to check whole; send less text."
            return _refuse(decision, 413, message, notes, code="too_long_to_check")
        if unavailable.action == "block":
            message = f"The router could not check this request in time; {retry}"
            return _refuse(decision, unavailable.status, message, notes)
        if unavailable.action == "route":
            safe = config.model(unavailable.model or "")
            assert safe is not None  # the config validator checked the name
            decision = replace(decision, notes=(*notes, Note("degraded", "required_route")))
            return routed(decision, safe, rule="signals_unavailable")
        model = decision.chosen
        if isinstance(decision, Routed) and model is not None and model.boundary == "external":
            private = _cheapest_private(config, request.api)
            if private is None:  # nothing private to keep it on: refuse rather than leak
                message = f"No private model may serve this unchecked request; {retry}"
                return _refuse(decision, unavailable.status, message, notes)
            rejected = (
                *decision.rejected,
                Rejection(model.name, "signals", "signals_unavailable"),
            )
            decision = replace(decision, model=private, rejected=rejected)
        return replace(decision, notes=(*notes, Note("degraded", "required_private")))

    async def _decide_and_reserve(
        self, budgets: BudgetConfig, obs: Observation, decide: Callable[[float], Decision]
    ) -> Decision:
        """Decide on the tenant's spending, then reserve the decision's cost in one atomic step
        of the store. If concurrent requests spent meanwhile, decide again on what is left."""
        tenant = tenant_of(obs.headers, budgets.header)
        window = Window(tenant, budgets.window_s)
        spent = await self.budgets.spent(window)
        for attempt in range(_RESERVE_ATTEMPTS + 1):
            if attempt == _RESERVE_ATTEMPTS:
                # Still contended: decide as if the budget were spent (stepped down or 429).
                spent = math.inf
            decision = decide(spent)
            if not isinstance(decision, Routed):
                return decision
            held = await self.budgets.reserve(window, decision.cost, decision.budget_limit)
            telemetry.METRICS.budget_spent.labels(tenant=tenant).set(held.spent)
            if held.fitted:
                if held.local:  # checked against this process's spending only
                    decision = decision.noted(Note("budget_store", "local"))
                return decision
            spent = held.spent
        # A decision on a spent budget is stepped down without a hard limit (no ceiling) or a
        # 429: only a broken store refuses that reservation.
        raise RuntimeError(f"the budget store refused a reservation for {tenant!r} with no limit")

    def _on_error(self, config: RouterConfig, request: RequestView, exc: Exception) -> Decision:
        why = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        if config.routing.on_error == "fail_closed":
            log.error("decision failed, failing closed", why=why, error=str(exc))
            raise RequestError(
                503,
                "The router could not decide where to send this request; try again.",
                type="server_error",
                code="router_unavailable",
            ) from exc
        model = config.model(request.model) or config.model(config.default_model)
        assert model is not None  # the config validator guarantees default_model exists
        if request.api not in model.apis:  # never a model that cannot serve the API
            model = next((m for m in config.cheapest() if request.api in m.apis), model)
        if config.boundaries and model.boundary == "external":
            # Unread data may hold what a boundary protects: keep it inside.
            model = _cheapest_private(config, request.api) or model
        if config.budgets is not None:
            # Nothing was reserved against a budget: spend no more than the cheapest model costs.
            allowed = [
                m
                for m in config.cheapest()
                if (m.boundary == "private" or not config.boundaries) and request.api in m.apis
            ]
            model = allowed[0] if allowed else model
        log.warning(
            "decision failed, routing without signals", why=why, model=model.name, error=str(exc)
        )
        return Routed(rule="fallback", model=model, notes=(Note("fallback", why),))


def _with_pool_hints(
    config: RouterConfig,
    hints: PoolHintsConfig,
    request: RequestView,
    headers: Mapping[str, str],
    decision: Decision,
) -> Decision:
    """A routed decision with the pool's hint headers (`meritorder/pool/hints.py`) added."""
    if not isinstance(decision, Routed):
        return decision
    rule = next((d for d in config.decisions if d.name == decision.rule), None)
    tenant = tenant_of(headers, config.budgets.header if config.budgets else TENANT_HEADER)
    verified = tenant if tenant != UNVERIFIED else None
    session = (
        session_name(config.sessions, request, headers, tenant)
        if config.sessions is not None
        else None
    )
    extra = pool_hints(
        hints,
        objective=rule.objective if rule is not None else None,
        tenant=verified,
        session=session,
        max_output_tokens=decision.steps.max_tokens or request.max_output_tokens,
    )
    if not extra:
        return decision
    steps = replace(decision.steps, headers={**decision.steps.headers, **extra})
    return replace(decision, steps=steps)


def _reads_load(config: RouterConfig) -> bool:
    """Whether any part of the policy reads the pool's load (metrics, TTFT limits, an SLO)."""
    return any(m.metrics_url or m.saturation.ttft_ms for m in config.models) or any(
        d.slo is not None or d.pick == "headroom" for d in config.decisions
    )


def _store_down() -> RequestError:
    return RequestError(
        503,
        "The router's outcome store is unavailable; retry the feedback shortly.",
        type="server_error",
        code="store_unavailable",
    )


def _seed(key: bytes, request_id: str | None) -> int:
    """The seed of a decision's draws: the request id under the router's key, so a decision can
    be replayed by whoever holds the key, and chosen by no client."""
    if not request_id:
        return int.from_bytes(os.urandom(8), "big")
    digest = hmac.new(key, request_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def _needs_classifier(config: RouterConfig, request: RequestView) -> bool:
    """Classifier signals matter for a virtual model; boundaries matter for every model."""
    if config.boundaries:
        return True
    return policy.is_virtual(config, request.model) and config.uses_classifier()


def _refuse(
    decision: Decision,
    status: int,
    message: str,
    notes: tuple[Note, ...],
    code: str = "signals_unavailable",
) -> Decision:
    """The 503-style answer for a request whose required signals are missing (a 413 for one
    too long to read whole)."""
    return blocked(
        replace(decision, notes=(*notes, Note("degraded", "required_block"))),
        status,
        message,
        code=code,
        error_type="server_error" if status >= 500 else "invalid_request_error",
        rule="signals_unavailable",
    )


def _marked_if_partly_read(config: RouterConfig, obs: Observation, decision: Decision) -> Decision:
    """A routed decision whose classifier signals were computed on a spread of a long request
    (`read: spread`): it stands, marked degraded (cause `partial_read`), so it is counted and
    traced. A refusal needs no mark: what was read was enough."""
    if not isinstance(decision, Routed) or not any(s.partly_read(obs) for s in config.signals):
        return decision
    return decision.noted(Note("classifier", PARTIAL_READ), Note("degraded", "read_spread"))


def _cheapest_private(config: RouterConfig, api: str) -> ModelConfig | None:
    return next((m for m in config.cheapest() if m.boundary == "private" and api in m.apis), None)


def _models_listing(config: RouterConfig) -> tuple[bytes, dict[str, bytes]]:
    """`GET /v1/models`'s body, and each model's own (`GET /v1/models/{id}`)."""
    names = [*config.virtual_models, *(m.name for m in config.models)]
    data = {n: {"id": n, "object": "model", "created": 0, "owned_by": "meritorder"} for n in names}
    listing = json.dumps({"object": "list", "data": list(data.values())}).encode()
    return listing, {name: json.dumps(model).encode() for name, model in data.items()}
