"""Hints to the pool: headers the endpoint picker and the model servers can act on.

meritorder chooses the model (the pool); the Inference Extension's endpoint picker (EPP) chooses
the pod inside it. Neither undoes the other: these headers only tell the picker what the router
knows, on the request it has already routed.

- `objective_header` (`x-gateway-inference-objective`): the name of an InferenceObjective, whose
  priority the EPP's flow control uses for queue order and shedding. The decision's `objective`,
  else `default_objective`.
- `fairness_header` (`x-gateway-inference-fairness-id`): the verified tenant, so flow control
  shares the pool fairly between tenants. Unverified requests get none (the EPP's default flow).
- `session_header`: a digest of the request's session (`sessions:` in the policy), so a
  session-affinity scorer keeps a conversation on the pod whose prefix cache holds it. Only a
  digest leaves: the tenant and the client's session id stay inside.
- `output_tokens_header`: the most output tokens the request may produce (the decision's cap, or
  the client's `max_tokens`), where one is known: a length hint for the picker's load estimate.

Every header named here is removed from what the client sent (a client must not pick its own
priority or fairness queue), whether or not the router sets it on that request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

_HEADER = r"^[A-Za-z0-9-]+$"


class PoolHintsConfig(BaseModel):
    """`pool_hints:` in the policy file; a header set to null is not sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objective_header: str | None = Field(default="x-gateway-inference-objective", pattern=_HEADER)
    default_objective: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$",
        description="the InferenceObjective of a decision without `objective`; None: no header",
    )
    fairness_header: str | None = Field(default="x-gateway-inference-fairness-id", pattern=_HEADER)
    session_header: str | None = Field(default="x-meritorder-pool-session", pattern=_HEADER)
    output_tokens_header: str | None = Field(
        default="x-meritorder-max-output-tokens", pattern=_HEADER
    )

    @field_validator(
        "objective_header", "fairness_header", "session_header", "output_tokens_header"
    )
    @classmethod
    def _lowercase(cls, header: str | None) -> str | None:
        return header.lower() if header is not None else None

    def protected(self) -> tuple[str, ...]:
        """The headers a client may not send: the router alone sets them."""
        return tuple(
            h
            for h in (
                self.objective_header,
                self.fairness_header,
                self.session_header,
                self.output_tokens_header,
            )
            if h is not None
        )


def pool_hints(
    config: PoolHintsConfig,
    *,
    objective: str | None,
    tenant: str | None,
    session: str | None,
    max_output_tokens: int | None,
) -> Mapping[str, str]:
    """The hint headers of one routed request. `tenant` only when verified; `session` the
    router's session name (hashed here)."""
    headers: dict[str, str] = {}
    objective = objective or config.default_objective
    if config.objective_header and objective:
        headers[config.objective_header] = objective
    if config.fairness_header and tenant:
        headers[config.fairness_header] = tenant
    if config.session_header and session:
        headers[config.session_header] = hashlib.sha256(session.encode()).hexdigest()[:32]
    if config.output_tokens_header and max_output_tokens is not None:
        headers[config.output_tokens_header] = str(max_output_tokens)
    return headers
