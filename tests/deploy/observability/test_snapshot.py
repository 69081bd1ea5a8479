"""The dashboard picture: panel -> query -> series, on fake Prometheus answers (no Prometheus)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from observability.snapshot import (
    DASHBOARD,
    Panel,
    Series,
    Target,
    demo_calls,
    draw,
    empty_panels,
    evaluate,
    expand,
    legend,
    load_panels,
    main,
    rate_interval,
    render,
    results_of,
    series_of,
    stale_panels,
    tick,
)


def matrix(*results: tuple[dict[str, str], list[tuple[float, str]]]) -> dict[str, Any]:
    """A `query_range` answer as Prometheus writes it (values are strings)."""
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": m, "values": [[t, v] for t, v in vs]} for m, vs in results],
        },
    }


def test_every_panel_of_the_shipped_dashboard_is_read_with_its_grid_unit_and_queries() -> None:
    raw = json.loads(DASHBOARD.read_text())
    panels = load_panels(raw)
    assert [p.title for p in panels] == [p["title"] for p in raw["panels"]]
    assert sum(len(p.targets) for p in panels) == sum(len(p["targets"]) for p in raw["panels"])
    latency = next(p for p in panels if p.title.startswith("Latency by stage"))
    assert latency.unit == "s" and (latency.w, latency.h) == (12, 8)
    for panel in panels:  # every query is one Prometheus accepts: no dashboard variable left
        for target in panel.targets:
            assert "$" not in expand(target.expr, 5)


def test_rate_interval_is_grafanas_four_scrapes_or_step_plus_one_scrape() -> None:
    assert rate_interval(5, scrape_s=5) == 20
    assert rate_interval(30, scrape_s=5) == 35
    assert expand("rate(x_total[$__rate_interval])", 5) == "rate(x_total[20s])"


def test_an_unknown_dashboard_variable_is_an_error_not_a_silent_query() -> None:
    with pytest.raises(ValueError, match=r"\$tenant"):
        expand('sum(x{tenant="$tenant"})', 5)


def test_series_are_named_by_the_legend_format_and_keep_nan_as_gaps() -> None:
    answer = matrix(
        ({"model": "small", "decision": "default"}, [(100, "0.5"), (105, "NaN")]),
        ({"model": "coder", "decision": "code"}, [(100, "1"), (105, "2")]),
    )
    coder, small = series_of(answer, "{{model}} / {{decision}}")
    assert (coder.label, coder.times, coder.values) == ("coder / code", (100.0, 105.0), (1.0, 2.0))
    assert small.label == "small / default" and small.values[0] == 0.5
    assert math.isnan(small.values[1]) and small.has_points


def test_a_missing_label_renders_empty_and_no_format_shows_the_labels() -> None:
    assert legend("{{model}} / {{decision}}", {"decision": "refuse-attacks"}) == " / refuse-attacks"
    assert legend("", {"__name__": "up", "job": "meritorder"}) == 'up{job="meritorder"}'


def test_a_prometheus_error_is_raised_with_its_message() -> None:
    with pytest.raises(ValueError, match="parse error"):
        series_of({"status": "error", "errorType": "bad_data", "error": "parse error"}, "")


def test_a_panel_with_no_series_or_only_nan_is_reported_empty() -> None:
    nan_only = Series("p99 classify", (1.0, 2.0), (math.nan, math.nan))
    some = Series("rows", (1.0,), (0.0,))  # a zero is data: the gauge was read
    results = {"a": [], "b": [nan_only], "c": [some, nan_only]}
    assert empty_panels(results) == ["a", "b"]


def test_evaluate_sends_each_panels_own_expanded_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, float, float, int]] = []

    def fake_query_range(
        url: str, expr: str, start: float, end: float, step_s: int
    ) -> dict[str, Any]:
        sent.append((expr, start, end, step_s))
        return matrix(({"stage": "parse"}, [(start, "0.001")])) if "stage" in expr else matrix()

    monkeypatch.setattr("observability.snapshot.query_range", fake_query_range)
    stages = Target("rate(meritorder_stage_seconds_bucket[$__rate_interval])", "p50 {{stage}}")
    queue = Target("sum(meritorder_classifier_queue_rows)", "rows")
    panels = [
        Panel("Latency", "s", 0, 0, 12, 8, (stages,)),
        Panel("Queue", "short", 12, 0, 12, 8, (queue,)),
    ]
    results = evaluate(panels, "http://prometheus", 10.0, 70.0, 5)
    assert [e for e, *_ in sent] == [
        "rate(meritorder_stage_seconds_bucket[20s])",
        "sum(meritorder_classifier_queue_rows)",
    ]
    assert {(start, end, step) for _, start, end, step in sent} == {(10.0, 70.0, 5)}
    assert [s.label for s in results["Latency"]] == ["p50 parse"]
    assert empty_panels(results) == ["Queue"]


def texts(figure: Any) -> list[str]:
    return [t.get_text() for t in figure.findobj(match=lambda a: hasattr(a, "get_text"))]


def test_each_panel_is_drawn_with_its_title_and_an_empty_one_says_no_data() -> None:
    panels = load_panels(json.loads(DASHBOARD.read_text()))
    results: dict[str, list[Series]] = {p.title: [] for p in panels}
    results[panels[0].title] = [
        Series(f"model{n:02} / decision", (0.0, 5.0, 10.0), (0.1, 0.2, 0.3)) for n in range(15)
    ]
    shown = texts(render(panels, results, "caption", (0.0, 10.0)))
    assert all(p.title in shown for p in panels)
    assert shown.count("no data") == len(panels) - 1
    # Fifteen series: three legend rows, eleven named, the other four counted, not dropped.
    assert "model10 / decision" in shown and "model11 / decision" not in shown
    assert "+4 more series" in shown


def test_the_picture_is_written_as_a_png(tmp_path: Path) -> None:
    panels = load_panels(json.loads(DASHBOARD.read_text()))
    out = tmp_path / "img" / "dashboard.png"
    draw(panels, {}, out, "caption")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_recorded_snapshot_reads_back_the_same_series_with_gaps() -> None:
    recorded = {
        "panels": {
            "Latency": {
                "queries": ["q"],
                "series": [{"label": "p99 classify", "times": [1.0, 2.0], "values": [0.5, None]}],
            },
            "Queue": {"queries": ["q"], "series": []},
        }
    }
    (latency,) = results_of(json.loads(json.dumps(recorded)))["Latency"]
    assert latency.label == "p99 classify" and latency.times == (1.0, 2.0)
    assert latency.values[0] == 0.5 and math.isnan(latency.values[1])
    assert empty_panels(results_of(recorded)) == ["Queue"]


def test_a_recording_of_other_queries_is_stale() -> None:
    panel = Panel("Queue", "short", 0, 0, 12, 8, (Target("sum(x[$__rate_interval])", "rows"),))
    same = {"step_s": 5, "panels": {"Queue": {"queries": ["sum(x[20s])"], "series": []}}}
    assert stale_panels([panel], same) == []
    edited = {"step_s": 5, "panels": {"Queue": {"queries": ["sum(y[20s])"], "series": []}}}
    assert stale_panels([panel], edited) == ["Queue"]
    assert stale_panels([panel], {"step_s": 5, "panels": {}}) == ["Queue"]


def test_without_a_prometheus_binary_the_run_stops_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dashboard.png"
    assert main(["--prometheus", "no-such-prometheus-binary", "--out", str(out)]) == 2
    assert "apt-get install prometheus" in capsys.readouterr().err
    assert not out.exists()


def test_tick_labels_follow_the_panel_unit() -> None:
    assert tick(0.0125, unit="s") == "12.5 ms"
    assert tick(2.0, unit="s") == "2 s"
    assert tick(1500.0, unit="short") == "1.5k"
    assert tick(0.25, unit="short") == "0.25"


def test_the_demo_load_mixes_every_kind_the_panels_show() -> None:
    calls = [
        c for _, c in zip(range(400), demo_calls({"acme": "t1", "globex": "t2"}), strict=False)
    ]
    kinds = {c.kind for c in calls}
    assert {
        "everyday",
        "code",
        "reasoning",
        "pii",
        "attack",
        "harmful",
        "budget",
        "malformed",
    } <= kinds
    # Distinct prompts: the signal cache must not answer for the classifier.
    classified = [c.body for c in calls if c.kind != "malformed"]
    assert len(set(classified)) == len(classified)
    assert {c.headers.get("x-tenant-token") for c in calls} == {None, "t1", "t2"}
    assert all(json.loads(c.body)["model"] == "large" for c in calls if c.kind == "budget")
