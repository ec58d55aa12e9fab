"""Static checks of the Kubernetes (deploy/k8s) and KServe (deploy/kserve) manifests: YAML, the Kubernetes
API schemas (kubernetes-validate), KServe's CRD schemas (vendored, trimmed, in schemas/), the references
between the objects, and every environment variable against the settings of the service it is set on."""

from __future__ import annotations

import copy
import ipaddress
import itertools
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
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


# ---------------------------------------------------------------- YAML and schemas


def test_manifest_files_exist() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in manifest_files()}
    expected = {f"k8s/{n}.yaml" for n in ("configmap", "secret.example", "deployment", "service", "hpa", "pdb", "pvc",
                                          "kustomization", "gpu-patch")}
    expected |= {"kserve/servingruntime.yaml", "kserve/inferenceservice.yaml"}
    assert expected <= names, expected - names


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses(path: Path) -> None:
    docs = load(path)
    assert docs, f"{path.name} holds no document"
    for d in docs:
        assert isinstance(d, dict), f"{path.name}: a document is not a mapping"
        assert isinstance(d.get("apiVersion"), str) and isinstance(d.get("kind"), str), path.name
        assert d.get("metadata", {}).get("name") or d["kind"] == "Kustomization", f"{path.name}: no metadata.name"


def test_kustomization_applies_every_object_but_the_templates() -> None:
    (k,) = load(K8S / "kustomization.yaml")
    assert k["kind"] == "Kustomization"
    resources = k["resources"]
    assert len(resources) == len(set(resources))
    for r in resources:
        assert (K8S / r).is_file(), f"kustomization lists a missing file {r}"
    assert "secret.example.yaml" not in resources, "the Secret template (a placeholder token) must not be applied"
    assert not set(resources) & PATCHES
    others = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml", *PATCHES}
    assert others == set(resources), f"not in kustomization.yaml: {others - set(resources)}"


def kubernetes_objects() -> list[tuple[str, Doc]]:
    out = [(f"{p.name}:{d['kind']}", d) for p in sorted(K8S.glob("*.yaml")) if p.name not in PATCHES
           for d in load(p) if d["kind"] != "Kustomization" and not d["apiVersion"].startswith(KSERVE_GROUP)]
    return [*out, ("deployment.yaml+gpu-patch.yaml:Deployment", gpu_deployment())]


@pytest.mark.parametrize(("what", "doc"), kubernetes_objects(), ids=[w for w, _ in kubernetes_objects()])
def test_kubernetes_schema(what: str, doc: Doc) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_schema_rejects_a_misspelt_field() -> None:
    doc = copy.deepcopy(one(k8s_docs(), "Deployment"))
    doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/", "port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def strict(schema: Any) -> Any:
    """A CRD schema that, like `kubectl apply --validate=strict`, rejects fields it does not declare."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def kserve_errors(doc: Doc) -> list[str]:
    schemas = json.loads(KSERVE_SCHEMAS.read_text())["schemas"]
    key = f"{doc['apiVersion']}/{doc['kind']}"
    if key not in schemas:
        return [f"no KServe schema for {key} (have {sorted(schemas)})"]
    validator = jsonschema.Draft7Validator(strict(schemas[key]))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("doc", docs_in(KSERVE), ids=lambda d: d["kind"])
def test_kserve_schema(doc: Doc) -> None:
    assert kserve_errors(doc) == []
    # metadata is only `type: object` in a CRD: the API server checks the name
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", doc["metadata"]["name"])


def test_kserve_schema_rejects_misspelt_and_mistyped_fields() -> None:
    runtime = copy.deepcopy(one(docs_in(KSERVE), "ClusterServingRuntime"))
    runtime["spec"]["protocolVersion"] = runtime["spec"].pop("protocolVersions")
    runtime["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    errors = kserve_errors(runtime)
    assert any("protocolVersion" in e for e in errors), errors
    assert any("containerPort" in e for e in errors), errors
    isvc = copy.deepcopy(one(docs_in(KSERVE), "InferenceService"))
    del isvc["spec"]["predictor"]["model"]["modelFormat"]["name"]
    assert any("'name' is a required property" in e for e in kserve_errors(isvc))


# ---------------------------------------------------------------- environment variables


def test_every_env_variable_is_a_setting_of_its_service() -> None:
    docs = [*k8s_docs(), gpu_deployment(), *docs_in(KSERVE)]
    checked = [name for _, spec in pod_specs(docs) for c in spec["containers"] for name, _ in env_sources(c, docs)[0]]
    assert len(checked) >= 10, checked  # the check saw the ConfigMap and the env lists
    assert unknown_env(docs) == []


def test_env_check_reports_a_misspelt_variable() -> None:
    docs = copy.deepcopy(k8s_docs())
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container.setdefault("env", []).append({"name": "ML_SERVICE_PRELAOD", "value": "*"})
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    config["data"]["ML_SERVICE_MEMORY_BUDGET"] = "1024"
    problems = unknown_env(docs)
    assert any("ML_SERVICE_PRELAOD (env)" in p for p in problems), problems
    assert any("ML_SERVICE_MEMORY_BUDGET (configMapRef" in p for p in problems), problems
    assert len(problems) == 2, problems


def test_env_check_reports_a_missing_config_map_and_an_unknown_image() -> None:
    docs = copy.deepcopy(k8s_docs())
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["envFrom"] = [{"configMapRef": {"name": "no-such-config"}}]
    sidecar = {"name": "sidecar", "image": "example.com/unknown:1", "env": [{"name": "X", "value": "1"}]}
    one(docs, "Deployment")["spec"]["template"]["spec"]["containers"].append(sidecar)
    problems = unknown_env(docs)
    assert any("'no-such-config' is not among the manifests" in p for p in problems), problems
    assert any("no settings known for image 'example.com/unknown:1'" in p for p in problems), problems


@pytest.mark.parametrize(("what", "spec", "docs"), all_workloads(), ids=workload_ids())
def test_env_values_are_accepted_by_the_service(what: str, spec: Doc, docs: list[Doc],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The values parse too: ml-service's Settings built from exactly the environment the container gets."""
    from ml_service.settings import Settings

    (c,) = spec["containers"]
    for name in list(os.environ):
        if name.startswith(("ML_SERVICE_", "AIP_")) or name == "MODEL_CACHE_DIR":
            monkeypatch.delenv(name)
    env = effective_env(c, docs)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.port == int(env["ML_SERVICE_PORT"])
    assert str(settings.model_cache_dir) == env["MODEL_CACHE_DIR"]
    assert settings.preload_names == ["*"], "every model is preloaded, so readiness means loaded"
    assert not settings.vertex


