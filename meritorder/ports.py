"""What the adapters (`extproc/`, the gRPC API) need from the core, and nothing more.

`meritorder.router.Router` implements it; an adapter never reads the router's attributes (its
config, stores or health), so the core can change behind this seam without touching Envoy code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from meritorder.outcomes import Feedback, Outcome, Pending
from meritorder.policy import Classified, Decision
from meritorder.request import RequestView


class RoutingCore(Protocol):
    @property
    def max_body_bytes(self) -> int:
        """The largest request body the policy accepts."""
        ...

    @property
    def default_virtual_model(self) -> str:
        """The model name a request that names none is routed as (`auto`)."""
        ...

    @property
    def protected_headers(self) -> frozenset[str]:
        """Request headers only the router sets (the pool hints): a client's copy is removed."""
        ...

    async def classify(self, request: RequestView) -> tuple[Classified | None, Mapping[str, float]]:
        """The classifier's view of `request` (None without a classifier), whether or not the
        policy reads it, and the policy's signals that fire on it."""
        ...

    def models_json(self) -> bytes:
        """The body of `GET /v1/models`."""
        ...

    def model_json(self, name: str) -> bytes | None:
        """The body of `GET /v1/models/{name}`; None for an unknown model."""
        ...

    async def route(
        self, request: RequestView, headers: Mapping[str, str] | None = None
    ) -> Decision:
        """The decision for one request (raises `RequestError` for an unknown model)."""
        ...

    async def dispatch(
        self, request_id: str, decision: Decision, traceparent: str = ""
    ) -> Pending | None:
        """The facts a routed request carries to its outcome; None for a blocked one."""
        ...

    async def settle(self, outcome: Outcome) -> None:
        """A routed request's outcome, from whichever process the report reaches."""
        ...

    async def settle_usage(
        self, request_id: str, pending: Pending, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """A streamed answer's usage, from whichever process observed the stream."""
        ...

    async def feedback(
        self, feedback: Feedback, headers: Mapping[str, str], *, any_tenant: bool = False
    ) -> Outcome:
        """A verdict on a routed request's answer (raises `RequestError` 404/409); a tenant
        judges its own requests only, unless `any_tenant` (the operator's own API)."""
        ...
