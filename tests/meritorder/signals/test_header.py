"""`type: header`: a header's presence, value or pattern."""

from __future__ import annotations

import pytest

from meritorder.policy import Observation
from meritorder.signals import HeaderSignalConfig
from tests.helpers import chat_view


@pytest.mark.parametrize(
    ("values", "pattern", "sent", "expected"),
    [
        ((), None, "anything", 1.0),  # presence
        ((), None, None, None),
        (("vip", "gold"), None, "gold", 1.0),
        (("vip",), None, "vipx", None),
        ((), "team-[0-9]+", "team-42", 1.0),
        ((), "team-[0-9]+", "team-42x", None),  # the whole value must match
    ],
)
def test_fires_on_the_header_as_configured(
    values: tuple[str, ...], pattern: str | None, sent: str | None, expected: float | None
) -> None:
    signal = HeaderSignalConfig(
        name="h", type="header", header="X-Group", values=values, pattern=pattern
    )
    headers = {} if sent is None else {"x-group": sent}  # Envoy sends names lowercased
    assert signal.score(Observation(chat_view(), headers)) == expected
