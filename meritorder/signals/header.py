"""`type: header`: a request header's presence or value."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from meritorder.signals.base import SignalConfigBase

if TYPE_CHECKING:
    from meritorder.policy import Observation


class HeaderSignalConfig(SignalConfigBase):
    """Fires when request header `header` equals one of `values` or matches `pattern`; with
    neither, when the header is present at all."""

    type: Literal["header"]
    header: str = Field(pattern=r"^[A-Za-z0-9-]+$")
    values: tuple[str, ...] = ()
    pattern: str | None = None

    @field_validator("header")
    @classmethod
    def _lowercase(cls, header: str) -> str:
        return header.lower()

    def score(self, obs: Observation) -> float | None:
        value = obs.headers.get(self.header)
        if value is None:
            return None
        if not self.values and self.pattern is None:
            return 1.0
        if value in self.values or (self.pattern and re.fullmatch(self.pattern, value)):
            return 1.0
        return None
