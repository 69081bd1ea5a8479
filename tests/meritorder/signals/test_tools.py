"""`type: tools`: the request offers tools."""

from __future__ import annotations

from typing import Any

import pytest

from meritorder.policy import Observation
from meritorder.signals import ToolsSignalConfig
from tests.helpers import chat_view

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"tools": [TOOL]}, 1.0),
        ({"functions": [TOOL["function"]]}, 1.0),
        ({}, None),
        ({"tools": []}, None),
    ],
)
def test_fires_when_tools_are_offered(extra: dict[str, Any], expected: float | None) -> None:
    signal = ToolsSignalConfig(name="agent", type="tools")
    assert signal.score(Observation(chat_view(**extra))) == expected
