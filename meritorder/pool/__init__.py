"""Pool state: each model's load as its servers report it (Prometheus metrics, read off the
request path) and as the router sees it (in flight, latency from outcomes), with its age; and the
hints the router gives the pool's endpoint picker.

`state.py` is pure (what the policy reads: `ModelLoad`, and how saturated it is under a
`SaturationConfig`); `metrics.py` parses vLLM's and SGLang's exposition text; `monitor.py`
reads the endpoints and merges both sources into one snapshot per decision; `hints.py` makes the
headers the endpoint picker and model servers read. Names are imported on first use, so the
policy file's schema (`meritorder.config`) can import `hints` without the monitor."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meritorder.pool.hints import PoolHintsConfig, pool_hints
    from meritorder.pool.metrics import ReplicaMetrics, parse_metrics
    from meritorder.pool.monitor import PoolMonitor
    from meritorder.pool.state import ModelLoad, pressure, saturation_of

_EXPORTS = {
    "PoolHintsConfig": "hints",
    "pool_hints": "hints",
    "ReplicaMetrics": "metrics",
    "parse_metrics": "metrics",
    "PoolMonitor": "monitor",
    "ModelLoad": "state",
    "pressure": "state",
    "saturation_of": "state",
}

__all__ = [
    "ModelLoad",
    "PoolHintsConfig",
    "PoolMonitor",
    "ReplicaMetrics",
    "parse_metrics",
    "pool_hints",
    "pressure",
    "saturation_of",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