def test_env_values_check_rejects_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_service.settings import Settings
    from pydantic import ValidationError

    monkeypatch.setenv("ML_SERVICE_DEVICE", "gpu")
    with pytest.raises(ValidationError, match=r"ML_SERVICE_DEVICE|device"):
        Settings()


# ---------------------------------------------------------------- consistency: every workload


@pytest.mark.parametrize(("what", "spec", "docs"), all_workloads(), ids=workload_ids())
def test_security_context(what: str, spec: Doc, docs: list[Doc]) -> None:
    pod = spec.get("securityContext", {})
    for c in spec["containers"]:
        sc = {**pod, **c.get("securityContext", {})}  # the container's settings win
        assert sc.get("runAsNonRoot") is True, c["name"]
        assert sc.get("runAsUser") == 10001, c["name"]
        assert c["securityContext"].get("readOnlyRootFilesystem") is True, c["name"]
        assert c["securityContext"].get("allowPrivilegeEscalation") is False, c["name"]
        assert c["securityContext"].get("privileged", False) is False, c["name"]
        assert c["securityContext"].get("capabilities", {}).get("drop") == ["ALL"], c["name"]
        assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", c["name"]


@pytest.mark.parametrize(("what", "spec", "docs"), all_workloads(), ids=workload_ids())
def test_resources_and_settings_fit_the_limits(what: str, spec: Doc, docs: list[Doc]) -> None:
    for c in spec["containers"]:
        limits, requests = c["resources"]["limits"], c["resources"].get("requests", {})
        assert {"cpu", "memory"} <= set(limits), f"{c['name']}: limits {limits}"
        for k, v in requests.items():
            assert quantity(v) <= quantity(limits.get(k, v)), f"{c['name']}: request {k} above its limit"
        env = effective_env(c, docs)
        if service_of(c["image"]) != "ml-service":
            continue
        budget = int(env.get("ML_SERVICE_MEMORY_BUDGET_MB", "4096")) * 2**20
        assert budget < quantity(limits["memory"]), "the model memory budget must leave room below the limit"
        # the service counts cores by affinity, not by the CPU limit: an unset worker count means one per node core
        workers, threads = int(env.get("ML_SERVICE_COMPUTE_WORKERS", "0")), int(env.get("ML_SERVICE_INTRA_OP_THREADS",
                                                                                        "0"))
        assert workers and threads, "set ML_SERVICE_COMPUTE_WORKERS and ML_SERVICE_INTRA_OP_THREADS"
        assert workers * threads <= quantity(limits["cpu"]), f"{workers} workers x {threads} threads > cpu limit"
        if env.get("ML_SERVICE_DEVICE") == "cuda":
            assert int(limits.get("nvidia.com/gpu", 0)) >= 1, "ML_SERVICE_DEVICE=cuda without a GPU"
            assert c["image"].endswith("-gpu"), "ML_SERVICE_DEVICE=cuda needs the GPU image"
        if int(limits.get("nvidia.com/gpu", 0)):
            assert env.get("ML_SERVICE_DEVICE") in ("cuda", "auto"), "a GPU the service is told not to use"


