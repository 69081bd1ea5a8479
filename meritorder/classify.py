"""The bridge from `classifiers` to the policy: the engine's signals as the policy's view."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from opentelemetry import trace
from prometheus_client import Counter

from meritorder import telemetry
from meritorder.policy import Classified
from meritorder.request import ChatRequest

if TYPE_CHECKING:
    from classifiers.engine import SignalEngine

log = structlog.get_logger("meritorder.classify")

# `meritorder serve`'s signal cache: ~4k rows (within the engine's 32 MiB) for 10 minutes each.
SIGNAL_CACHE_ENTRIES = 4096
SIGNAL_CACHE_TTL_S = 600.0

# Rows of the model's input the signal cache answered, and those it lacked (the encoder ran them).
CACHE_HITS = Counter(
    "meritorder_signal_cache_hits", "Classifier input rows read from the signal cache",
    registry=telemetry.METRICS.registry,
)  # fmt: skip
CACHE_MISSES = Counter(
    "meritorder_signal_cache_misses", "Classifier input rows the signal cache lacked (encoded)",
    registry=telemetry.METRICS.registry,
)  # fmt: skip


class EngineClassifier:
    """Runs the fused ONNX model (micro-batched, off the event loop) for the router."""

    def __init__(self, engine: SignalEngine) -> None:
        self.engine = engine
        self.attack_threshold = engine.spec.thresholds.prompt_attack

    @property
    def queued_rows(self) -> int:
        return self.engine.queued_rows

    async def classify(self, request: ChatRequest) -> Classified:
        signals = await self.engine.classify_messages(request.messages, request.field_texts())
        if signals.timing is not None:
            telemetry.record_batch(signals.timing)
        if self.engine.row_cache is not None:
            CACHE_HITS.inc(signals.cached_rows)
            CACHE_MISSES.inc(signals.rows - signals.cached_rows)
            trace.get_current_span().set_attribute(
                "meritorder.classifier.cached_rows", signals.cached_rows
            )
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
    model_dir: Path | None = None,
    *,
    force_cpu: bool = False,
    cache_entries: int = 0,
    cache_ttl_s: float = 0,
) -> EngineClassifier | None:
    """The classifier, or None (with the reason logged) when its model cannot be loaded; with
    `cache_entries` and `cache_ttl_s` both above 0 it keeps rows already encoded (signal cache)."""
    from classifiers.engine import SignalEngine
    from classifiers.spec import SpecError

    try:
        engine = SignalEngine.load(
            model_dir, force_cpu=force_cpu, cache_entries=cache_entries, cache_ttl_s=cache_ttl_s
        )
    except (OSError, SpecError, ValueError) as error:
        log.warning("classifier unavailable; classifier signals will not fire", error=str(error))
        return None
    log.info("classifier loaded", provider=engine.provider, version=engine.spec.version)
    return EngineClassifier(engine)
