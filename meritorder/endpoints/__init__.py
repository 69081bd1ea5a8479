"""The endpoint specs: one module per API, and the one table the processor picks them from.

Adding an API is one new module here plus one line in `SPECS`.
"""

from __future__ import annotations

from meritorder.config import Api
from meritorder.endpoints import chat, completions, embeddings, messages, responses
from meritorder.endpoints.base import EndpointSpec, StreamUsage, Usage, usage_tokens
from meritorder.request import RequestView

# (method, exact path) -> spec. Exact and case-sensitive, as the model routes of
# deploy/envoy/envoy.yaml match, after Envoy has normalized the path (dot segments, slashes).
SPECS: dict[tuple[str, str], EndpointSpec] = {
    ("POST", chat.SPEC.path): chat.SPEC,
    ("POST", completions.SPEC.path): completions.SPEC,
    ("POST", embeddings.SPEC.path): embeddings.SPEC,
    ("POST", responses.SPEC.path): responses.SPEC,
    ("POST", messages.SPEC.path): messages.SPEC,
}
BY_API: dict[Api, EndpointSpec] = {spec.api: spec for spec in SPECS.values()}


def spec_for(method: str, path: str) -> EndpointSpec | None:
    """The spec for a request (query string ignored), or None for a request not routed."""
    return SPECS.get((method, path.split("?", 1)[0]))


def parse(api: Api, raw: bytes, *, max_bytes: int) -> RequestView:
    """Parse a body arriving on `api` (for callers outside the request path: batch, tests)."""
    return BY_API[api].parse(raw, max_bytes=max_bytes)


__all__ = [
    "BY_API",
    "SPECS",
    "EndpointSpec",
    "RequestView",
    "StreamUsage",
    "Usage",
    "parse",
    "spec_for",
    "usage_tokens",
]
