"""The Kubernetes and KServe manifests as the deployment tests read them: loading, merging patches, the pods of
every workload, and the environment each container gets."""

from __future__ import annotations

import copy
import ipaddress
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

TESTS = Path(__file__).resolve().parent
DEPLOY = TESTS.parent
K8S = DEPLOY / "k8s"
KSERVE = DEPLOY / "kserve"
for _path in (TESTS, DEPLOY.parent / "backend"):  # envnames (imported where used); the backend's `app`
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

#: the Kubernetes API version the manifests are validated against (a schema set kubernetes-validate ships)
K8S_VERSION = "1.30.0"
KSERVE_SCHEMAS = TESTS / "schemas" / "kserve-v0.20.0.trimmed.json"
KSERVE_GROUP = "serving.kserve.io/"
#: partial objects: validated after merging into the object they patch
PATCHES = {"gpu-patch.yaml"}
#: KServe's storage initializer: SupportedStorageURIPrefixList in
#: pkg/controller/v1beta1/inferenceservice/utils/utils.go (v0.20.0)
KSERVE_STORAGE_PREFIXES = ("gs://", "s3://", "pvc://", "file://", "https://", "http://", "hdfs://", "webhdfs://",
                           "oci://", "oci+native://", "hf://")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: what the image sets (ml-service/Dockerfile) when a manifest does not
IMAGE_ENV = {"ML_SERVICE_HOST": str(ipaddress.IPv4Address(0)), "ML_SERVICE_PORT": "8001",
             "MODEL_CACHE_DIR": "/app/models", "ML_SERVICE_SHUTDOWN_GRACE_S": "30"}

Doc = dict[str, Any]


# ---------------------------------------------------------------- loading


def manifest_files() -> list[Path]:
    return sorted([*K8S.glob("*.yaml"), *K8S.glob("*.yml"), *KSERVE.glob("*.yaml"), *KSERVE.glob("*.yml")])


def load(path: Path) -> list[Doc]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def docs_in(directory: Path, skip: frozenset[str] = frozenset()) -> list[Doc]:
    return [d for p in sorted(directory.glob("*.yaml")) if p.name not in skip for d in load(p)]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def k8s_docs() -> list[Doc]:
    """The objects `kubectl apply -k deploy/k8s` creates, plus the Secret template."""
    return docs_in(K8S, skip=frozenset({"kustomization.yaml", *PATCHES}))


def strategic_merge(base: Any, patch: Any) -> Any:
    """Enough of kubectl's strategic merge for gpu-patch.yaml: maps merge, lists of named items merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = strategic_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    named = isinstance(base, list) and isinstance(patch, list) and all(
        isinstance(x, dict) and "name" in x for x in [*base, *patch])
    if named:
        out_list = [copy.deepcopy(x) for x in base]
        for item in patch:
            i = next((i for i, x in enumerate(out_list) if x["name"] == item["name"]), None)
            if i is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[i] = strategic_merge(out_list[i], item)
        return out_list
    return copy.deepcopy(patch)


def gpu_deployment() -> Doc:
    (patch,) = load(K8S / "gpu-patch.yaml")
    base = one(k8s_docs(), "Deployment", patch["metadata"]["name"])
    return strategic_merge(base, patch)


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(what, pod spec) for every workload in `docs`: a Deployment's template, a ServingRuntime's spec."""
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]
        elif d["kind"] in ("ClusterServingRuntime", "ServingRuntime"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]


def all_workloads() -> list[tuple[str, Doc, list[Doc]]]:
    """(what, pod spec, the objects it can reference) for the k8s Deployment, its GPU variant and the runtime."""
    k8s = k8s_docs()
    out = [(what, spec, k8s) for what, spec in pod_specs(k8s)]
    out += [(f"{what} + gpu-patch", spec, k8s) for what, spec in pod_specs([gpu_deployment()])]
    kserve = docs_in(KSERVE)
    out += [(what, spec, kserve) for what, spec in pod_specs(kserve)]
    return out


def workload_ids() -> list[str]:
    return [w[0] for w in all_workloads()]


def service_of(image: str) -> str:
    """The service an image runs: its repository's last path component, without tag or digest."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def config_maps(docs: list[Doc]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}


def secrets(docs: list[Doc]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: {**d.get("data", {}), **d.get("stringData", {})}
            for d in docs if d["kind"] == "Secret"}


def env_sources(container: Doc, docs: list[Doc]) -> tuple[list[tuple[str, str]], list[str]]:
    """([(variable, where it is set)], [problems]) for a container: its envFrom ConfigMaps/Secrets, then env."""
    names: list[tuple[str, str]] = []
    problems: list[str] = []
    for src in container.get("envFrom", []):
        for kind, objects in (("configMapRef", config_maps(docs)), ("secretRef", secrets(docs))):
            if kind in src:
                ref = src[kind]["name"]
                if ref not in objects:
                    problems.append(f"envFrom {kind} {ref!r} is not among the manifests")
                    continue
                prefix = src.get("prefix", "")
                names += [(prefix + key, f"{kind} {ref}") for key in objects[ref]]
    names += [(e["name"], "env") for e in container.get("env", [])]
    return names, problems


def effective_env(container: Doc, docs: list[Doc]) -> dict[str, str]:
    """The environment the process sees (image defaults < envFrom < env), values given literally only."""
    env = dict(IMAGE_ENV) if service_of(container["image"]) == "ml-service" else {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            env.update(config_maps(docs).get(src["configMapRef"]["name"], {}))
    env.update({e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e})
    return env


def unknown_env(docs: list[Doc]) -> list[str]:
    """Every variable set on a container that the service in its image does not read (or that cannot be checked)."""
    import envnames

    problems: list[str] = []
    for what, spec in pod_specs(docs):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            service = service_of(c["image"])
            if service not in envnames.SERVICES:
                problems.append(f"{what} {c['name']}: no settings known for image {c['image']!r}")
                continue
            known = envnames.SERVICES[service]()
            names, refs = env_sources(c, docs)
            problems += [f"{what} {c['name']}: {p}" for p in refs]
            problems += [f"{what} {c['name']}: {name} ({where}) is not a {service} setting"
                         for name, where in names if name not in known]
    return problems


def container_port(container: Doc, port: int | str) -> int:
    """A probe's or Service's port (number or name) as the container port it means; fails if it is none."""
    ports = container.get("ports", [])
    if isinstance(port, str):
        match = [p["containerPort"] for p in ports if p.get("name") == port]
        assert match, f"no container port named {port!r} in {container['name']}"
        return match[0]
    assert port in [p["containerPort"] for p in ports], f"{port} is not a container port of {container['name']}"
    return port


def quantity(value: str | float) -> float:
    """A Kubernetes quantity as a number (bytes for memory, cores for CPU)."""
    s = str(value)
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
             "Ti": 2**40}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", s)
    assert m and m.group(2) in ("", *units), f"not a quantity: {s!r}"
    return float(m.group(1)) * units.get(m.group(2), 1)
