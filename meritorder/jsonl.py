"""JSON Lines input: every file of prompts, correctness or priors is read the same way."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


def jsonl_values(lines: Iterable[str]) -> Iterator[tuple[int, Any, json.JSONDecodeError | None]]:
    """(line number, value, error) for every non-blank line; `error` is set (and the value None)
    for a line that is not JSON, so the caller decides whether that skips or stops the file."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as exc:
            yield number, None, exc
