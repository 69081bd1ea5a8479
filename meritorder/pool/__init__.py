"""Pool state: each model's load as its servers report it (Prometheus metrics, read off the
request path) and as the router sees it (in flight, latency from outcomes), with its age.

`state.py` is pure (what the policy reads: `ModelLoad`, and how saturated it is under a
`SaturationConfig`); `metrics.py` parses vLLM's and SGLang's exposition text; `monitor.py`
reads the endpoints and merges both sources into one snapshot per decision."""

from __future__ import annotations

from meritorder.pool.metrics import ReplicaMetrics, parse_metrics
from meritorder.pool.monitor import PoolMonitor
from meritorder.pool.state import ModelLoad, pressure, saturation_of

__all__ = [
    "ModelLoad",
    "PoolMonitor",
    "ReplicaMetrics",
    "parse_metrics",
    "pressure",
    "saturation_of",
]
