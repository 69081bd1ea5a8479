"""The routing core: holds the live policy and turns a parsed request into a `Decision`.

It adds to the pure policy what needs time and state: the deciding time budget, the fail-open or
fail-closed behaviour, and swapping in a new policy. The ext_proc adapter, the gRPC API and the
CLI all route through here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

import structlog

from meritorder import policy
from meritorder.config import RouterConfig
from meritorder.errors import RequestError
from meritorder.policy import Decision
from meritorder.request import ChatRequest

log = structlog.get_logger("meritorder.router")


class Router:
    """Decides where each request goes under the current policy."""

    def __init__(self, config: RouterConfig) -> None:
        self._config = config
        self._models_json = _models_listing(config)

    @property
    def config(self) -> RouterConfig:
        return self._config

    def replace_config(self, config: RouterConfig) -> None:
        """Use `config` for every request that starts from now on."""
        self._config = config
        self._models_json = _models_listing(config)

    def models_json(self) -> bytes:
        """The body of `GET /v1/models`: virtual and real models of the policy."""
        return self._models_json

    async def route(
        self, request: ChatRequest, headers: Mapping[str, str] | None = None
    ) -> Decision:
        """The decision for `request`; raises `RequestError` for an unknown model or fail-closed."""
        config = self._config  # one policy for the whole request, even if a reload lands meanwhile
        if request.model in config.virtual_models:
            return await self._decide_within_budget(config, request)
        decision = policy.route_explicit(config, request.model)
        if decision is None:
            raise RequestError(
                404,
                f"The model {request.model!r} does not exist. Use one of "
                f"{[*config.virtual_models, *(m.name for m in config.models)]}.",
                param="model",
                code="model_not_found",
            )
        return decision

    async def _decide_within_budget(self, config: RouterConfig, request: ChatRequest) -> Decision:
        budget = config.routing.decision_timeout_ms / 1000
        try:
            return await asyncio.wait_for(self._decide(config, request), budget)
        except Exception as exc:  # deciding must never take the request down with it
            why = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            if config.routing.on_error == "fail_closed":
                log.error("decision failed, failing closed", why=why, error=str(exc))
                raise RequestError(
                    503,
                    "The router could not decide where to send this request; try again.",
                    type="server_error",
                    code="router_unavailable",
                ) from exc
            log.warning("decision failed, routing to the default model", why=why, error=str(exc))
            return policy.route_to(
                config, config.default_model, "fallback", {}, notes=(f"fallback={why}",)
            )

    async def _decide(self, config: RouterConfig, request: ChatRequest) -> Decision:
        fired = policy.evaluate_signals(config, request)
        return policy.decide(config, request, fired)


def _models_listing(config: RouterConfig) -> bytes:
    names = [*config.virtual_models, *(m.name for m in config.models)]
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "meritorder"} for n in names]
    return json.dumps({"object": "list", "data": data}).encode()
