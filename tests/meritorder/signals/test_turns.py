"""`type: turns`: at least `min` user turns."""

from __future__ import annotations

import pytest

from meritorder.policy import Observation
from meritorder.signals import TurnsSignalConfig
from tests.helpers import chat_view


@pytest.mark.parametrize(("users", "expected"), [(1, None), (2, 2.0), (3, 3.0)])
def test_counts_user_turns_only(users: int, expected: float | None) -> None:
    request = chat_view()
    request.messages[:] = [
        {"role": role, "content": "x"} for _ in range(users) for role in ("user", "assistant")
    ]
    assert (
        TurnsSignalConfig(name="chatty", type="turns", min=2).score(Observation(request))
        == expected
    )
