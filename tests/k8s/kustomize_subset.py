"""A small renderer for the subset of kustomize that deploy/kubernetes uses, so that `make test`
can render every overlay offline (the kustomize binary is not on PyPI or npm).

Supported, as kustomize does them: `resources` (files and directories with a kustomization.yaml),
`configMapGenerator` (files, `behavior: create|replace`, only with `disableNameSuffixHash: true`),
`patches` with a `path` to a strategic-merge patch (target = the patch's kind/name/namespace;
built-in lists of `containers`, `initContainers`, `env`, `volumes`, `volumeMounts` merge by name,
every other list is replaced, as for custom resources), `namespace`, `commonLabels` (metadata and
the selectors of Deployments, Services and PodDisruptionBudgets) and `images`. Anything else in
a kustomization.yaml is an error, so a new feature cannot be silently ignored.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "patches",
    "namespace",
    "commonLabels",
    "images",
}
CLUSTER_SCOPED = {"Namespace", "GatewayClass", "ClusterRole", "ClusterRoleBinding"}
MERGE_BY_NAME = {"containers", "initContainers", "env", "volumes", "volumeMounts"}
BUILTIN_GROUPS = {"v1", "apps/v1", "policy/v1", "autoscaling/v2", "batch/v1"}


class KustomizeError(ValueError):
    pass


def load_documents(path: Path) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[Object]:
    """The objects `kustomize build directory` would print, for the supported subset."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    unsupported = set(spec) - SUPPORTED
    if unsupported:
        raise KustomizeError(f"{directory}: kustomization fields not supported: {unsupported}")
    objects: list[Object] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        objects += render(path) if path.is_dir() else load_documents(path)
    for generator in spec.get("configMapGenerator", []):
        _generate_config_map(directory, generator, objects)
    for patch in spec.get("patches", []):
        _apply_patch(directory, patch, objects)
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for key, value in spec.get("commonLabels", {}).items():
        for obj in objects:
            _add_label(obj, key, value)
    for image in spec.get("images", []):
        for obj in objects:
            _set_image(obj, image)
    return objects


def key(obj: Object) -> tuple[str, str, str]:
    metadata = obj.get("metadata", {})
    return obj["kind"], metadata.get("namespace", ""), metadata["name"]


def find(objects: list[Object], kind: str, name: str, namespace: str | None = None) -> Object:
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and o["metadata"]["name"] == name
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
    if len(found) != 1:
        raise KustomizeError(f"expected one {kind} {namespace or '*'}/{name}, found {len(found)}")
    return found[0]


def strategic_merge(base: Any, patch: Any, builtin: bool, field: str = "") -> Any:
    """`patch` merged into `base`: maps recursively, named built-in lists by name, else replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            elif name in merged:
                merged[name] = strategic_merge(merged[name], value, builtin, name)
            else:
                merged[name] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and builtin and field in MERGE_BY_NAME:
        merged_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            names = [
                i for i, existing in enumerate(merged_list) if existing["name"] == item["name"]
            ]
            if names:
                merged_list[names[0]] = strategic_merge(merged_list[names[0]], item, builtin)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _generate_config_map(directory: Path, generator: Object, objects: list[Object]) -> None:
    if not generator.get("options", {}).get("disableNameSuffixHash"):
        raise KustomizeError(f"{directory}: name-suffix hashes are not supported")
    data = {Path(f).name: (directory / f).read_text() for f in generator.get("files", [])}
    metadata = {"name": generator["name"]}
    if "namespace" in generator:
        metadata["namespace"] = generator["namespace"]
    behavior = generator.get("behavior", "create")
    if behavior == "create":
        objects.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        )
    elif behavior == "replace":
        find(objects, "ConfigMap", generator["name"], generator.get("namespace"))["data"] = data
    else:
        raise KustomizeError(f"{directory}: configMapGenerator behavior {behavior!r}")


def _apply_patch(directory: Path, patch: Object, objects: list[Object]) -> None:
    if set(patch) != {"path"}:
        raise KustomizeError(f"{directory}: only `patches: [{{path: FILE}}]` is supported")
    for document in load_documents(directory / patch["path"]):
        metadata = document["metadata"]
        target = find(objects, document["kind"], metadata["name"], metadata.get("namespace"))
        builtin = target["apiVersion"] in BUILTIN_GROUPS
        merged = strategic_merge(target, document, builtin)
        target.clear()
        target.update(merged)


def _add_label(obj: Object, name: str, value: str) -> None:
    obj.setdefault("metadata", {}).setdefault("labels", {})[name] = value
    spec = obj.get("spec", {})
    if obj["kind"] == "Deployment":
        spec["selector"]["matchLabels"][name] = value
        spec["template"]["metadata"].setdefault("labels", {})[name] = value
    elif obj["kind"] == "Service" and "selector" in spec:
        spec["selector"][name] = value
    elif obj["kind"] == "PodDisruptionBudget":
        spec["selector"]["matchLabels"][name] = value


def _set_image(obj: Object, image: Object) -> None:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        name = container["image"].split("@")[0].rsplit(":", 1)[0]
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
