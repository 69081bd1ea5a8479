"""Errors that become OpenAI-style JSON responses."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(eq=False)  # not frozen: raising sets __traceback__
class RequestError(Exception):
    """A client or routing error, carried to the client as `{"error": {...}}` with `status`."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> bytes:
        """The OpenAI error body."""
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return json.dumps(body).encode()


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> RequestError:
    return RequestError(400, message, param=param, code=code)
