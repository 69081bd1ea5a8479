"""What every endpoint spec shares: strict JSON, the spec base class, redaction, usage parsing.

An endpoint spec owns one API: `parse` (body bytes -> `RequestView`), `rewrite` (the upstream
body for a routed decision), `error_body` (a `RequestError` in the API's own JSON shape) and
`usage_of` (token usage in a response body or one stream event).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from meritorder.config import Api, ModelConfig
from meritorder.errors import RequestError, bad_request
from meritorder.policy import PiiFinding, Steps
from meritorder.request import Body, BodyPath, RequestView, at_path, json_type


@dataclass(frozen=True)
class Usage:
    """Token usage an upstream reported; None where it reported none (yet)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def merged(self, later: Usage) -> Usage:
        """This usage updated by a later report (stream events report parts of it)."""
        return Usage(
            later.prompt_tokens if later.prompt_tokens is not None else self.prompt_tokens,
            later.completion_tokens
            if later.completion_tokens is not None
            else self.completion_tokens,
        )


def usage_tokens(usage: object) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens of a `usage` object in OpenAI's naming (`prompt_tokens`,
    `completion_tokens`) or the Responses and Anthropic naming (`input_tokens`,
    `output_tokens`); the one function the access log and the stream observer both call."""
    if not isinstance(usage, Mapping):
        return None, None
    prompt = _count(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = _count(usage.get("completion_tokens", usage.get("output_tokens")))
    if completion is None and prompt is not None and "total_tokens" in usage:
        completion = 0  # an embeddings usage: prompt and total tokens, nothing generated
    return prompt, completion


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


class EndpointSpec:
    """One API: its parse, rewrite, errors and usage. A subclass names its API, path and span
    operation in its class line (`class ChatSpec(EndpointSpec, api=..., path=..., operation=...)`)
    and sets `text_keys` (and `item_keys`)."""

    api: ClassVar[Api]
    path: ClassVar[str]
    operation: ClassVar[str]  # gen_ai.operation.name on the route span
    # Top-level body keys whose text the message view reads, and those of them holding a list
    # of items (`RequestView.text_keys`, `item_keys`).
    text_keys: ClassVar[frozenset[str]]
    item_keys: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, *, api: Api, path: str, operation: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.api, cls.path, cls.operation = api, path, operation

    def parse(self, raw: bytes, *, max_bytes: int) -> RequestView:
        """Parse and validate a request body; raise `RequestError` (400/413) on bad input."""
        return self.view(json_object(raw, max_bytes=max_bytes))

    def view(self, body: dict[str, Any]) -> RequestView:
        """The request view of a JSON object body (`model` and `stream` checked already)."""
        raise NotImplementedError

    def request_view(
        self,
        body: dict[str, Any],
        messages: list[dict[str, Any]],
        sources: list[BodyPath],
        *,
        max_output_tokens: int | None,
        choices: int = 1,
        unreadable: bool = False,
    ) -> RequestView:
        """The view of `body` whose message `i` is `messages[i]`, read from `sources[i]`."""
        return RequestView(
            self.api,
            body,
            messages,
            sources,
            self.text_keys,
            self.item_keys,
            max_output_tokens,
            choices,
            unreadable,
            [*definition_texts(body), *tool_call_arguments(body)],
        )

    def rewrite(self, request: RequestView, model: ModelConfig, steps: Steps) -> bytes:
        """The body to send upstream to `model` with the decision's `steps`: every field the
        steps do not change is kept as the client sent it, in its order."""
        body = dict(request.body)
        body["model"] = model.upstream_model
        if steps.redact:
            redact(request, body, steps.redact)
        self.edit(request, body, model, steps)
        return encode(body)

    def edit(self, request: RequestView, body: Body, model: ModelConfig, steps: Steps) -> None:
        """The API's own rewrite steps (system prompt, reasoning, completion cap)."""

    def error_body(self, error: RequestError) -> bytes:
        """The error in this API's JSON shape (OpenAI's unless a spec says otherwise)."""
        return error.to_json()

    def usage_of(self, event: Mapping[str, Any]) -> Usage:
        """The usage a JSON response body or one decoded stream event reports."""
        return Usage(*usage_tokens(event.get("usage")))

    def stream_usage(self) -> StreamUsage:
        """A parser for this API's event stream, fed the response body chunk by chunk."""
        return StreamUsage(self.usage_of)


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class StreamUsage:
    """Usage from an SSE response body, fed in chunks split anywhere (inside a line, a UTF-8
    character or the blank line that ends an event). Pure: no I/O."""

    MAX_EVENT_BYTES = 1 << 20  # an event this long is not one we read usage from

    def __init__(self, usage_of: Callable[[Mapping[str, Any]], Usage]) -> None:
        self._usage_of = usage_of
        self._pending = b""
        self.usage = Usage()
        self.skipped = 0  # events that were not JSON or too long

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        events = _EVENT_END.split(data)
        self._pending = events.pop()
        if len(self._pending) > self.MAX_EVENT_BYTES:
            self._pending = b""
            self.skipped += 1
        for event in events:
            self._event(event)

    def finish(self) -> Usage:
        """The usage once the body has ended (a last event without its blank line counts)."""
        if self._pending.strip():
            self._event(self._pending)
        self._pending = b""
        return self.usage

    def _event(self, event: bytes) -> None:
        lines = event.decode("utf-8", "replace").splitlines()
        data = "\n".join(line[5:].removeprefix(" ") for line in lines if line.startswith("data:"))
        if not data or data == "[DONE]":
            return
        try:
            decoded = json.loads(data)
        except ValueError:
            self.skipped += 1
            return
        if isinstance(decoded, dict):
            self.usage = self.usage.merged(self._usage_of(decoded))


