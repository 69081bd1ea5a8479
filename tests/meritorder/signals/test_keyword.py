"""`type: keyword`: whole words or patterns, case-insensitive."""

from __future__ import annotations

import pytest

from meritorder.policy import Observation
from meritorder.signals import KeywordSignalConfig
from tests.helpers import chat_view

SIGNAL = KeywordSignalConfig(
    name="code", keywords=("python", "stack trace"), patterns=(r"\bdef \w+\(",)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PYTHON please", 1.0),
        ("a stack trace here", 1.0),
        ("def main():", 1.0),
        ("pythons and stacks", None),  # whole words only
        ("hello", None),
    ],
)
def test_fires_on_a_whole_keyword_or_a_pattern(text: str, expected: float | None) -> None:
    assert SIGNAL.score(Observation(chat_view(text))) == expected


def test_needs_a_keyword_or_a_pattern() -> None:
    with pytest.raises(ValueError, match="at least one entry"):
        KeywordSignalConfig(name="empty")
