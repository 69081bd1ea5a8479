"""The routing core: holds the live policy and turns a parsed request into a `Decision`.

It adds to the pure policy what needs time and state: the classifier call under its time
budget, what a request gets when its signals are missing (required ones: `routing.on_unavailable`;
routing-only ones: decided on the cheap signals, marked degraded), the fail-open or fail-closed
behaviour, upstream health, budget spending, and swapping in a new policy. The ext_proc adapter,
the gRPC API and the CLI all route through here.

Time budgets: the classifier gets `routing.decision_timeout_ms`, or `routing.required_timeout_ms`
when a required signal is at stake for this request; the rest of deciding (the budget store,
the policy) gets `decision_timeout_ms` on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

import structlog

from meritorder import policy, telemetry
from meritorder.budget import BudgetStore, InMemoryBudgetStore
from meritorder.config import BudgetConfig, ModelConfig, RouterConfig
from meritorder.errors import RequestError
from meritorder.health import HealthMonitor
from meritorder.learning.store import EstimatesStore, InMemoryEstimates
from meritorder.ledger import Ledger
from meritorder.policy import Classified, Decision, Observation, PoolState
from meritorder.request import ChatRequest
from meritorder.tenant import tenant_of

log = structlog.get_logger("meritorder.router")

# Decisions re-made when concurrent requests took the budget between the read and the reserve.
_RESERVE_ATTEMPTS = 3


class Classifier(Protocol):
    """What the router needs from `classifiers`: the policy's view of one request's signals."""

    async def classify(self, request: ChatRequest) -> Classified: ...


class Router:
    """Decides where each request goes under the current policy."""

    def __init__(
        self,
        config: RouterConfig,
        classifier: Classifier | None = None,
        budgets: BudgetStore | None = None,
        health: HealthMonitor | None = None,
        *,
        enforce_timeout: bool = True,
        estimates: EstimatesStore | None = None,
        seed_key: bytes | None = None,
    ) -> None:
        # Offline tools (route, explain, eval) have no client waiting: they switch the budget off.
        self.enforce_timeout = enforce_timeout
        self.classifier = classifier
        self.budgets = budgets or InMemoryBudgetStore()
        self.health = health or HealthMonitor()
        self.ledger = Ledger()
        self.estimates = estimates or InMemoryEstimates()  # what learning decisions learned
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

    def models_json(self) -> bytes:
        """The body of `GET /v1/models`: virtual and real models of the policy."""
        return self._models_json

    def model_json(self, name: str) -> bytes | None:
        """The body of `GET /v1/models/{name}`, or None for a name the policy does not know."""
        return self._model_json.get(name)

    async def route(
        self,
        request: ChatRequest,
        headers: Mapping[str, str] | None = None,
        observed: Observation | None = None,
    ) -> Decision:
        """The decision for `request`; raises `RequestError` for an unknown model or fail-closed.
        `observed` skips classification when the caller already observed the request."""
        config = self._config  # one policy for the whole request, even if a reload lands meanwhile
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
                observed, missing = await self._observe_in_time(config, request, headers)
            else:
                unread = observed.classified is None and _needs_classifier(config, request)
                missing = "unavailable" if unread else None
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
        return decision

    async def observe(self, request: ChatRequest, headers: Mapping[str, str]) -> Observation:
        """What the policy sees of `request`; the classifier runs only if the policy needs it:
        for a virtual model with classifier signals, or for any model when boundaries apply."""
        config = self._config
        classified = None
        if self._classifies(config, request):
            assert self.classifier is not None
            classified = await self.classifier.classify(request)
        return Observation(request, headers, classified)

    def _classifies(self, config: RouterConfig, request: ChatRequest) -> bool:
        return self.classifier is not None and _needs_classifier(config, request)

    async def _observe_in_time(
        self, config: RouterConfig, request: ChatRequest, headers: Mapping[str, str]
    ) -> tuple[Observation, str | None]:
        """The observation, and why the classifier's signals are missing from it (None: they are
        there, or the policy needs none). Classifier trouble never fails the request here."""
        if not _needs_classifier(config, request):
            return Observation(request, headers), None
        if self.classifier is None:
            return Observation(request, headers), "unavailable"
        required = config.required_signals(policy.is_virtual(config, request.model))
        routing = config.routing
        budget_ms = routing.required_timeout_ms if required else routing.decision_timeout_ms
        with telemetry.stage("classify") as span:
            classifying = self.classifier.classify(request)
            try:
                if self.enforce_timeout:
                    classified = await asyncio.wait_for(classifying, budget_ms / 1000)
                else:
                    classified = await classifying
            except Exception as exc:  # timeout or failure: decided without, never silently
                why = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                span.set_attribute("meritorder.classifier.ran", False)
                span.set_attribute("meritorder.classifier.missing", why)
                log.warning(
                    "classifier signals missing", why=why, required=required, budget_ms=budget_ms
                )
                return Observation(request, headers), why
            span.set_attribute("meritorder.classifier.ran", True)
        return Observation(request, headers, classified), None

    async def _decide(
        self,
        config: RouterConfig,
        request: ChatRequest,
        obs: Observation,
        missing: str | None,
    ) -> Decision:
        virtual = policy.is_virtual(config, request.model)  # explicit requests never learn
        contexts = policy.learning_contexts(config, obs) if virtual else []
        estimates = await self.estimates.read(contexts) if contexts else {}
        seed = _seed(self.seed_key, obs.headers.get("x-request-id"))

        def decide(spent: float) -> Decision:
            pool = PoolState(self.health.unhealthy, spent, estimates, seed)
            with telemetry.stage("policy"):
                decision = policy.decide(config, obs, pool)
            if missing is None:
                return decision
            return self._without_signals(config, request, decision, missing)

        if config.budgets is None:
            decision = decide(0.0)
        else:
            decision = await self._decide_and_reserve(config.budgets, obs, decide)
        if decision.pick is not None and decision.action == "route":
            await self.estimates.note_pick(decision.pick.context, decision.pick.explored)
        return decision

    async def observe_reward(self, context: str, model: str, reward: float) -> None:
        """Feed one outcome (a reward in [0, 1]) back to the context a learning decision
        picked `model` in (`Decision.pick.context`); the outcome and feedback seams call it."""
        learn = next(
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
        half_life = learn.half_life if learn is not None else None
        await self.estimates.observe(context, model, reward, half_life)

    def _without_signals(
        self, config: RouterConfig, request: ChatRequest, decision: Decision, why: str
    ) -> Decision:
        """A decision made without the classifier's signals: `routing.on_unavailable` when one of
        them was required, else marked degraded."""
        notes = (*decision.notes, f"classifier={why}")
        required = config.required_signals(policy.is_virtual(config, request.model))
        if not required:
            # Routing-only signals may fail open, marked with what could not be read. Required
            # ones never do, whatever the cause: a timeout, an error, or no classifier at all.
            return replace(decision, notes=(*notes, "degraded=signals_skipped"))
        unavailable = config.routing.on_unavailable
        notes = (*notes, "required=" + ",".join(required))
        log.warning(
            "required signals missing", why=why, required=required, action=unavailable.action
        )
        retry = f"retry in {unavailable.retry_after_s} s."
        if unavailable.action == "block":
            message = f"The router could not check this request in time; {retry}"
            return _refuse(decision, unavailable.status, message, notes)
        if unavailable.action == "route":
            safe = config.model(unavailable.model or "")
            assert safe is not None  # the config validator checked the name
            return replace(
                decision,
                action="route",
                decision="signals_unavailable",
                model=safe,
                notes=(*notes, "degraded=required_route"),
            )
        model = decision.model
        if decision.action == "route" and model is not None and model.boundary == "external":
            private = _cheapest_private(config)
            if private is None:  # nothing private to keep it on: refuse rather than leak
                message = f"No private model may serve this unchecked request; {retry}"
                return _refuse(decision, unavailable.status, message, notes)
            rejected = (*decision.rejected, f"{model.name}:signals_unavailable")
            decision = replace(decision, model=private, rejected=rejected)
        return replace(decision, notes=(*notes, "degraded=required_private"))

    async def _decide_and_reserve(
        self, budgets: BudgetConfig, obs: Observation, decide: Callable[[float], Decision]
    ) -> Decision:
        """Decide on the tenant's spending, then reserve the decision's cost in one atomic step
        of the store. If concurrent requests spent meanwhile, decide again on what is left."""
        tenant = tenant_of(obs.headers, budgets.header)
        spent = await self.budgets.spent(tenant, budgets.window_s)
        for attempt in range(_RESERVE_ATTEMPTS + 1):
            if attempt == _RESERVE_ATTEMPTS:
                # Still contended: decide as if the budget were spent (stepped down or 429).
                spent = math.inf
            decision = decide(spent)
            if decision.action != "route":
                return decision
            held = await self.budgets.reserve(
                tenant, decision.cost, decision.budget_limit, budgets.window_s
            )
            telemetry.METRICS.budget_spent.labels(tenant=tenant).set(held.spent)
            if held.fitted:
                if held.local:  # checked against this process's spending only
                    decision = replace(decision, notes=(*decision.notes, "budget_store=local"))
                return decision
            spent = held.spent
        # A decision on a spent budget is stepped down without a hard limit (no ceiling) or a
        # 429: only a broken store refuses that reservation.
        raise RuntimeError(f"the budget store refused a reservation for {tenant!r} with no limit")

    def _on_error(self, config: RouterConfig, request: ChatRequest, exc: Exception) -> Decision:
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
        if config.boundaries and model.boundary == "external":
            # Unread data may hold what a boundary protects: keep it inside.
            model = _cheapest_private(config) or model
        if config.budgets is not None:
            # Nothing was reserved against a budget: spend no more than the cheapest model costs.
            allowed = [
                m for m in config.cheapest() if m.boundary == "private" or not config.boundaries
            ]
            model = allowed[0] if allowed else model
        log.warning(
            "decision failed, routing without signals", why=why, model=model.name, error=str(exc)
        )
        return Decision("route", "fallback", model=model, notes=(f"fallback={why}",))


def _seed(key: bytes, request_id: str | None) -> int:
    """The seed of a decision's draws: the request id under the router's key, so a decision can
    be replayed by whoever holds the key, and chosen by no client."""
    if not request_id:
        return int.from_bytes(os.urandom(8), "big")
    digest = hmac.new(key, request_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def _needs_classifier(config: RouterConfig, request: ChatRequest) -> bool:
    """Classifier signals matter for a virtual model; boundaries matter for every model."""
    if config.boundaries:
        return True
    return policy.is_virtual(config, request.model) and config.uses_classifier()


def _refuse(decision: Decision, status: int, message: str, notes: tuple[str, ...]) -> Decision:
    """The 503-style answer for a request whose required signals are missing."""
    return replace(
        decision,
        action="block",
        decision="signals_unavailable",
        model=None,
        status=status,
        message=message,
        code="signals_unavailable",
        error_type="server_error",
        notes=(*notes, "degraded=required_block"),
    )


def _cheapest_private(config: RouterConfig) -> ModelConfig | None:
    return next((m for m in config.cheapest() if m.boundary == "private"), None)


def _models_listing(config: RouterConfig) -> tuple[bytes, dict[str, bytes]]:
    """`GET /v1/models`'s body, and each model's own (`GET /v1/models/{id}`)."""
    names = [*config.virtual_models, *(m.name for m in config.models)]
    data = {n: {"id": n, "object": "model", "created": 0, "owned_by": "meritorder"} for n in names}
    listing = json.dumps({"object": "list", "data": list(data.values())}).encode()
    return listing, {name: json.dumps(model).encode() for name, model in data.items()}