_EVENT_END = re.compile(rb"\r?\n\r?\n")


# ---- strict JSON ---------------------------------------------------------------------------


def json_object(raw: bytes, *, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object with a non-empty string `model` and a boolean `stream`."""
    if len(raw) > max_bytes:
        raise body_too_large(len(raw), max_bytes)
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.", code="empty_body")
    body = load_json(raw)
    if not isinstance(body, dict):
        raise bad_request(
            f"The request body must be a JSON object, not {json_type(body)}.", code="invalid_body"
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
    return body


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
    # The tree walk costs more than the parse; the bytes say when it cannot find anything:
    # nesting needs an opening bracket per level, and a lone surrogate can only come from a
    # `\uD8xx`-`\uDFxx` escape (strict UTF-8 decoding refuses an encoded one).
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH or _SURROGATE_ESCAPE.search(raw):
        _check_tree(body)
    return body


MAX_JSON_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


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


def body_encoded(encoding: str) -> RequestError:
    """A body the router cannot read as sent (gzip is inflated by the gateway before the router:
    deploy/envoy/envoy.yaml). Refused, never forwarded unread: its text would pass every check."""
    return RequestError(
        415,
        f"The request body was sent with Content-Encoding {encoding!r}, which this gateway does "
        "not read; send the JSON uncompressed (or gzip-compressed, where the gateway inflates it).",
        param=None,
        code="unsupported_content_encoding",
    )


def body_too_large(size: int, limit: int) -> RequestError:
    return RequestError(
        413,
        f"The request body is {size} bytes; this router accepts at most {limit} bytes.",
        code="request_too_large",
    )


# ---- field validation shared by the specs ------------------------------------------------------


def optional_count(body: Mapping[str, Any], key: str, *, minimum: int = 0) -> int | None:
    """An optional integer field (a token cap, `n`): None when absent, null or below `minimum`
    (an out-of-range value is the upstream's to judge, and forwarded as sent); a value that is
    not an integer is a 400."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(
            f"'{key}' must be an integer, got {json.dumps(value)[:40]}.",
            param=key,
            code="invalid_type",
        )
    return value if value >= minimum else None


def check_parts(
    content: object, param: str, *, text_types: frozenset[str], allow_null: bool = False
) -> None:
    """Message content: a string, or an array of objects with a string `type`, whose text
    parts (`text_types`) carry a string `text`."""
    if isinstance(content, str) or (content is None and allow_null):
        return
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad_request(
                    f"'{param}[{j}]' must be an object with a string 'type'.",
                    param=f"{param}[{j}]",
                    code="invalid_type",
                )
            if part["type"] in text_types and not isinstance(part.get("text"), str):
                raise bad_request(
                    f"'{param}[{j}].text' must be a string.",
                    param=f"{param}[{j}].text",
                    code="invalid_type",
                )
        return
    raise bad_request(
        f"'{param}' must be a string or an array of content parts, not {json_type(content)}.",
        param=param,
        code="invalid_type",
    )


def definition_texts(body: Mapping[str, Any]) -> list[tuple[BodyPath, str]]:
    """(path, text) of every string the model reads in the request's tool definitions (`tools`,
    the legacy `functions`) and output schemas (chat `response_format`, Responses
    `text.format`, Anthropic `output_format`), in every API's shape: each description, and
    every other string of a schema (a title, an `enum` or `examples` item, a `default`, a
    `const`, a key the schema language does not define, a property's name), but the structural
    keywords' values (`type`, `format`, `$ref`, `pattern`, `required`, ...) and names (`name`:
    an identifier, at most 64 characters in every API) where they are tokens, not prose. A
    poisoned description, or a jailbreak written as an enum value, is an instruction the model
    reads like the system prompt."""
    out: list[tuple[BodyPath, str]] = []
    roots: list[tuple[BodyPath, Any]] = [((key,), body.get(key)) for key in _DEFINITIONS]
    text = body.get("text")
    if isinstance(text, dict):
        roots.append((("text", "format"), text.get("format")))
    for root, node in roots:
        stack: list[tuple[BodyPath, Any]] = [(root, node)] if isinstance(node, dict | list) else []
        while stack:  # iterative and in order: a schema may nest deeply
            path, node = stack.pop()
            if isinstance(node, str):
                if _WORD.search(node):
                    out.append((path, node))
            elif isinstance(node, dict):
                named = path[-1] in _NAMED_SCHEMAS if path else False
                for name, child in reversed(node.items()):
                    if name not in _STRUCTURAL or isinstance(child, dict):
                        stack.append(((*path, name), child))
                    elif isinstance(child, str | list):  # structure, unless it is prose
                        items = enumerate(child) if isinstance(child, list) else [(None, child)]
                        for j, item in reversed(list(items)):
                            if isinstance(item, str) and _prose(item):
                                stack.append(
                                    ((*path, name) if j is None else (*path, name, j), item)
                                )
                    if named:  # a property's name is read as it is written, before its schema
                        stack.append(((*path, name, KEY), name))
            elif isinstance(node, list):
                stack.extend(((*path, j), child) for j, child in reversed(list(enumerate(node))))
    return out


def _prose_in(path: BodyPath, value: str | list[Any]) -> list[tuple[BodyPath, Any]]:
    """(path, text) of what is prose in a structural keyword's value: it, or its list's items."""
    pairs = (
        [(path, value)]
        if isinstance(value, str)
        else [((*path, j), v) for j, v in enumerate(value)]
    )
    return [(p, v) for p, v in pairs if isinstance(v, str) and _prose(v)]


def _prose(text: str) -> bool:
    """Whether a structural keyword's value is text a model would read as words, not a token of
    the schema language (`string`, `date-time`, `#/$defs/a`, `get_weather`): it has whitespace,
    or is longer than any API lets a name be (64). A client may send a tool `name` or a `type`
    that no API allows, and an upstream's chat template may still render it."""
    return len(text) > 64 or any(ch.isspace() for ch in text)


# The last step of the path of a property's name (not its schema): `properties.<key>.<key>`.
KEY = "#key"
# Schema maps whose keys are names the model reads (a property's, a definition's).
_NAMED_SCHEMAS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)


