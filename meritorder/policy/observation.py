"""What the policy reads: one request's observation and the pool's state at decision time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from meritorder.learning.store import ContextEstimates
from meritorder.pool.state import ModelLoad
from meritorder.request import RequestView
from meritorder.sessions import SessionView

# A classifier output as a JSON- and span-attribute-safe value.
FieldValue = str | float | int | list[str]


class PiiFinding(Protocol):
    """A PII span as the classifiers report it (character offsets into message `message`)."""

    @property
    def type(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def score(self) -> float: ...
    @property
    def message(self) -> int | None: ...
    @property
    def field(self) -> str | None: ...  # set when found outside message text: not redactable


@dataclass(frozen=True)
class Classified:
    """The classifier outputs the policy reads (a view of `classifiers.Signals`)."""

    domain: str
    domain_scores: Mapping[str, float]
    prompt_attack: float
    attack_threshold: float
    difficulty: float
    pii: Sequence[PiiFinding]
    tokens: int
    # The harm score and its shipped threshold; both None when the model has no harm head (the
    # signal is then unavailable, never clean).
    harmful: float | None = None
    harmful_threshold: float | None = None
    # The top domain's calibrated probability (None: read it from `domain_scores`).
    domain_confidence: float | None = None
    # The share of the request's tokens the attack head read (1.0: all; a long request's
    # paragraphs past its budget are read as a spread).
    attack_read: float = 1.0
    # The reader the attack score came from (`classifiers.AttackSignal.by`): why a long request
    # was flagged, or how close it came.
    attack_by: str = "sequence"

    def __post_init__(self) -> None:
        if self.domain_confidence is None:
            object.__setattr__(self, "domain_confidence", self.domain_scores.get(self.domain, 0.0))

    @property
    def confidence(self) -> float:
        """The top domain's calibrated probability."""
        assert self.domain_confidence is not None  # filled in by __post_init__
        return self.domain_confidence

    def fields(self) -> dict[str, FieldValue]:
        """Every output, flat, as `route`/`classify` lines, the gRPC API and spans show it: the
        top domain's calibrated confidence, PII as its types (never a value), the harm score
        when the model has a harm head. A new output gets one line here."""
        out: dict[str, FieldValue] = {
            "domain": self.domain,
            "domain_confidence": self.confidence,
            "prompt_attack": self.prompt_attack,
            "attack_read": self.attack_read,
            "attack_by": self.attack_by,
            "difficulty": self.difficulty,
            "pii": sorted({f.type for f in self.pii}),
            "tokens": self.tokens,
        }
        if self.harmful is not None:
            out["harmful"] = self.harmful
        return out


@dataclass(frozen=True)
class Observation:
    """Everything the policy knows about one request."""

    request: RequestView
    headers: Mapping[str, str] = field(default_factory=dict)
    classified: Classified | None = None
    session: SessionView | None = None  # when the policy has `sessions` and the request names one

    @property
    def tokens(self) -> int:
        """Prompt tokens: the classifier's count, else about four characters a token."""
        if self.classified is not None:
            return self.classified.tokens
        return sum(len(t) for t in self.request.texts()) // 4 + 1


@dataclass(frozen=True)
class PoolState:
    """What the router knows of the world at decision time."""

    unhealthy: frozenset[str] = frozenset()
    tenant_spent: float = 0.0  # this request's tenant, in the current budget window
    # Per-model scores for `pick: scored` (higher wins), from whoever measures the pool.
    scores: Mapping[str, float] = field(default_factory=dict)
    # Learned estimates of the contexts `learning_contexts` names, and the seed of this
    # request's draws (keyed from its id: a decision can be replayed).
    estimates: Mapping[str, ContextEstimates] = field(default_factory=dict)
    seed: int = 0
    # Each model's load (meritorder/pool/): its servers' metrics and the router's own view.
    load: Mapping[str, ModelLoad] = field(default_factory=dict)
