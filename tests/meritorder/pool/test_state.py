"""How saturated a model's load counts under its thresholds, the decision's SLO and the
policy for stale metrics."""

from __future__ import annotations

import math

import pytest

from meritorder.config import SaturationConfig, SloConfig
from meritorder.pool import ModelLoad, pressure, saturation_of

FRESH = {"replicas": 1, "reachable": 1, "age_s": 0.5}


@pytest.mark.parametrize(
    ("load", "saturation", "slo", "why"),
    [
        (ModelLoad(**FRESH, waiting=3), SaturationConfig(queue=4), None, None),
        (ModelLoad(**FRESH, waiting=4), SaturationConfig(queue=4), None, "queue"),
        # per replica: 6 waiting over two replicas is 3 each
        (
            ModelLoad(replicas=2, reachable=2, age_s=0.1, waiting=6),
            SaturationConfig(queue=4),
            None,
            None,
        ),
        (ModelLoad(**FRESH, kv_cache=0.95), SaturationConfig(kv_cache=0.9), None, "kv_cache"),
        (ModelLoad(**FRESH, kv_cache=0.5), SaturationConfig(kv_cache=0.9), None, None),
        (ModelLoad(**FRESH, itl_s=0.08), SaturationConfig(itl_ms=50), None, "itl"),
        (ModelLoad(**FRESH, itl_s=0.02), SaturationConfig(itl_ms=50), None, None),
        (ModelLoad(**FRESH, ttft_s=0.9), SaturationConfig(ttft_ms=800), None, "ttft"),
        (ModelLoad(**FRESH, ttft_s=0.9), SaturationConfig(), SloConfig(ttft_ms=800), "slo"),
        (ModelLoad(**FRESH, ttft_s=0.5), SaturationConfig(), SloConfig(ttft_ms=800), None),
        # the queue ahead adds its wait: 0.1 s + 4 waiting / 2 running * 0.5 s = 1.1 s
        (
            ModelLoad(**FRESH, ttft_s=0.1, waiting=4, running=2, duration_s=0.5),
            SaturationConfig(),
            SloConfig(ttft_ms=800),
            "slo",
        ),
        # no thresholds: nothing is saturated, however loaded
        (ModelLoad(**FRESH, waiting=500, kv_cache=1.0), SaturationConfig(), None, None),
        # the router's own TTFT counts for a model without metrics
        (ModelLoad(ttft_s=2.0), SaturationConfig(ttft_ms=1000), None, "ttft"),
        (None, SaturationConfig(queue=1), None, None),
    ],
)
def test_saturation_of(
    load: ModelLoad | None, saturation: SaturationConfig, slo: SloConfig | None, why: str | None
) -> None:
    assert saturation_of(load, saturation, slo) == why


STALE = ModelLoad(replicas=1, reachable=0, waiting=0, age_s=30.0, stale=True)
NEVER = ModelLoad(replicas=1, stale=True)


@pytest.mark.parametrize(
    ("on_stale", "why", "level"),
    [("healthy", None, 0.0), ("unknown", None, 1.0), ("saturated", "stale", math.inf)],
)
@pytest.mark.parametrize("load", [STALE, NEVER], ids=["old", "never_read"])
def test_stale_metrics_count_as_configured(
    load: ModelLoad, on_stale: str, why: str | None, level: float
) -> None:
    saturation = SaturationConfig(queue=1, on_stale=on_stale)  # type: ignore[arg-type]
    assert saturation_of(load, saturation) == why
    assert pressure(load, saturation) == level


def test_pressure_is_the_largest_measure_over_its_threshold() -> None:
    saturation = SaturationConfig(queue=4, kv_cache=0.8)
    assert pressure(ModelLoad(**FRESH, waiting=2, kv_cache=0.2), saturation) == 0.5
    assert pressure(ModelLoad(**FRESH, waiting=1, kv_cache=0.6), saturation) == pytest.approx(0.75)


def test_a_model_without_any_measure_has_unknown_pressure() -> None:
    assert pressure(ModelLoad(), SaturationConfig()) == 1.0
    assert pressure(None, SaturationConfig()) == 1.0


@pytest.mark.parametrize(
    ("load", "text"),
    [
        (
            ModelLoad(**FRESH, waiting=3, kv_cache=0.853, in_flight=2),
            "queue=3,kv=85%,inflight=2,age=0.5s",
        ),
        (
            ModelLoad(replicas=2, reachable=1, age_s=1.25, waiting=1),
            "queue=1,inflight=0,replicas=1/2,age=1.2s",
        ),
        (STALE, "stale(age=30.0s)"),
        (NEVER, "stale(age=never)"),
        (ModelLoad(ttft_s=0.25, in_flight=1), "ttft=250ms,inflight=1"),
    ],
)
def test_render_shows_the_load_behind_a_choice(load: ModelLoad, text: str) -> None:
    assert load.render() == text