# Where the model reads definitions the client writes (`text.format` is looked up on its own).
_DEFINITIONS = ("tools", "functions", "response_format", "output_format")
# JSON Schema keywords (and the APIs' own) whose string values are structure, not prose: a type,
# a reference, a regular expression, property names, an identifier.
_STRUCTURAL = frozenset(
    {
        "type",
        "format",
        "$ref",
        "$schema",
        "$id",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "pattern",
        "required",
        "contentEncoding",
        "contentMediaType",
        "name",
    }
)


def tool_call_arguments(body: Mapping[str, Any]) -> list[tuple[BodyPath, str]]:
    """(path, text) of the arguments of every tool call in the conversation: each string of
    an `arguments` under `messages` or `input` (a chat assistant's
    `tool_calls[].function.arguments` and legacy `function_call.arguments`, a Responses
    `function_call` or MCP call item's: a JSON string, or whatever a client sends instead), and
    of an Anthropic `tool_use` block's `input`. The client writes the history it sends, an
    assistant's earlier calls included, and the model reads them again."""
    out: list[tuple[BodyPath, str]] = []
    for key in ("messages", "input"):
        items = body.get(key)
        stack: list[tuple[BodyPath, Any, bool]] = (
            [((key,), items, False)] if isinstance(items, list) else []
        )
        while stack:  # iterative and in order; `whole`: every string below is an argument
            path, node, whole = stack.pop()
            if isinstance(node, str):
                if whole and _WORD.search(node):  # not `{}`: nothing there to read
                    out.append((path, node))
            elif isinstance(node, dict):
                call = node.get("type") in _TOOL_USE and isinstance(node.get("input"), dict)
                for name, child in reversed(node.items()):
                    inside = whole or name == "arguments" or (call and name == "input")
                    if inside or isinstance(child, dict | list):
                        stack.append(((*path, name), child, inside))
            elif isinstance(node, list):
                stack.extend(((*path, j), c, whole) for j, c in reversed(list(enumerate(node))))
    return out


