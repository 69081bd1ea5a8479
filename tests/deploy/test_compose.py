"""deploy/compose.yaml, checked as far as the machine allows: by the installed Compose when there
is one, the router's image built when a container engine runs, and its shape always (this
project's build machine has a docker client and no daemon, so the first two skip there)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose.yaml"
CONTAINERFILE = REPO / "deploy" / "container" / "Containerfile"
IMAGE = "localhost/meritorder:compose-test"
# Keys of the Compose Specification that a file of this shape may use; a key outside these is a
# typo or a feature to check by hand before it is added here.
TOP_LEVEL_KEYS = {"name", "services", "networks", "volumes", "configs", "secrets", "include"}
SERVICE_KEYS = {
    "build", "command", "container_name", "depends_on", "entrypoint", "env_file", "environment",
    "extra_hosts", "healthcheck", "image", "labels", "network_mode", "networks", "ports",
    "profiles", "read_only", "restart", "stop_grace_period", "stop_signal", "user", "volumes",
    "working_dir",
}  # fmt: skip


def _works(command: list[str]) -> bool:
    if shutil.which(command[0]) is None:
        return False
    try:
        return subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def compose_command() -> list[str] | None:
    """The installed Compose v2 (a client is enough: `config` needs no daemon). Not the
    end-of-life `docker-compose` 1.x: it refuses the top-level `name` of the Compose Spec."""
    for command in (["docker", "compose"], ["podman", "compose"]):
        if _works([*command, "version"]):
            return command
    return None


def running_engine() -> str | None:
    """A container engine whose daemon (or, for podman, runtime) answers."""
    return next((name for name in ("docker", "podman") if _works([name, "info"])), None)


def test_the_installed_compose_accepts_the_file() -> None:
    compose = compose_command()
    if compose is None:
        pytest.skip("no Compose here (docker compose, podman compose)")
    done = subprocess.run(
        [*compose, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.e2e
def test_the_router_image_builds_and_validates_its_policy_where_an_engine_runs() -> None:
    engine = running_engine()
    if engine is None:
        pytest.skip("no running container engine here (`docker info` and `podman info` fail)")
    build = [engine, "build", "-f", str(CONTAINERFILE), "-t", IMAGE]
    if engine == "podman":  # docker reads Containerfile.dockerignore next to the file by itself
        build += ["--ignorefile", str(CONTAINERFILE.with_name("Containerfile.dockerignore"))]
    built = subprocess.run([*build, str(REPO)], capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        ran = subprocess.run(
            [engine, "run", "--rm", IMAGE, "validate", "/etc/meritorder/policy.yaml"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, ran.stderr
        assert ": ok (" in ran.stdout
    finally:
        subprocess.run([engine, "rmi", "-f", IMAGE], capture_output=True, timeout=120)


def test_the_file_uses_compose_keys_and_depends_only_on_its_own_services() -> None:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    assert set(compose) <= TOP_LEVEL_KEYS, set(compose) - TOP_LEVEL_KEYS
    services: dict[str, dict[str, Any]] = compose["services"]
    for name, service in services.items():
        unknown = set(service) - SERVICE_KEYS
        assert not unknown, f"service {name}: keys outside the Compose Specification: {unknown}"
        assert ("image" in service) or ("build" in service), f"service {name}: no image or build"
        for needed in service.get("depends_on", []):
            assert needed in services, f"service {name} depends on {needed}, not a service"
        for variable, value in service.get("environment", {}).items():
            # YAML reads an unquoted true/yes as a boolean, which Compose refuses as a value.
            assert not isinstance(value, bool), f"service {name}: quote {variable}'s {value}"
