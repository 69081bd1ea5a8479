"""Text to signals: domain, prompt attack, harm, PII and difficulty from one fused ONNX model.

Names are imported on first use, so `python -m classifiers.training...` (its own venv, without
the runtime's dependencies) can import this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from classifiers.batching import BatcherClosed, BatchStats, MicroBatcher
    from classifiers.cache import CacheStats, MemoryRowCache, RowCache
    from classifiers.cli import run_classify
    from classifiers.engine import DEFAULT_MODEL_DIR, ClassifyInput, InvalidInput, SignalEngine
    from classifiers.pii_patterns import find_pii
    from classifiers.signals import (
        AttackSignal,
        DifficultySignal,
        DomainSignal,
        HarmSignal,
        PiiEntity,
        Signals,
    )
    from classifiers.spec import ModelSpec, SpecError
    from classifiers.text import message_text

_EXPORTS = {
    "BatcherClosed": "batching",
    "BatchStats": "batching",
    "MicroBatcher": "batching",
    "CacheStats": "cache",
    "MemoryRowCache": "cache",
    "RowCache": "cache",
    "run_classify": "cli",
    "DEFAULT_MODEL_DIR": "engine",
    "ClassifyInput": "engine",
    "InvalidInput": "engine",
    "SignalEngine": "engine",
    "find_pii": "pii_patterns",
    "AttackSignal": "signals",
    "DifficultySignal": "signals",
    "DomainSignal": "signals",
    "HarmSignal": "signals",
    "PiiEntity": "signals",
    "Signals": "signals",
    "ModelSpec": "spec",
    "SpecError": "spec",
    "message_text": "text",
}

__all__ = [
    "DEFAULT_MODEL_DIR",
    "AttackSignal",
    "BatchStats",
    "BatcherClosed",
    "CacheStats",
    "ClassifyInput",
    "DifficultySignal",
    "DomainSignal",
    "HarmSignal",
    "InvalidInput",
    "MemoryRowCache",
    "MicroBatcher",
    "ModelSpec",
    "PiiEntity",
    "RowCache",
    "SignalEngine",
    "Signals",
    "SpecError",
    "find_pii",
    "message_text",
    "run_classify",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'classifiers' has no attribute {name!r}")
    return getattr(importlib.import_module(f"classifiers.{module}"), name)
