"""The canonical request view: what the router reads of a request, whichever API it came on.

The endpoint specs (meritorder/endpoints/) parse each API's body into a `RequestView`; the
policy reads only its attributes, never body keys. Plain Python; nothing here knows about Envoy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl

from classifiers.text import message_text
from meritorder.config import Api

# Where a message's content sits in the body: ("messages", 3, "content"), ("system",), ...
BodyPath = tuple[str | int, ...]
Body = dict[str, Any]  # a request's JSON object, edited in place on its way upstream


@dataclass
class RequestView:
    """A validated request: the parsed JSON plus the views the router reads.

    `messages` are chat-shaped (`role`, `content`) whatever the API: an Anthropic `system` or a
    Responses `instructions` is a system message, a completions prompt or an embeddings input a
    user message. `sources[i]` is where message i's content lives in `body`, so that redaction
    writes back to the field the text came from.
    """

    api: Api
    body: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    sources: list[BodyPath] = field(default_factory=list)
    # Top-level body keys whose text the message view reads (not field texts).
    text_keys: frozenset[str] = frozenset({"model"})
    # Text keys holding a list of items, each a message (read as above) or not (a tool call or
    # tool output item of the Responses API, read as field text).
    item_keys: tuple[str, ...] = ()
    max_output_tokens: int | None = None
    choices: int = 1
    unreadable: bool = False  # prompt text the router cannot read (token ids)
    # (body path, text) of every description in the request's tool definitions (`tools`,
    # `functions`: a tool's and each parameter's), then of the arguments of every tool call in
    # the conversation: the model reads them, so the classifier's heads do
    # (`classifier_messages`), but they are no turn's text.
    tool_specs: list[tuple[BodyPath, str]] = field(default_factory=list)
    # The URL's query string (after `?`), which the upstream receives as it was sent: its values
    # leave the boundary as much as the body's (`field_texts`).
    query: str = ""

    @property
    def model(self) -> str:
        return str(self.body["model"])

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

    def classifier_messages(self) -> list[dict[str, Any]]:
        """What the classifier reads: the messages, then each tool description and tool-call
        argument as a tool turn (after the last user turn, so the request's own turn and its
        context stay as they are)."""
        return [*self.messages, *({"role": "tool", "content": t} for _, t in self.tool_specs)]

    def tool_spec_path(self, index: int) -> str | None:
        """The body path of classifier message `index` when it is a tool description."""
        at = index - len(self.messages)
        return path_name(self.tool_specs[at][0]) if 0 <= at < len(self.tool_specs) else None

    def content_path(self, index: int) -> str:
        """The body path of message `index`'s text, as PII findings name it."""
        return path_name(self.sources[index]) if index < len(self.sources) else f"[{index}]"

    def field_texts(self) -> list[tuple[str, str]]:
        """(path, text) of every text-bearing field outside the message text, which an upstream
        receives just the same: tool calls and their arguments, tool results, names, tool
        descriptions and schemas, `response_format`, `user`, `metadata`, image and file parts
        (URLs, file names, inline data), the completions `suffix`, ... Dict keys that are not
        plain identifiers count as text too, and so do numbers of 7 digits or more before the
        point, as JSON writes them; and the URL's query parameters (`query.<name>`)."""
        out: list[tuple[str, str]] = []
        # Message text read from inside an item or a content part (a tool's output, a tool
        # result block): read as message text, so not as field text again.
        specs = (path for path, _ in self.tool_specs)
        read = frozenset(path_name(path) for path in [*self.sources, *specs])
        _strings({k: v for k, v in self.body.items() if k not in self.text_keys}, "", out, read)
        messages: set[BodyPath] = set()  # the paths of items that are messages
        for source in self.sources:
            if len(source) == 3 and source[-1] == "content" and source[0] in self.item_keys:
                messages.add(source[:2])
            elif len(source) == 1 or source[0] not in self.item_keys:
                _content_strings(at_path(self.body, source), path_name(source), out, read)
        for name, value in parse_qsl(self.query, keep_blank_values=True):
            if not _IDENTIFIER.fullmatch(name):
                out.append(("query.<key>", name))
                name = "<key>"
            if value:
                out.append((f"query.{name}", value))
        for key in self.item_keys:
            items = self.body.get(key)
            if not isinstance(items, list):
                continue
            for i, item in enumerate(items):
                where = path_name((key, i))
                if (key, i) not in messages or not isinstance(item, dict):
                    _strings(item, where, out, read)  # a tool call or tool output item
                    continue
                rest = {k: v for k, v in item.items() if k not in _MESSAGE_TEXT}
                _strings(rest, where, out, read)
                _content_strings(item.get("content"), f"{where}.content", out, read)
        return out

    def inspected_texts(self) -> list[tuple[str, str]]:
        """(path, text) of everything the PII detectors read: each message's text (as
        `classifiers.text.message_text` joins it), each tool description, then every other
        text-bearing field."""
        texts = [(self.content_path(i), text) for i, text in enumerate(self.texts())]
        specs = [(path_name(path), text) for path, text in self.tool_specs]
        return [*texts, *specs, *self.field_texts()]


_MESSAGE_TEXT = frozenset({"role", "content"})  # a validated role; content is message text
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LONG_NUMBER = 10**6  # seven digits: shorter integers (token limits, seeds...) are not PII


def path_name(path: BodyPath) -> str:
    """("messages", 2, "content") -> "messages[2].content"; a key that is not a plain identifier
    (a prompt variable's name, say) is `<key>`, as field paths name it."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
            continue
        name = step if _IDENTIFIER.fullmatch(step) else "<key>"
        out += f".{name}" if out else name
    return out


def at_path(body: Any, path: BodyPath) -> Any:
    """The value at `path` in `body`."""
    for step in path:
        body = body[step]
    return body


def _content_strings(
    content: object, path: str, out: list[tuple[str, str]], read: frozenset[str]
) -> None:
    """A message content's strings outside its text (the text is read as message text)."""
    if isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, dict):  # strings of a prompt array are its text
                _part_strings(part, f"{path}[{j}]", out, read)


def _strings(
    value: object, path: str, out: list[tuple[str, str]], read: frozenset[str] = frozenset()
) -> None:
    """Append (path, text) for every string, unusual dict key and long number under `value`;
    of a value at a path in `read` (message text), only its strings outside its text."""
    stack = [(path, value)]
    while stack:  # iterative: a deeply nested body must not exhaust the recursion limit
        where, item = stack.pop()
        if where in read:
            _content_strings(item, where, out, read)
        elif isinstance(item, str):
            if item:
                out.append((where, item))
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int | float):
            # As the upstream receives it (4111111111111111.0 is still a card's digits).
            if abs(item) >= _LONG_NUMBER:
                out.append((where, json.dumps(item)))
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


def _part_strings(
    part: object, path: str, out: list[tuple[str, str]], read: frozenset[str]
) -> None:
    """A content part's strings, but its `text` (part of the message text) and `type`."""
    if not isinstance(part, dict):
        _strings(part, path, out, read)
        return
    for key, value in part.items():
        if key == "type" or (key == "text" and isinstance(value, str)):
            continue
        _strings(value, f"{path}.{key}", out, read)


def json_type(value: object) -> str:
    """What a JSON value is, for error messages: 'a string', 'an array', 'null'..."""
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