@pytest.mark.parametrize(("what", "spec", "docs"), all_workloads(), ids=workload_ids())
def test_mounts_volumes_and_writable_paths(what: str, spec: Doc, docs: list[Doc]) -> None:
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for c in spec["containers"]:
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        for m in mounts.values():
            assert m["name"] in volumes, f"{c['name']}: volumeMount {m['name']!r} has no volume"
        # read-only root: the service writes to /tmp and /app/cache only
        for path in ("/tmp", "/app/cache"):
            assert path in mounts and "emptyDir" in volumes[mounts[path]["name"]], f"{path} is not an emptyDir"
        env = effective_env(c, docs)
        repo = env["MODEL_CACHE_DIR"]
        if repo in mounts:  # a repository of our own (KServe's storage initializer provides /mnt/models)
            assert mounts[repo].get("readOnly") is True
            claim = volumes[mounts[repo]["name"]]["persistentVolumeClaim"]["claimName"]
            assert claim in {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
        else:
            assert repo == "/mnt/models", f"MODEL_CACHE_DIR {repo} is neither mounted nor KServe's /mnt/models"
        cache = env.get("ML_SERVICE_STORAGE_CACHE_DIR", "/app/cache/storage")
        assert cache.startswith("/app/cache/"), "the storage cache must be on the writable cache volume"


@pytest.mark.parametrize(("what", "spec", "docs"), all_workloads(), ids=workload_ids())
def test_port_probes_and_auth(what: str, spec: Doc, docs: list[Doc]) -> None:
    (c,) = spec["containers"]
    env = effective_env(c, docs)
    port = int(env["ML_SERVICE_PORT"])
    assert [p["containerPort"] for p in c["ports"]] == [port], "the containerPort is not ML_SERVICE_PORT"
    assert all(p.get("protocol", "TCP") == "TCP" for p in c["ports"])
    v2 = what.startswith(("ClusterServingRuntime", "ServingRuntime"))
    paths = {"readinessProbe": "/v2/health/ready" if v2 else "/health/ready",
             "livenessProbe": "/v2/health/live" if v2 else "/health/live"}
    for probe, path in paths.items():
        if v2 and probe not in c:
            continue  # KServe/Knative add a default liveness probe
        assert c[probe]["httpGet"]["path"] == path, probe
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in c:
            assert container_port(c, c[probe]["httpGet"]["port"]) == port, probe
            assert c[probe]["httpGet"]["path"].endswith(("/health/live", "/health/ready")), probe
    assert "startupProbe" in c
    # the service refuses a public bind address without a secret (or an explicit opt-out)
    if env["ML_SERVICE_HOST"] not in LOOPBACK:
        assert {"ML_SERVICE_SECRET", "ML_SERVICE_SECRET_FILE"} & set(env) or env.get("ML_SERVICE_ALLOW_INSECURE") in (
            "1", "true", "True"), "ml-service would refuse to start: no secret and no ML_SERVICE_ALLOW_INSECURE"


# ---------------------------------------------------------------- consistency: deploy/k8s


def deployment() -> Doc:
    return one(k8s_docs(), "Deployment", "ml-service")


def test_deployment_rollout_and_shutdown() -> None:
    d = deployment()
    assert d["spec"]["replicas"] >= 2
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = d["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep > 0
    drain = float(effective_env(c, k8s_docs())["ML_SERVICE_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > sleep + drain, "SIGKILL would cut the drain short"


def test_selectors_target_the_pods() -> None:
    docs = k8s_docs()
    d = deployment()
    labels = d["spec"]["template"]["metadata"]["labels"]
    selector = d["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc = one(docs, "Service")
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert svc["spec"]["selector"].items() <= labels.items()
    hpa = one(docs, "HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (d["apiVersion"], "Deployment", d["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"], "the PDB would block every voluntary eviction"


def test_service_reaches_the_container_port() -> None:
    (c,) = deployment()["spec"]["template"]["spec"]["containers"]
    port = int(effective_env(c, k8s_docs())["ML_SERVICE_PORT"])
    (p,) = one(k8s_docs(), "Service")["spec"]["ports"]
    assert p["port"] == port == 8001
    assert container_port(c, p["targetPort"]) == port


def test_hpa_metrics() -> None:
    hpa = one(k8s_docs(), "HorizontalPodAutoscaler")
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Resource"]["resource"]["target"]["type"] == "Utilization"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "ml_service_queue_depth"
    assert metrics["Pods"]["pods"]["target"]["type"] == "AverageValue"
    # CPU utilization is measured against the request
    for c in deployment()["spec"]["template"]["spec"]["containers"]:
        assert "cpu" in c["resources"]["requests"], c["name"]
    # the metric is one the service exports (its scrape-time collector, on a service with no models)
    from ml_service.observe.metrics import ModelStateCollector

    collector = ModelStateCollector(SimpleNamespace(entries={}), None, None)  # type: ignore[arg-type]
    exported = {family.name for family in itertools.islice(collector.collect(), 4)}
    assert metrics["Pods"]["pods"]["metric"]["name"] in exported, exported


def test_prometheus_annotations_scrape_the_service() -> None:
    tpl = deployment()["spec"]["template"]
    (c,) = tpl["spec"]["containers"]
    env = effective_env(c, k8s_docs())
    ann = tpl["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == int(env["ML_SERVICE_PORT"])
    assert ann["prometheus.io/path"] == "/metrics"
    # an annotation scrape sends no token: /metrics must be public, or the scrape fails with 401
    assert env.get("ML_SERVICE_METRICS_PUBLIC", "").lower() in ("1", "true")


def test_secret_template_feeds_the_secret_file() -> None:
    docs = k8s_docs()
    pod = deployment()["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = effective_env(c, docs)
    assert "ML_SERVICE_SECRET" not in env, "one way to pass the token: the file"
    path = env["ML_SERVICE_SECRET_FILE"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert mount.get("readOnly") is True and "subPath" not in mount, "a subPath mount never sees Secret updates"
    secret_name = volumes[mount["name"]]["secret"]["secretName"]
    template = secrets(docs)
    assert secret_name in template, f"Secret {secret_name} is not in secret.example.yaml"
    key = path[len(mount["mountPath"].rstrip("/")) + 1:]
    assert key in template[secret_name], f"the Secret has no key {key!r}"
    assert "REPLACE" in template[secret_name][key], "the template must hold an obvious placeholder"
    (example,) = load(K8S / "secret.example.yaml")
    assert example["kind"] == "Secret" and "stringData" in example


def test_gpu_patch() -> None:
    (c,) = gpu_deployment()["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "ml-service:0.1.0-gpu"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert effective_env(c, k8s_docs())["ML_SERVICE_DEVICE"] == "cuda"
    (base,) = deployment()["spec"]["template"]["spec"]["containers"]
    assert c["volumeMounts"] == base["volumeMounts"], "the patch must keep the base's mounts"


# ---------------------------------------------------------------- consistency: deploy/kserve


def test_inference_service_selects_the_runtime() -> None:
    docs = docs_in(KSERVE)
    runtime = one(docs, "ClusterServingRuntime")
    isvc = one(docs, "InferenceService")
    spec = runtime["spec"]
    assert [c["name"] for c in spec["containers"]] == ["kserve-container"]
    assert service_of(spec["containers"][0]["image"]) == "ml-service"
    assert "v2" in spec["protocolVersions"]
    assert any(f["name"] == "onnx" and f.get("autoSelect") for f in spec["supportedModelFormats"])
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in spec["protocolVersions"]
    # KServe's RuntimeSupportsModel (pkg/apis/serving/v1beta1/predictor_model.go): "mt:<name>[:<version>]" labels,
    # only autoSelect formats unless the model names its runtime
    fmt = model["modelFormat"]
    label = f"mt:{fmt['name']}" + (f":{fmt['version']}" if "version" in fmt else "")
    offered = {f"mt:{f['name']}" + suffix for f in spec["supportedModelFormats"]
               if model.get("runtime") or f.get("autoSelect")
               for suffix in ("", f":{f['version']}" if "version" in f else "")}
    assert label in offered, f"{label} not in {offered}"
    assert model["storageUri"].startswith(KSERVE_STORAGE_PREFIXES), model["storageUri"]
    assert not spec.get("multiModel", False), "ml-service serves one repository per pod, not ModelMesh"


def test_runtime_serves_kserve_model_dir() -> None:
    runtime = one(docs_in(KSERVE), "ClusterServingRuntime")
    (c,) = runtime["spec"]["containers"]
    env = effective_env(c, docs_in(KSERVE))
    assert env["MODEL_CACHE_DIR"] == "/mnt/models"
    assert env["ML_SERVICE_PORT"] == "8080"
    assert ipaddress.ip_address(env["ML_SERVICE_HOST"]).is_unspecified, "KServe routes to the pod IP"
    assert c["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert int(runtime["spec"]["annotations"]["prometheus.kserve.io/port"]) == 8080
    assert not {v["mountPath"] for v in c.get("volumeMounts", [])} & {"/mnt/models"}, "KServe mounts /mnt/models"
