"""The Grafana dashboard and the compose file that provisions it, against a live router."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import yaml
from devstack import Stack

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OBSERVABILITY = DEPLOY / "observability"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "meritorder.json"
DATASOURCES = OBSERVABILITY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def exported(text: str) -> tuple[set[str], set[str]]:
    """Sample names and metric family names of a Prometheus text exposition."""
    samples = {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line[:1] not in ("#", "")
    }
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    return samples, families


def test_every_panel_query_names_a_metric_the_router_exports(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        for content in ("Why does my python function raise KeyError?", "hello"):
            body = {"model": "auto", "messages": [{"role": "user", "content": content}]}
            assert http.post("/v1/chat/completions", json=body).status_code == 200
    text = httpx.get(f"http://127.0.0.1:{stack.ports.metrics}/metrics", timeout=10).text
    samples, families = exported(text)
    named = {m for e in expressions() for m in re.findall(r"\bmeritorder_[a-z_]+", e)}
    assert len(named) >= 9
    unknown = sorted(
        m
        for m in named
        if m not in samples | families  # a labelled counter with no sample yet has its TYPE
        and not any(m.endswith(s) and m.removesuffix(s) in families for s in SUFFIXES)
    )
    assert not unknown, f"the dashboard queries metrics the router does not export: {unknown}"
    # Requests were routed, so the panels over decisions and stages have data, not just names.
    assert {"meritorder_requests_total", "meritorder_stage_seconds_bucket"} <= samples


def test_the_panels_read_the_provisioned_data_source() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    prometheus = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9464"]  # `--metrics-port 9464`


def test_compose_builds_the_router_image_and_mounts_only_files_that_exist() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"envoy", "router", "mocks", "jaeger", "prometheus", "grafana"} <= set(services)
    build = services["router"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    for name, service in services.items():
        command = json.dumps(service.get("command", ""))
        assert "pip install" not in command, f"{name} installs at start: build an image instead"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
    grafana = services["grafana"]["volumes"]
    assert any(v.startswith("./observability/grafana/dashboards:") for v in grafana)


def test_grafana_is_provisioned_from_where_compose_mounts_the_dashboard_and_data_source() -> None:
    grafana = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])  # host path -> container path
    assert mounts["./observability/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards = mounts["./observability/grafana/dashboards"]
    provisioning = OBSERVABILITY / "grafana" / "provisioning" / "dashboards" / "meritorder.yaml"
    (provider,) = yaml.safe_load(provisioning.read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == dashboards
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards}/{DASHBOARD.name}"
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    # Host networking: Grafana reaches compose's Prometheus on its default port.
    assert source["type"] == "prometheus" and source["url"] == "http://127.0.0.1:9090"
