"""deploy/kubernetes carries the outcome loop: the Gateway's Envoy streams its access log to the
router, reads JSON usage into metadata with the same rules as deploy/envoy/envoy.yaml, and lets
the router write the decision's facts, in every tree that renders a Gateway."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meritorder.outcomes import DECISION_NAMESPACE
from tests.k8s.kustomize_subset import Object, find, render
from tests.k8s.processes import REPO

K8S = REPO / "deploy" / "kubernetes"
GATEWAYS = ["gateway", "overlays/inference-extension", "overlays/tracing", "overlays/shared-state"]


def envoy_rules() -> list[Any]:
    """The json_to_metadata response rules of the shipped Envoy config."""
    envoy = yaml.safe_load((REPO / "deploy" / "envoy" / "envoy.yaml").read_text())
    (listener,) = envoy["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (usage,) = [f for f in manager["http_filters"] if f["name"].endswith("json_to_metadata")]
    rules: list[Any] = usage["typed_config"]["response_rules"]["rules"]
    return rules


def canonical(rules: list[Any]) -> list[str]:
    return sorted(yaml.safe_dump(rule, sort_keys=True) for rule in rules)


@pytest.mark.parametrize("tree", GATEWAYS)
def test_the_gateways_envoy_streams_its_access_log_to_the_router(tree: str) -> None:
    objects = render(K8S / tree)
    gateway = find(objects, "Gateway", "meritorder", "meritorder")
    ref = gateway["spec"]["infrastructure"]["parametersRef"]
    assert (ref["kind"], ref["name"]) == ("EnvoyProxy", "meritorder")
    proxy = find(objects, "EnvoyProxy", "meritorder", "meritorder")
    sinks = [s for setting in proxy["spec"]["telemetry"]["accessLog"]["settings"]
             for s in setting["sinks"]]  # fmt: skip
    (als,) = [s["als"] for s in sinks if s["type"] == "ALS"]
    assert als["type"] == "HTTP"
    service = find(objects, "Service", "meritorder", "meritorder")
    assert [(b["name"], b["port"]) for b in als["backendRefs"]] == [("meritorder", 50051)]
    assert 50051 in {p["port"] for p in service["spec"]["ports"]}  # the router's gRPC port


@pytest.mark.parametrize("tree", GATEWAYS)
def test_json_usage_is_read_with_the_same_rules_as_the_shipped_envoy(tree: str) -> None:
    objects = render(K8S / tree)
    patch = find(objects, "EnvoyPatchPolicy", "meritorder-usage", "meritorder")
    assert patch["spec"]["targetRef"]["name"] == "meritorder"
    gateway = find(objects, "Gateway", "meritorder", "meritorder")
    listeners = {
        f"meritorder/meritorder/{listener['name']}" for listener in gateway["spec"]["listeners"]
    }
    (json_patch,) = patch["spec"]["jsonPatches"]
    assert json_patch["name"] in listeners  # <namespace>/<gateway>/<listener>
    value = json_patch["operation"]["value"]
    assert value["name"] == "envoy.filters.http.json_to_metadata"
    rules = value["typed_config"]["response_rules"]["rules"]
    assert canonical(rules) == canonical(envoy_rules())


@pytest.mark.parametrize("tree", GATEWAYS)
def test_the_router_may_write_the_decisions_facts(tree: str) -> None:
    objects = render(K8S / tree)
    policies = [o for o in objects if o["kind"] == "EnvoyExtensionPolicy"]
    router = [p for p in policies
              if any(ref["name"] == "meritorder" for e in p["spec"]["extProc"]
                     for ref in e["backendRefs"])]  # fmt: skip
    assert router, "no EnvoyExtensionPolicy sends to the router"
    for policy in router:
        for ext_proc in policy["spec"]["extProc"]:
            assert DECISION_NAMESPACE in ext_proc["metadata"]["writableNamespaces"]


def test_tracing_joins_the_same_envoy_proxy_and_keeps_the_access_log() -> None:
    objects = render(K8S / "overlays/tracing")
    proxies = [o for o in objects if o["kind"] == "EnvoyProxy"]
    assert [p["metadata"]["name"] for p in proxies] == ["meritorder"]
    telemetry: Object = proxies[0]["spec"]["telemetry"]
    assert telemetry["tracing"]["provider"]["type"] == "OpenTelemetry"
    assert telemetry["accessLog"]["settings"]


def envoy_filter(suffix: str) -> dict[str, Any]:
    """One HTTP filter of the shipped Envoy config, by the end of its name."""
    envoy = yaml.safe_load((REPO / "deploy" / "envoy" / "envoy.yaml").read_text())
    (listener,) = envoy["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (found,) = [f for f in manager["http_filters"] if f["name"].endswith(suffix)]
    return dict(found)


@pytest.mark.parametrize("tree", GATEWAYS)
def test_gzip_bodies_are_inflated_with_the_same_filter_as_the_shipped_envoy(tree: str) -> None:
    objects = render(K8S / tree)
    patch = find(objects, "EnvoyPatchPolicy", "meritorder-decompress", "meritorder")
    assert patch["spec"]["targetRef"]["name"] == "meritorder"
    gateway = find(objects, "Gateway", "meritorder", "meritorder")
    listeners = {f"meritorder/meritorder/{item['name']}" for item in gateway["spec"]["listeners"]}
    (json_patch,) = patch["spec"]["jsonPatches"]
    assert json_patch["name"] in listeners
    operation = json_patch["operation"]
    assert operation["path"].endswith("/http_filters/0")  # before the router's ext_proc filter
    assert operation["value"] == envoy_filter("decompressor")
    request = operation["value"]["typed_config"]["request_direction_config"]["common_config"]
    assert request["ignore_no_transform_header"] is True  # no client header keeps it encoded