_TOOL_USE = frozenset({"tool_use", "server_tool_use"})  # Anthropic blocks whose `input` is a call
_WORD = re.compile(r"\w")


def is_content(value: object) -> bool:
    """Content the classifier can read as a message: a string, or an array of content parts
    (objects; their text parts carry the text)."""
    if isinstance(value, str):
        return True
    return isinstance(value, list) and all(isinstance(part, dict) for part in value)


def check_role(message: object, param: str, roles: frozenset[str]) -> str:
    if not isinstance(message, dict):
        raise bad_request(
            f"'{param}' must be an object, not {json_type(message)}.",
            param=param,
            code="invalid_type",
        )
    role = message.get("role")
    if not isinstance(role, str) or role not in roles:
        raise bad_request(
            f"'{param}.role' must be one of {sorted(roles)}, got {role!r}.",
            param=f"{param}.role",
            code="invalid_value",
        )
    return role


def required_array(body: Mapping[str, Any], key: str, what: str) -> list[Any]:
    if key not in body:
        raise bad_request(f"'{key}' is required.", param=key, code="missing_required_parameter")
    items = body[key]
    if not isinstance(items, list) or not items:
        raise bad_request(
            f"'{key}' must be a non-empty array of {what}.", param=key, code="invalid_type"
        )
    return items


# ---- rewrite helpers ---------------------------------------------------------------------------


def set_reasoning(body: dict[str, Any], family: str | None, enabled: bool, effort: str) -> None:
    """Switch thinking on or off the way the model's family reads it."""
    if family == "chat_template_kwargs.enable_thinking":
        kwargs = dict(body.get("chat_template_kwargs") or {})
        kwargs["enable_thinking"] = enabled
        body["chat_template_kwargs"] = kwargs
    elif family == "reasoning_effort":
        body["reasoning_effort"] = effort if enabled else "low"


def cap(body: dict[str, Any], keys: Sequence[str], limit: int) -> None:
    """Lower each of `keys` the client set above `limit`; set the first when it set none."""
    for key in keys:
        asked = body.get(key)
        if isinstance(asked, int) and asked > limit:
            body[key] = limit
    if not any(key in body for key in keys):
        body[keys[0]] = limit


