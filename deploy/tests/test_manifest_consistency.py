"""Consistency of the Kubernetes (deploy/k8s) and KServe (deploy/kserve) manifests: security context, resources,
mounts, probes and auth of every workload; selectors, services, the HPA's metric, the secret and the GPU patch;
the InferenceService and its runtime."""

from __future__ import annotations

import ipaddress
import itertools
from types import SimpleNamespace

import pytest

from manifests import (
    K8S,
    KSERVE,
    KSERVE_STORAGE_PREFIXES,
    LOOPBACK,
    Doc,
    all_workloads,
    container_port,
    docs_in,
    effective_env,
    gpu_deployment,
    k8s_docs,
    load,
    one,
    quantity,
    secrets,
    service_of,
    workload_ids,
)

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
