"""The OpenAI request model: parse a chat or text completion body, read its text, rewrite it.

Plain Python with typed errors (`RequestError`, 400/413); nothing here knows about Envoy.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeGuard

from classifiers.text import message_text
from meritorder.errors import RequestError, bad_request

if TYPE_CHECKING:
    from meritorder.config import Api

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class Endpoint(Enum):
    CHAT = CHAT_PATH
    COMPLETIONS = COMPLETIONS_PATH

    @classmethod
    def for_path(cls, path: str) -> Endpoint | None:
        """The routed endpoint for a request path (query string ignored), or None.

        Exact and case-sensitive, as the model routes of deploy/envoy/envoy.yaml match, after
        Envoy has normalized the path (dot segments, merged slashes)."""
        bare = path.split("?", 1)[0]
        for endpoint in cls:
            if bare == endpoint.value:
                return endpoint
        return None


@dataclass
class RequestView:
    """A validated request, chat or completions: the parsed JSON plus the views the router
    reads (the policy reads only these views, never `body` keys)."""

    endpoint: Endpoint
    body: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model(self) -> str:
        return str(self.body["model"])

    @property
    def api(self) -> Api:
        """Which API the request came on."""
        return "chat" if self.endpoint is Endpoint.CHAT else "completions"

    @property
    def max_output_tokens(self) -> int | None:
        """The completion cap the client asked (`max_completion_tokens` or `max_tokens`), or
        None when it asked none."""
        asked = self.body.get("max_completion_tokens") or self.body.get("max_tokens")
        return asked if _count(asked) and asked > 0 else None

    @property
    def choices(self) -> int:
        """How many completions it asks for (`n`, completions' `best_of`; 1 else)."""
        counts = [self.body.get(key) for key in ("n", "best_of")]
        return max([1, *(c for c in counts if _count(c))])

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream", False))

    @property
    def has_tools(self) -> bool:
        return bool(self.body.get("tools") or self.body.get("functions"))

    def texts(self) -> list[str]:
        """The text of every message, in order (non-text parts are skipped)."""
        return [message_text(m) for m in self.messages]

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message_text(message)
        return self.texts()[-1] if self.messages else ""

    @cached_property
    def prompt_text(self) -> str:
        """All message text joined, for keyword signals (joined once, read by every signal)."""
        return "\n".join(self.texts())

    @property
    def unreadable(self) -> bool:
        """Whether the request carries prompt text the router cannot read (token ids)."""
        prompt = self.body.get("prompt") if self.endpoint is Endpoint.COMPLETIONS else None
        return (
            isinstance(prompt, list)
            and bool(prompt)
            and not any(isinstance(p, str) for p in prompt)
        )

    def field_texts(self) -> list[tuple[str, str]]:
        """(path, text) of every text-bearing field outside the message text, which an upstream
        receives just the same: tool calls and their arguments, names, tool descriptions and
        schemas, `response_format`, `user`, `metadata`, image and file parts (URLs, file names,
        inline data), the completions `suffix`, ... Dict keys that are not plain identifiers
        count as text too, and so do integers of 7 digits or more."""
        out: list[tuple[str, str]] = []
        _strings({k: v for k, v in self.body.items() if k not in _READ_AS_MESSAGES}, "", out)
        if self.endpoint is Endpoint.CHAT:
            for i, message in enumerate(self.messages):
                path = f"messages[{i}]"
                _strings({k: v for k, v in message.items() if k not in _MESSAGE_TEXT}, path, out)
                content = message.get("content")
                if isinstance(content, list):
                    for j, part in enumerate(content):
                        _part_strings(part, f"{path}.content[{j}]", out)
        return out

    def inspected_texts(self) -> list[tuple[str, str]]:
        """(path, text) of everything the PII detectors read: each message's text (as
        `classifiers.text.message_text` joins it), then every other text-bearing field."""
        content = "prompt" if self.endpoint is Endpoint.COMPLETIONS else "messages[{}].content"
        texts = [(content.format(i), text) for i, text in enumerate(self.texts())]
        return [*texts, *self.field_texts()]


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# Body keys whose text the message view already reads. (`logit_bias` keys are token ids, but a
# client can write any digits there and the upstream receives them: they are read too.)
_READ_AS_MESSAGES = frozenset({"model", "messages", "prompt"})
_MESSAGE_TEXT = frozenset({"role", "content"})  # a validated role; content is message text
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LONG_NUMBER = 10**6  # seven digits: shorter integers (token limits, seeds...) are not PII


def _strings(value: object, path: str, out: list[tuple[str, str]]) -> None:
    """Append (path, text) for every string, unusual dict key and long integer under `value`."""
    stack = [(path, value)]
    while stack:  # iterative: a deeply nested body must not exhaust the recursion limit
        where, item = stack.pop()
        if isinstance(item, str):
            if item:
                out.append((where, item))
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            continue
        elif isinstance(item, int):
            if abs(item) >= _LONG_NUMBER:
                out.append((where, str(item)))
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                # The path names no key that could itself be the personal data.
                name = key if _IDENTIFIER.fullmatch(key) else "<key>"
                inner = f"{where}.{name}" if where else name
                if name == "<key>":
                    out.append((inner, key))
                stack.append((inner, child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{j}]", child) for j, child in reversed(list(enumerate(item))))


def _part_strings(part: object, path: str, out: list[tuple[str, str]]) -> None:
    """A content part's strings, but its `text` (part of the message text) and `type`."""
    if not isinstance(part, dict):
        _strings(part, path, out)
        return
    for key, value in part.items():
        if key == "type" or (key == "text" and isinstance(value, str)):
            continue
        _strings(value, f"{path}.{key}", out)


def parse_request(endpoint: Endpoint, raw: bytes, *, max_bytes: int) -> RequestView:
    """Parse and validate a request body; raise `RequestError` (400/413) on bad input."""
    if len(raw) > max_bytes:
        raise body_too_large(len(raw), max_bytes)
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.", code="empty_body")
    body = load_json(raw)
    if not isinstance(body, dict):
        raise bad_request(
            f"The request body must be a JSON object, not {_json_type(body)}.", code="invalid_body"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request(
            "'model' is required and must be a non-empty string.",
            param="model",
            code="invalid_type" if "model" in body else "missing_required_parameter",
        )
    if "stream" in body and not isinstance(body["stream"], bool):
        raise bad_request("'stream' must be a boolean.", param="stream", code="invalid_type")
    if endpoint is Endpoint.CHAT:
        return RequestView(endpoint, body, _validate_messages(body))
    prompt = body.get("prompt")
    return RequestView(endpoint, body, [{"role": "user", "content": _prompt_text(prompt)}])


def load_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN or infinite numbers, at most `MAX_JSON_DEPTH` levels of
    nesting and no lone surrogates, so what the router forwards is what every parser reads."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(
            f"The request body is not valid UTF-8 (byte {exc.start}); send UTF-8 JSON.",
            code="invalid_json",
        ) from exc
    try:
        body = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise _too_deep() from exc
    except ValueError as exc:  # syntax, NaN/Infinity, 1e999, integers of over 4300 digits
        raise bad_request(
            f"The request body is not valid JSON: {exc}.", code="invalid_json"
        ) from exc
    _check_tree(body)
    return body


MAX_JSON_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send a finite number or null")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal} does not fit a 64-bit float; send a finite number")
    return value


def _too_deep() -> RequestError:
    return bad_request(
        f"The request body nests deeper than {MAX_JSON_DEPTH} levels; flatten it.",
        code="invalid_json",
    )


def _check_tree(body: object) -> None:
    """Depth and lone surrogates (a `\\ud800` escape decodes to a string nothing can encode)."""
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if not node.isascii() and _SURROGATE.search(node):
                raise bad_request(
                    "The request body holds a lone UTF-16 surrogate escape (\\ud800-\\udfff); "
                    "send valid Unicode text.",
                    code="invalid_json",
                )
            continue
        if isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)