def openai_steps(
    request: RequestView,
    body: dict[str, Any],
    model: ModelConfig,
    steps: Steps,
    caps: Sequence[str],
) -> None:
    """The steps chat and completions share: the reasoning switch in the model's family format,
    the usage chunk of a stream, and the completion cap on each of `caps`."""
    if steps.reasoning is not None:
        set_reasoning(body, model.reasoning_family, steps.reasoning.enabled, steps.reasoning.effort)
    if request.stream:
        ask_stream_usage(body)
    if steps.max_tokens is not None:
        cap(body, caps, steps.max_tokens)


def ask_stream_usage(body: dict[str, Any]) -> None:
    """Ask an OpenAI stream for its final usage chunk (`stream_options.include_usage`), which
    cost accounting reads (extproc/observer.py), unless the client said either way. The client
    then sees one more chunk, with empty `choices` (README, "APIs")."""
    options = body.get("stream_options")
    if options is None:
        body["stream_options"] = {"include_usage": True}
    elif isinstance(options, dict) and "include_usage" not in options:
        body["stream_options"] = {**options, "include_usage": True}


Span = tuple[int, int, str]  # start, end, PII type


def redact(request: RequestView, body: dict[str, Any], found: Sequence[PiiFinding]) -> None:
    """Replace each PII span with `[TYPE]`, in the field each message's text came from.

    Offsets are into the message text as the classifier read it (`classifiers.text.
    message_text`): a string content, or the text parts joined by newlines; a span across two
    parts is masked in both. Findings in other fields are not redactable: the policy keeps
    such requests private instead."""
    by_message: dict[int, list[Span]] = {}
    for f in found:
        if f.field is None:
            by_message.setdefault(f.message or 0, []).append((f.start, f.end, f.type))
    for index, spans in sorted(by_message.items()):
        if index >= len(request.sources):
            continue
        path = request.sources[index]
        content = at_path(body, path)
        if isinstance(content, str):
            _set(body, path, _mask(content, spans))
        elif isinstance(content, list) and all(isinstance(p, str) for p in content):
            _set(body, path, _mask_pieces(content, spans))  # a prompt array, newline-joined
        elif isinstance(content, list):
            _set(body, path, _mask_parts(content, spans))


def _set(body: dict[str, Any], path: BodyPath, value: Any) -> None:
    """Set `value` at `path`, copying each container on the way (the request's own body, which
    the view and the span read, stays as the client sent it)."""
    node: Any = body
    for step in path[:-1]:
        child = node[step]
        child = list(child) if isinstance(child, list) else dict(child)
        node[step] = child
        node = child
    node[path[-1]] = value


def _mask(text: str, spans: Sequence[Span]) -> str:
    """`text` with each span (overlapping ones merged) replaced by `[TYPE]`."""
    merged: list[list[Any]] = []
    for start, end, kind in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, kind])
    for start, end, kind in reversed(merged):
        text = text[:start] + f"[{kind}]" + text[end:]
    return text


def _clip(spans: Sequence[Span], offset: int, length: int) -> list[Span]:
    """The parts of `spans` inside `[offset, offset + length)`, relative to `offset`."""
    return [
        (max(s, offset) - offset, min(e, offset + length) - offset, kind)
        for s, e, kind in spans
        if s < offset + length and offset < e
    ]


def _mask_pieces(pieces: list[str], spans: Sequence[Span]) -> list[str]:
    result = []
    offset = 0
    for text in pieces:
        result.append(_mask(text, _clip(spans, offset, len(text))))
        offset += len(text) + 1  # the newline that joins them
    return result


def _mask_parts(parts: list[Any], spans: Sequence[Span]) -> list[Any]:
    result = []
    offset = 0
    for part in parts:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            text = part["text"]
            result.append({**part, "text": _mask(text, _clip(spans, offset, len(text)))})
            offset += len(text) + 1  # the newline that joins text parts
        else:
            result.append(part)
    return result
