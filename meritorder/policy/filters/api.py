"""The API capability filter (first): a model is only chosen for the APIs its upstream serves."""

from __future__ import annotations

from typing import ClassVar

from meritorder.policy.context import Block, Context, Survivors
from meritorder.policy.decision import Rejection


class ApiFilter:
    """Candidates that do not serve the request's API are rejected; with none left, `auto` gets
    the cheapest configured model that serves it, an explicit model a 400."""

    name: ClassVar[str] = "api"

    def apply(self, ctx: Context, survivors: Survivors) -> Survivors | Block:
        api = ctx.obs.request.api
        serving = [m for m in survivors.models if ctx.serves(m)]
        if len(serving) == len(survivors.models):
            return survivors
        if not ctx.virtual:
            return Block(
                400,
                f"The model {ctx.obs.request.model!r} does not serve the {api} API; use a model "
                f"that does (GET /v1/models lists them), or add {api!r} to its 'apis' in the "
                "router's policy.",
                code="unsupported_api",
            )
        rejected = [
            Rejection(m.name, self.name, "unsupported_api")
            for m in survivors.models
            if not ctx.serves(m)
        ]
        if not serving:
            serving = [m for m in ctx.config.cheapest() if ctx.serves(m)][:1]
        if not serving:
            return Block(
                400,
                f"No model of this router serves the {api} API; the operator must add one with "
                f"'apis: [{api}]' under 'models' in the router's policy.",
                code="unsupported_api",
            )
        return survivors.keep(serving, rejected)
