"""The signals of one request: what the classifiers found, as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

PiiSource = Literal["model", "pattern"]


@dataclass(frozen=True, slots=True)
class DomainSignal:
    """The most likely subject area, the probability of each one, and `confidence`: the top
    one's calibrated probability (low: the request is unlike what the model was trained on)."""

    label: str
    scores: dict[str, float]
    confidence: float

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "scores": dict(self.scores), "confidence": self.confidence}


@dataclass(frozen=True, slots=True)
class AttackSignal:
    """The prompt-attack (jailbreak / injection) probability and the shipped threshold's verdict;
    `read`: the share of the request's tokens the attack head read (1.0: all of them; less when
    a long request's paragraphs did not fit its budget and a spread of them was read); `by`: the
    reader whose score it is, each at its own threshold (`sequence`: the request read whole in
    one row; `crop`: that row, of a turn too long for it, its head and tail; `view`: a paragraph
    or window; `short`: a short window over a long line; `segment`: the segment head;
    `decoded`: a base64, hex or byte-code run of the request, read as the text it decodes to)."""

    score: float
    flagged: bool
    read: float = 1.0
    by: str = "sequence"

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "flagged": self.flagged, "read": self.read, "by": self.by}


@dataclass(frozen=True, slots=True)
class HarmSignal:
    """The probability that the request asks for content a content policy may refuse (weapons,
    self-harm, malware...; not an attack on the model), and the shipped threshold's verdict."""

    score: float
    flagged: bool

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "flagged": self.flagged}


@dataclass(frozen=True, slots=True)
class DifficultySignal:
    """The probability that the strong model of the difficulty pair is needed."""

    score: float

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score}


@dataclass(frozen=True, slots=True)
class PiiEntity:
    """A PII span: character offsets `[start, end)` into the text of message `message`.

    `message` is None when the input was a single text rather than chat messages, or when the
    span lies in another field of the request: then `field` is its path (`tools[0].function.
    description`) and the offsets are into that field's text.
    """

    type: str
    start: int
    end: int
    score: float
    message: int | None = None
    source: PiiSource = "model"
    field: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "start": self.start,
            "end": self.end,
            "score": self.score,
        }
        if self.message is not None:
            out["message"] = self.message
        if self.field is not None:
            out["field"] = self.field
        return out


@dataclass(frozen=True, slots=True)
class BatchTiming:
    """When the batch that served a request was tokenized and run (epoch nanoseconds)."""

    requests: int
    rows: int
    tokenize_start_ns: int
    tokenize_end_ns: int
    inference_start_ns: int
    inference_end_ns: int


@dataclass(frozen=True, slots=True)
class Signals:
    """Everything the classifiers say about one request; `tokens` counts every message's tokens."""

    domain: DomainSignal
    prompt_attack: AttackSignal
    pii: tuple[PiiEntity, ...]
    difficulty: DifficultySignal
    tokens: int
    timing: BatchTiming | None = field(default=None, compare=False)
    # The distinct rows of the model's input the request needed, and how many of them came from
    # the signal cache rather than the encoder: how it was computed, not what it found.
    rows: int = field(default=0, compare=False)
    cached_rows: int = field(default=0, compare=False)
    harmful: HarmSignal | None = None  # None: the model has no harm head

    def to_json(self) -> dict[str, Any]:
        """The JSON of the signals; `harmful` is null when the model has no harm head."""
        return {
            "domain": self.domain.to_json(),
            "prompt_attack": self.prompt_attack.to_json(),
            "harmful": None if self.harmful is None else self.harmful.to_json(),
            "pii": [entity.to_json() for entity in self.pii],
            "difficulty": self.difficulty.to_json(),
            "tokens": self.tokens,
        }
