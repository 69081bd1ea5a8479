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
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""
