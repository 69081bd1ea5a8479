"""Builders for ext_proc replies: header and body mutations and immediate (local) responses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyMutation,
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ImmediateResponse,
    ProcessingResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus

from meritorder.errors import RequestError

_OVERWRITE = HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD

Headers = Iterable[tuple[str, str]]


def header_mutation(set_headers: Headers = (), remove: Iterable[str] = ()) -> HeaderMutation:
    """Overwrite (never append) each header, so a client cannot pre-set a routing header."""
    return HeaderMutation(
        set_headers=[
            HeaderValueOption(
                header=HeaderValue(key=k, raw_value=v.encode()), append_action=_OVERWRITE
            )
            for k, v in set_headers
        ],
        remove_headers=list(remove),
    )


def continue_headers(remove: Iterable[str] = ()) -> ProcessingResponse:
    """Let the request headers through, optionally without some of them."""
    removed = list(remove)
    common = (
        CommonResponse(header_mutation=header_mutation(remove=removed))
        if removed
        else CommonResponse()
    )
    return ProcessingResponse(request_headers=HeadersResponse(response=common))


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
    mutation = header_mutation([*headers, ("content-length", str(len(body)))])
    common = CommonResponse(
        header_mutation=mutation, body_mutation=BodyMutation(body=body), clear_route_cache=True
    )
    reply = ProcessingResponse(request_body=BodyResponse(response=common))
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
    mutation = header_mutation([("content-type", "application/json"), *headers])
    return ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=status),
            headers=mutation,
            body=body,
            details=details,
        )
    )


def error_response(
    error: RequestError, headers: Headers = (), body: bytes | None = None
) -> ProcessingResponse:
    """A JSON error (OpenAI's shape unless an endpoint spec rendered `body`); `details` reaches
    Envoy's access log (RESPONSE_CODE_DETAILS)."""
    rendered = error.to_json() if body is None else body
    return immediate(
        error.status, rendered, headers, details=f"meritorder_{error.code or error.status}"
    )
