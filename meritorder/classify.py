"""The bridge from `classifiers` to the policy: the engine's signals as the policy's view."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from meritorder import telemetry
from meritorder.policy import Classified
from meritorder.request import RequestView

if TYPE_CHECKING:
    from classifiers.engine import SignalEngine

log = structlog.get_logger("meritorder.classify")


class EngineClassifier:
    """Runs the fused ONNX model (micro-batched, off the event loop) for the router."""

    def __init__(self, engine: SignalEngine) -> None:
        self.engine = engine
        self.attack_threshold = engine.spec.thresholds.prompt_attack

    @property
    def queued_rows(self) -> int:
        return self.engine.queued_rows

    async def classify(self, request: RequestView) -> Classified:
        signals = await self.engine.classify_messages(request.messages, request.field_texts())
        if signals.timing is not None:
            telemetry.record_batch(signals.timing)
        return Classified(
            domain=signals.domain.label,
            domain_scores=signals.domain.scores,
            prompt_attack=signals.prompt_attack.score,
            attack_threshold=self.attack_threshold,
            difficulty=signals.difficulty.score,
            pii=signals.pii,
            tokens=signals.tokens,
        )

    def close(self) -> None:
        self.engine.close()


def load_classifier(
    model_dir: Path | None = None, *, force_cpu: bool = False
) -> EngineClassifier | None:
    """The classifier, or None (with the reason logged) when its model cannot be loaded."""
    from classifiers.engine import SignalEngine
    from classifiers.spec import SpecError

    try:
        engine = SignalEngine.load(model_dir, force_cpu=force_cpu)
    except (OSError, SpecError, ValueError) as error:
        log.warning("classifier unavailable; classifier signals will not fire", error=str(error))
        return None
    log.info("classifier loaded", provider=engine.provider, version=engine.spec.version)
    return EngineClassifier(engine)
