"""bench/spin.py on the tiny model: every spin variant is measured with its own settings."""

from __future__ import annotations

import json
from pathlib import Path

from bench import spin


def test_every_spin_variant_is_timed_and_its_cpu_counted(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "spin.json"
    args = ["--model-dir", str(model_dir), "--rounds", "1", "--requests", "3", "--gap-ms", "0"]
    assert spin.main([*args, "--out", str(out)]) == 0

    figures = json.loads(out.read_text())
    assert [row["spin_us"] for row in figures["rows"]] == [spin_us for _, spin_us in spin.VARIANTS]
    assert figures["runs_per_request"] >= 1
    for row in figures["rows"]:
        assert row["p50_ms"] > 0 and row["cpu_ms_per_request"] >= 0


def test_a_default_spin_session_allows_spinning_without_a_bound(model_dir: Path) -> None:
    model = model_dir / "signals.int8.onnx"
    assert (
        spin.session(model, 50)
        .get_session_options()
        .get_session_config_entry("session.intra_op.spin_duration_us")
        == "50"
    )
    default = spin.session(model, None).get_session_options()
    assert default.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    slept = spin.session(model, 0).get_session_options()
    assert slept.get_session_config_entry("session.intra_op.allow_spinning") == "0"
