"""bench/gpu.sh and bench/gpu.py, checked where there is no GPU: the script parses, its CPU smoke
mode runs every section, and without CUDA it refuses to measure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "bench" / "gpu.sh"


def _gpu_sh(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    # GPU_PYTHON: this venv as it is, so the test installs nothing.
    env = {**os.environ, "GPU_PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SCRIPT), *args, "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_gpu_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=10)


def test_the_cpu_smoke_run_measures_every_section(model_dir: Path, tmp_path: Path) -> None:
    done = _gpu_sh("--cpu-smoke", str(model_dir), out=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    figures = json.loads((tmp_path / "gpu.json").read_text())
    assert figures["cpu_smoke"] is True
    (model,) = figures["models"]
    assert model["skipped"] == []
    assert model["check"]["runs_on"] == "CPUExecutionProvider"
    assert sum(model["check"]["nodes_by_provider"].values()) > 0
    cases = {(row["window"], row["tokens"]) for row in model["latency"]}
    assert cases == {(256, 128), (256, 512), (512, 128), (512, 512)}
    assert all(
        row["engine_ms"]["p50"] > 0 and row["bare_forward_ms"]["p50"] > 0
        for row in model["latency"]
    )
    assert [row["batch"] for row in model["batch_128_tokens"]] == [1, 2, 4, 8, 16, 32, 64]
    levels = model["concurrency_128_tokens"]
    assert [row["concurrency"] for row in levels] == [1, 4, 16, 64]
    assert all(row["requests"] > 0 for row in levels)
    assert "CPU SMOKE RUN" in (tmp_path / "gpu.md").read_text()


def test_a_section_the_budget_cannot_fit_is_recorded_as_skipped(
    model_dir: Path, tmp_path: Path
) -> None:
    done = _gpu_sh("--cpu-smoke", str(model_dir), "--budget-s", "0.1", out=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    (model,) = json.loads((tmp_path / "gpu.json").read_text())["models"]
    assert "batch 64" in model["skipped"] and "concurrency 64" in model["skipped"]
    assert "Skipped (time budget)" in (tmp_path / "gpu.md").read_text()


def test_another_graph_of_the_model_directory_is_measured_in_place_of_the_int8_one(
    model_dir: Path, tmp_path: Path
) -> None:
    profile = tmp_path / "profile"
    shutil.copytree(model_dir, profile)
    (profile / "signals.int8.onnx").rename(profile / "signals.fp16.onnx")

    done = _gpu_sh("--cpu-smoke", str(profile), "--graph", "signals.fp16.onnx", out=tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    (model,) = json.loads((tmp_path / "gpu.json").read_text())["models"]
    assert model["graph"] == "signals.fp16.onnx" and model["latency"]


@pytest.mark.skipif(Path("/proc/driver/nvidia").exists(), reason="this machine has a GPU")
def test_without_cuda_the_script_fails_loudly_and_measures_nothing(
    model_dir: Path, tmp_path: Path
) -> None:
    done = _gpu_sh(str(model_dir), out=tmp_path)

    assert done.returncode == 3
    assert "CUDA PROVIDER CHECK FAILED" in done.stderr
    assert not (tmp_path / "gpu.json").exists()
