"""Static checks of the Kubernetes (deploy/k8s) and KServe (deploy/kserve) manifests: YAML, the Kubernetes
API schemas (kubernetes-validate), KServe's CRD schemas (vendored, trimmed, in schemas/), the references
between the objects, and every environment variable against the settings of the service it is set on."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from manifests import (
    DEPLOY,
    K8S,
    K8S_VERSION,
    KSERVE,
    KSERVE_GROUP,
    KSERVE_SCHEMAS,
    PATCHES,
    Doc,
    all_workloads,
    docs_in,
    effective_env,
    env_sources,
    gpu_deployment,
    k8s_docs,
    load,
    manifest_files,
    one,
    pod_specs,
    unknown_env,
    workload_ids,
)

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
