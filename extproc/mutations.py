"""Builders for ext_proc replies: header and body mutations and immediate (local) responses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.core.v3.base_pb2 import HeaderValueOption
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ProcessingResponse,
)

from meritorder.errors import RequestError

_OVERWRITE = HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD

Headers = Iterable[tuple[str, str]]


def fill_headers(
    mutation: HeaderMutation, set_headers: Headers = (), remove: Iterable[str] = ()
) -> None:
    """Overwrite (never append) each header, so a client cannot pre-set a routing header.

    Filled in place: a message handed to a protobuf constructor is copied, and on the request
    path those copies cost more than the rest of the reply."""
    options = mutation.set_headers
    for key, value in set_headers:
        option = options.add()
        option.header.key = key
        option.header.raw_value = value.encode()
        option.append_action = _OVERWRITE
    mutation.remove_headers.extend(remove)


def continue_headers(remove: Iterable[str] = ()) -> ProcessingResponse:
    """Let the request headers through, optionally without some of them."""
    reply = ProcessingResponse()
    common = reply.request_headers.response
    common.SetInParent()  # reading a field does not set it; the reply must name its phase
    removed = list(remove)
    if removed:
        fill_headers(common.header_mutation, remove=removed)
    return reply


def continue_body() -> ProcessingResponse:
    return ProcessingResponse(request_body=BodyResponse(response=CommonResponse()))


def continue_response_headers() -> ProcessingResponse:
    return ProcessingResponse(response_headers=HeadersResponse(response=CommonResponse()))


def reroute_with_body(
    headers: Headers, body: bytes, metadata: Mapping[str, Mapping[str, str | float]] | None = None
) -> ProcessingResponse:
    """Replace the body, set routing headers and `content-length`, and re-pick the route;
    `metadata` becomes the request's dynamic metadata ({namespace: fields}), which Envoy hands
    on to its access log.

    All in one reply: Envoy keeps the client's content-length in BUFFERED mode (a mismatch is a
    500), and a header change without `clear_route_cache` leaves the request on its old route.
    """
    reply = ProcessingResponse()
    common = reply.request_body.response
    fill_headers(common.header_mutation, [*headers, ("content-length", str(len(body)))])
    common.body_mutation.body = body
    common.clear_route_cache = True
    for namespace, values in (metadata or {}).items():
        struct = reply.dynamic_metadata.fields[namespace].struct_value
        for key, value in values.items():  # strings and numbers only: set directly, no update()
            if isinstance(value, str):
                struct.fields[key].string_value = value
            else:
                struct.fields[key].number_value = float(value)
    return reply


def immediate(
    status: int, body: bytes, headers: Headers = (), details: str = ""
) -> ProcessingResponse:
    """Answer the client directly; the request never reaches an upstream."""
    reply = ProcessingResponse()
    answer = reply.immediate_response
    answer.status.code = status
    fill_headers(answer.headers, [("content-type", "application/json"), *headers])
    answer.body = body
    answer.details = details
    return reply


def error_response(
    error: RequestError, headers: Headers = (), body: bytes | None = None
) -> ProcessingResponse:
    """A JSON error (OpenAI's shape unless an endpoint spec rendered `body`); `details` reaches
    Envoy's access log (RESPONSE_CODE_DETAILS)."""
    rendered = error.to_json() if body is None else body
    return immediate(
        error.status, rendered, headers, details=f"meritorder_{error.code or error.status}"
    )
