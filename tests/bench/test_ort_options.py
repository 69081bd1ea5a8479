"""bench/ort_options.py on the tiny model: every option is measured, and the static int8 graph
is compared output by output with the fp32 one it was quantized from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench import ort_options


def test_every_option_and_both_quantizations_are_measured(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ort_options.json"
    # The tiny graph is fp32 itself: it stands in for the trained model's fp32 export.
    args = [
        "--quick",
        "--model-dir",
        str(model_dir),
        "--fp32",
        str(model_dir / "signals.int8.onnx"),
        "--calibration",
        "8",
        "--held-out",
        "4",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    assert ort_options.main(args) == 0

    figures = json.loads(out.read_text())
    options = {row["option"] for row in figures["rows"]}
    assert options == {
        "baseline",
        "optimization",
        "threads",
        "spin",
        "execution",
        "io_binding",
        "quantization",
    }
    assert {row["model"] for row in figures["rows"] if row["option"] == "quantization"} == {
        "fp32",
        "dynamic_int8",
        "static_int8",
    }
    assert all(row[f"batch_{b}"]["p50"] > 0 for row in figures["rows"] for b in (1, 8))
    accuracy = figures["accuracy"]
    for graph in ("dynamic_int8", "static_int8"):
        for output in ort_options.OUTPUTS:
            assert 0 <= accuracy[graph][output]["max_abs"] < 1
    assert "static int8 (QDQ)" in out.with_suffix(".md").read_text()


def test_io_binding_gives_the_outputs_of_session_run(model_dir: Path) -> None:
    session = ort.InferenceSession(
        str(model_dir / "signals.int8.onnx"), providers=["CPUExecutionProvider"]
    )
    feed = ort_options.Encoder(model_dir).batch(["alice smith said hello", "the cat sat"], 128)
    plain = session.run(list(ort_options.OUTPUTS), feed)

    binding = ort_options.bind(session, feed)
    session.run_with_iobinding(binding)
    for got, want in zip(binding.copy_outputs_to_cpu(), plain, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_calibration_and_held_out_texts_come_from_different_splits() -> None:
    train = ort_options.split_texts("train", 300)
    dev = ort_options.split_texts("dev", 300)
    assert len(train) == 300 and len(dev) == 300
    assert not set(train) & set(dev)
