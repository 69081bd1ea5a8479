"""The image's entrypoint and health probe, run as plain processes (no container engine here),
and the Containerfiles checked for what the Kubernetes manifests rely on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.k8s.processes import REPO, Processes, free_port, free_ports

CONTAINER = REPO / "deploy" / "container"
ENTRYPOINT = CONTAINER / "entrypoint.sh"
POLICY = REPO / "deploy" / "config.yaml"


def image_env(**env: str) -> dict[str, str]:
    """The environment the image sets up: meritorder on PATH, the probe importable."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {"PATH": path, "PYTHONPATH": str(CONTAINER), "MERITORDER_HOST": "127.0.0.1", **env}


def probe(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meritorder_healthprobe", "--addr", f"127.0.0.1:{port}", *args],
        env={**os.environ, **image_env()},
        capture_output=True,
        text=True,
        timeout=30,
    )


def configmap_volume(root: Path, policy: str) -> Path:
    """A directory laid out as the kubelet mounts a ConfigMap: policy.yaml -> ..data/policy.yaml."""
    root.mkdir()
    swap_configmap(root, policy)
    (root / "policy.yaml").symlink_to("..data/policy.yaml")
    return root / "policy.yaml"


def swap_configmap(root: Path, policy: str) -> None:
    """Update it as the kubelet does: a new timestamped directory, then one atomic rename."""
    version = root / f"..{time.time_ns()}"
    version.mkdir()
    (version / "policy.yaml").write_text(policy)
    (root / "..data_tmp").symlink_to(version.name)
    (root / "..data_tmp").rename(root / "..data")


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with Processes(tmp_path) as running:
        yield running


def test_entrypoint_serves_the_mounted_policy_configured_from_the_environment(
    processes: Processes, tmp_path: Path
) -> None:
    config = configmap_volume(tmp_path / "config", POLICY.read_text())
    port, metrics, otlp = free_ports(3)
    env = image_env(
        MERITORDER_CONFIG=str(config),
        MERITORDER_PORT=str(port),
        MERITORDER_METRICS_PORT=str(metrics),
        MERITORDER_CLASSIFIER="off",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp}",
        OTEL_SERVICE_NAME="meritorder-test",
    )
    processes.spawn("router", [str(ENTRYPOINT)], env=env)
    processes.wait_port("router", port)

    serving = probe(port)
    assert (serving.returncode, serving.stdout.strip()) == (0, "SERVING")
    assert probe(port, "--service", "envoy.service.ext_proc.v3.ExternalProcessor").returncode == 0
    assert "meritorder_" in httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
    log = processes.log("router")
    assert f"127.0.0.1:{port}" in log
    assert f"http://127.0.0.1:{otlp}" in log  # the OTEL_* variables reached the router

    assert processes.stop("router", signal.SIGTERM) == 0
    down = probe(port)
    assert down.returncode == 2
    assert "UNAVAILABLE" in down.stderr


def test_router_reloads_a_configmap_update_and_keeps_the_last_good_policy(
    processes: Processes, tmp_path: Path
) -> None:
    root = tmp_path / "config"
    config = configmap_volume(root, POLICY.read_text())
    port = free_port()
    env = image_env(
        MERITORDER_CONFIG=str(config),
        MERITORDER_PORT=str(port),
        MERITORDER_METRICS_PORT="",
        MERITORDER_CLASSIFIER="off",
    )
    processes.spawn("router", [str(ENTRYPOINT)], env=env)
    processes.wait_port("router", port)

    swap_configmap(root, POLICY.read_text().replace("default_model: small", "default_model: large"))
    assert wait_for(lambda: "policy reloaded" in processes.log("router"))
    swap_configmap(root, POLICY.read_text().replace("default_model: small", "default_model: lage"))
    assert wait_for(lambda: "policy rejected" in processes.log("router"))
    assert "lage" in processes.log("router")  # the problem is logged, naming the value
    assert probe(port).returncode == 0  # ... and the router keeps serving the last good policy


def test_health_probe_fails_when_no_router_listens() -> None:
    result = probe(free_port(), "--timeout", "0.5")

    assert result.returncode == 2
    assert "UNAVAILABLE" in result.stderr or "DEADLINE_EXCEEDED" in result.stderr


def test_entrypoint_refuses_a_missing_policy_with_the_fix(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ENTRYPOINT)],
        env=image_env(MERITORDER_CONFIG=str(tmp_path / "absent.yaml")),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "mount it there or set MERITORDER_CONFIG" in result.stderr


def test_entrypoint_rejects_an_unknown_setting(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ENTRYPOINT)],
        env=image_env(MERITORDER_CONFIG=str(POLICY), MERITORDER_DEVICE="gpu"),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "MERITORDER_DEVICE must be auto or cpu" in result.stderr


def test_entrypoint_runs_other_meritorder_commands() -> None:
    result = subprocess.run(
        [str(ENTRYPOINT), "validate", str(POLICY)],
        env=image_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert ": ok (" in result.stdout


@pytest.mark.parametrize("name", ["Containerfile", "Containerfile.cuda"])
def test_containerfile_runs_the_entrypoint_as_a_non_root_user(name: str) -> None:
    text = (CONTAINER / name).read_text()
    final = text[text.rindex("\nFROM ") :]  # the runtime stage

    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE)
    assert 'ENTRYPOINT ["/opt/meritorder/entrypoint.sh"]' in final
    assert 'CMD ["python", "-m", "meritorder_healthprobe"]' in final
    assert "MERITORDER_CONFIG=/etc/meritorder/policy.yaml" in final
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), f"{name}: COPY {path}: no such file in the repository"


def test_cuda_image_carries_cudnn_for_onnxruntime_gpu() -> None:
    text = (CONTAINER / "Containerfile.cuda").read_text()

    assert re.search(r"ARG CUDA_IMAGE=\S+/nvidia/cuda:12\.\S+-cudnn-runtime-", text)
    assert "CUDAExecutionProvider" in text  # the build fails if the GPU provider is missing
