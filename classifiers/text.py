"""Reading the text of OpenAI chat messages: one definition for the classifiers and the router,
so that PII offsets and redaction agree on what "the text of message i" is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def message_text(message: Mapping[str, Any]) -> str:
    """The text of one chat message; list content joins its text parts with newlines."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(text_parts(content))


def text_parts(content: object) -> list[str]:
    """The texts of list content's text parts (none for any other content)."""
    if not isinstance(content, list):
        return []
    return [
        part["text"]
        for part in content
        if isinstance(part, Mapping) and isinstance(part.get("text"), str)
    ]


def part_joins(message: Mapping[str, Any]) -> tuple[int, ...]:
    """Where `message_text` joined two text parts: the offsets of the newlines it put between."""
    joins = []
    at = -1
    for text in text_parts(message.get("content"))[:-1]:
        at += len(text) + 1
        joins.append(at)
    return tuple(joins)