def body_too_large(size: int, limit: int) -> RequestError:
    return RequestError(
        413,
        f"The request body is {size} bytes; this router accepts at most {limit} bytes.",
        code="request_too_large",
    )


def _validate_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "messages" not in body:
        raise bad_request(
            "'messages' is required.", param="messages", code="missing_required_parameter"
        )
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise bad_request(
            "'messages' must be a non-empty array of message objects.",
            param="messages",
            code="invalid_type",
        )
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(
                f"'{param}' must be an object, not {_json_type(message)}.",
                param=param,
                code="invalid_type",
            )
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise bad_request(
                f"'{param}.role' must be one of {sorted(_ROLES)}, got {role!r}.",
                param=f"{param}.role",
                code="invalid_value",
            )
        _validate_content(message.get("content"), f"{param}.content", role)
    return messages


def _validate_content(content: object, param: str, role: str) -> None:
    if isinstance(content, str):
        return
    if content is None and role in ("assistant", "tool", "function"):
        return  # assistant turns that only carry tool calls
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad_request(
                    f"'{param}[{j}]' must be an object with a string 'type'.",
                    param=f"{param}[{j}]",
                    code="invalid_type",
                )
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise bad_request(
                    f"'{param}[{j}].text' must be a string.",
                    param=f"{param}[{j}].text",
                    code="invalid_type",
                )
        return
    raise bad_request(
        f"'{param}' must be a string or an array of content parts, not {_json_type(content)}.",
        param=param,
        code="invalid_type",
    )


def _prompt_text(prompt: object) -> str:
    """The text of every completions `prompt` shape OpenAI accepts: a string, an array of
    strings, an array of token ids, or an array of token-id arrays (pre-tokenized prompts have
    no text to read)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return "\n".join(prompt)
        if all(_is_token(p) for p in prompt):
            return ""
        if all(isinstance(p, list) and p and all(_is_token(t) for t in p) for p in prompt):
            return ""
    if prompt is None:
        raise bad_request(
            "'prompt' is required for /v1/completions.",
            param="prompt",
            code="missing_required_parameter",
        )
    raise bad_request(
        "'prompt' must be a string, a non-empty array of strings, of token ids (integers) or of "
        f"non-empty token-id arrays; got {_prompt_shape(prompt)}.",
        param="prompt",
        code="invalid_type",
    )


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _prompt_shape(prompt: object) -> str:
    """What a bad prompt is, for the error message: 'an empty array', 'an array holding ...'."""
    if not isinstance(prompt, list):
        return _json_type(prompt)
    if not prompt:
        return "an empty array"
    kinds = sorted({_json_type(p) for p in prompt})
    return f"an array holding {' and '.join(kinds)}"


def _json_type(value: object) -> str:
    names: Sequence[tuple[type, str]] = (
        (bool, "a boolean"),
        (int, "a number"),
        (float, "a number"),
        (str, "a string"),
        (list, "an array"),
        (dict, "an object"),
    )
    if value is None:
        return "null"
    for kind, name in names:
        if isinstance(value, kind):
            return name
    return type(value).__name__
