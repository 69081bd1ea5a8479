"""The routing core: holds the live policy and turns a parsed request into a `Decision`.

It adds to the pure policy what needs time and state: the classifier call under the deciding
time budget, the fail-open or fail-closed behaviour, upstream health, budget spending, and
swapping in a new policy. The ext_proc adapter, the gRPC API and the CLI all route through here.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

import structlog

from meritorder import policy, telemetry
from meritorder.budget import BudgetStore, InMemoryBudgetStore
from meritorder.config import BudgetConfig, RouterConfig
from meritorder.errors import RequestError
from meritorder.health import HealthMonitor
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
    ) -> None:
        # Offline tools (route, explain, eval) have no client waiting: they switch the budget off.
        self.enforce_timeout = enforce_timeout
        self.classifier = classifier
        self.budgets = budgets or InMemoryBudgetStore()
        self.health = health or HealthMonitor()
        self.ledger = Ledger()
        self.replace_config(config)

    @property
    def config(self) -> RouterConfig:
        return self._config

    def replace_config(self, config: RouterConfig) -> None:
        """Use `config` for every request that starts from now on."""
        self._config = config
        self._models_json = _models_listing(config)
        self.health.failures = config.routing.unhealthy_after

    def models_json(self) -> bytes:
        """The body of `GET /v1/models`: virtual and real models of the policy."""
        return self._models_json

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
        # Only the classifier and the budget store can be slow; without them a decision is a few
        # microseconds of pure policy, and a timeout task would cost more than the decision.
        timed = self.enforce_timeout and (
            config.budgets is not None or (observed is None and self._classifies(config, request))
        )
        deciding = self._decide(config, request, headers, observed)
        try:
            if timed:
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

    async def _decide(
        self,
        config: RouterConfig,
        request: ChatRequest,
        headers: Mapping[str, str],
        observed: Observation | None,
    ) -> Decision:
        if observed is not None:
            obs = observed
        else:
            with telemetry.stage("classify") as span:
                obs = await self.observe(request, headers)
                span.set_attribute("meritorder.classifier.ran", obs.classified is not None)
        if config.budgets is None:
            with telemetry.stage("policy"):
                decision = policy.decide(config, obs, PoolState(self.health.unhealthy))
        else:
            decision = await self._decide_and_reserve(config, config.budgets, obs)
        if obs.classified is None and _needs_classifier(config, request):
            decision = replace(decision, notes=(*decision.notes, "classifier=unavailable"))
        return decision

    async def _decide_and_reserve(
        self, config: RouterConfig, budgets: BudgetConfig, obs: Observation
    ) -> Decision:
        """Decide on the tenant's spending, then reserve the decision's cost in one atomic step
        of the store. If concurrent requests spent meanwhile, decide again on what is left."""
        tenant = tenant_of(obs.headers, budgets.header)
        spent = await self.budgets.spent(tenant, budgets.window_s)
        for attempt in range(_RESERVE_ATTEMPTS + 1):
            if attempt == _RESERVE_ATTEMPTS:
                # Still contended: decide as if the budget were spent (stepped down or 429).
                spent = math.inf
            with telemetry.stage("policy"):
                decision = policy.decide(config, obs, PoolState(self.health.unhealthy, spent))
            if decision.action != "route":
                return decision
            held = await self.budgets.reserve(
                tenant, decision.cost, decision.budget_limit, budgets.window_s
            )
            if held.fitted:
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
            model = next((m for m in config.cheapest() if m.boundary == "private"), model)
        if config.budgets is not None:
            # Nothing was reserved against a budget: spend no more than the cheapest model costs.
            cheapest = [
                m for m in config.cheapest() if m.boundary == "private" or not config.boundaries
            ]
            model = cheapest[0] if cheapest else model
        log.warning(
            "decision failed, routing without signals", why=why, model=model.name, error=str(exc)
        )
        return Decision("route", "fallback", model=model, notes=(f"fallback={why}",))


def _needs_classifier(config: RouterConfig, request: ChatRequest) -> bool:
    """Classifier signals matter for a virtual model; boundaries matter for every model."""
    if config.boundaries:
        return True
    return policy.is_virtual(config, request.model) and config.uses_classifier()


def _models_listing(config: RouterConfig) -> bytes:
    names = [*config.virtual_models, *(m.name for m in config.models)]
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "meritorder"} for n in names]
    return json.dumps({"object": "list", "data": data}).encode()
