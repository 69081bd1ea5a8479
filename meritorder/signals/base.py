"""What every signal config type is: a named, validated fact about a request that scores itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from meritorder.policy import Observation

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
# Why the classifier answered but a signal is missing (`SignalConfigBase.unavailable`).
NOT_IN_MODEL = "not_in_model"  # the loaded model has no head for it
PARTIAL_READ = "partial_read"  # it read only part of a request the signal must read whole


class SignalConfigBase(BaseModel):
    """One signal of the policy file. A type sets its `type` tag (a Literal field), its fields,
    and `score`; registering it in `meritorder.signals.SIGNAL_TYPES` makes the config accept it."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    # Whether the classifier model computes it: such a signal never fires without one.
    needs_classifier: ClassVar[bool] = False
    # Whether its firing says what was found (PII): hidden from clients with reason_detail minimal.
    reveals_detection: ClassVar[bool] = False

    name: str = Field(pattern=NAME_PATTERN)
    type: str

    def score(self, obs: Observation) -> float | None:
        """The score of this signal on `obs` when it fires, else None."""
        raise NotImplementedError

    def must_compute(self) -> bool:
        """Whether a request may not be decided until this signal has been computed."""
        return False

    def unavailable(self, obs: Observation) -> str | None:
        """Why the classifier ran but could not compute this signal, if it could not: its model
        lacks the head (`not_in_model`), or it read only part of the request where the signal
        asks for all of it (`partial_read`). Then the request is decided as if the classifier had
        not answered, never as clean."""
        return None

    def partly_read(self, obs: Observation) -> bool:
        """Whether this signal was computed on a spread of the request, not all of it: the
        decision stands, marked and counted."""
        return False

    def reads_whole(self) -> bool:
        """Whether this signal must read a request whole (`partial_read` otherwise): a request
        known too long for that before it is classified need not be classified to be refused."""
        return False


class ClassifierSignalConfig(SignalConfigBase):
    """A signal the classifier model computes (it never fires without one)."""

    needs_classifier: ClassVar[bool] = True

    required: bool = Field(
        default=False,
        description="when the classifier cannot compute it in time, the request gets "
        "routing.on_unavailable instead of being decided as if the signal were clean",
    )

    def must_compute(self) -> bool:
        return self.required
