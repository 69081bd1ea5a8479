"""Choosing the execution provider: CUDA only when it is there and runs, else CPU, and why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
from structlog.testing import capture_logs

from classifiers import session as session_module
from classifiers.session import (
    CPU,
    CUDA,
    INTRA_OP_SPIN_US,
    available_cores,
    create_session,
    session_options,
    spin_is_bounded,
)


def ready_log(logs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    (entry,) = [e for e in logs if e["event"] == "onnx session ready"]
    return entry


def test_forcing_cpu_runs_on_cpu_and_says_so(model_dir: Path) -> None:
    with capture_logs() as logs:
        session = create_session(model_dir / "signals.int8.onnx", force_cpu=True)
    assert session.get_providers()[0] == CPU
    assert ready_log(logs)["why"] == "CPU forced by configuration"


def test_missing_cuda_provider_falls_back_to_cpu_with_the_reason(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    with capture_logs() as logs:
        session = create_session(model_dir / "signals.int8.onnx")
    assert session.get_providers() == [CPU]
    assert ready_log(logs)["why"] == "CUDA provider not available"


class _FakeCudaSession:
    """Claims to run on CUDA, then fails the first run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def get_providers(self) -> list[str]:
        return [CUDA, CPU]

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA error: no kernel image is available")


def test_a_failing_cuda_smoke_run_falls_back_to_cpu_with_the_error(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ort.InferenceSession

    def fake(path: str, options: Any, providers: list[str]) -> Any:
        return _FakeCudaSession() if CUDA in providers else real(path, options, providers=providers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(session_module, "_nvidia_driver_present", lambda: True)
    monkeypatch.setattr(ort, "InferenceSession", fake)
    with capture_logs() as logs:
        session = create_session(model_dir / "signals.int8.onnx")
    assert session.get_providers() == [CPU]
    why = ready_log(logs)["why"]
    assert why == "CUDA smoke run failed: CUDA error: no kernel image is available"


def test_cpu_options_use_every_core_and_all_graph_optimizations() -> None:
    options = session_options()
    assert options.intra_op_num_threads == available_cores()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session_options(3).intra_op_num_threads == 3


def spinning(options: ort.SessionOptions) -> tuple[str, str | None]:
    allowed = options.get_session_config_entry("session.intra_op.allow_spinning")
    try:
        return allowed, options.get_session_config_entry("session.intra_op.spin_duration_us")
    except Exception:  # onnxruntime raises for a key that was never set
        return allowed, None


def test_idle_pool_threads_spin_briefly_then_sleep_where_onnxruntime_bounds_the_spin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert spinning(session_options()) == ("1", str(INTRA_OP_SPIN_US))
    assert spinning(session_options(spin_us=20)) == ("1", "20")
    assert spinning(session_options(spin_us=0)) == ("0", None)
    # An onnxruntime that would ignore the bound must not spin at all.
    monkeypatch.setattr(session_module, "spin_is_bounded", lambda: False)
    assert spinning(session_options()) == ("0", None)


def test_only_onnxruntime_1_27_and_later_count_as_bounding_the_spin() -> None:
    assert spin_is_bounded("1.27.0") and spin_is_bounded("1.31.1") and spin_is_bounded("2.0")
    assert not spin_is_bounded("1.26.2")
    assert not spin_is_bounded("1.20.0")
    assert not spin_is_bounded("nightly")


def test_a_missing_model_file_says_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"signals\.int8\.onnx does not exist"):
        create_session(tmp_path / "signals.int8.onnx")


def test_a_host_without_an_nvidia_driver_uses_cpu_without_trying_cuda(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[Sequence[str]] = []
    real = ort.InferenceSession

    def spy(path: str, options: Any, providers: Sequence[str]) -> Any:
        tried.append(providers)
        return real(path, options, providers=providers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(session_module, "_nvidia_driver_present", lambda: False)
    monkeypatch.setattr(ort, "InferenceSession", spy)
    with capture_logs() as logs:
        session = create_session(model_dir / "signals.int8.onnx")
    assert session.get_providers()[0] == CPU
    assert tried == [[CPU]]
    assert any("no NVIDIA driver" in str(entry.get("why")) for entry in logs)
