"""ml-service as a Vertex AI custom container: the real server started with Vertex's AIP_* variables, behind a
stand-in for Vertex's front end, called with Vertex's own SDK (google-cloud-aiplatform, REST transport)."""

from __future__ import annotations

import base64
import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1
from google.protobuf import json_format, struct_pb2
from ml_service_testing.gcs import FakeGCS
from ml_service_testing.vertex_front import VertexFront

from ml_service.modelbuild.checks import PHOTOS, photo_bytes

from .conftest import Server, free_port, start_server, stop_server

ROUTE = "/v1/endpoints/4242/deployedModels/7"
ENDPOINT = "projects/household/locations/europe-west4/endpoints/4242"


def vertex_env(port: int, storage: str, model: str) -> dict[str, str]:
    """What Vertex sets in a custom container (and our one setting for which model it serves)."""
    return {"AIP_MODE": "PREDICTION", "AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": ROUTE,
            "AIP_PREDICT_ROUTE": ROUTE + ":predict", "AIP_ENDPOINT_ID": "4242", "AIP_DEPLOYED_MODEL_ID": "7",
            "AIP_STORAGE_URI": storage, "ML_SERVICE_VERTEX_MODEL": model, "ML_SERVICE_HOST": "127.0.0.1",
            "ML_SERVICE_SECRET": "", "ML_SERVICE_REPOSITORY_POLL_S": "0"}


@contextlib.contextmanager
def vertex_container(tmp: Path, storage: str, model: str, ready: str = ROUTE,
                     **env: str) -> Iterator[tuple[Server, VertexFront]]:
    port = free_port()
    server = start_server(tmp, tmp, {**vertex_env(port, storage, model), **env}, port=port, ready=ready)
    try:
        with VertexFront(server.url, ROUTE + ":predict", deployed_model_id="7") as front:
            yield server, front
    finally:
        stop_server(server)


def sdk(front: VertexFront) -> aiplatform_v1.PredictionServiceClient:
    return aiplatform_v1.PredictionServiceClient(transport="rest", credentials=AnonymousCredentials(),
                                                 client_options={"api_endpoint": front.url})


def predict(front: VertexFront, instances: list[Any], parameters: dict[str, Any] | None = None) -> list[Any]:
    """Through the SDK: instances and parameters become protobuf Values, as in any Vertex client."""
    values = [json_format.ParseDict(x, struct_pb2.Value()) for x in instances]
    params = json_format.ParseDict(parameters, struct_pb2.Value()) if parameters is not None else None
    response = sdk(front).predict(endpoint=ENDPOINT, instances=values, parameters=params)
    assert response.deployed_model_id == "7"
    return list(json_format.MessageToDict(aiplatform_v1.PredictResponse.pb(response))["predictions"])


def test_the_sdk_gets_the_same_embeddings_as_inference(real_models: Path, tmp_path: Path) -> None:
    texts = ["water the plants on the balcony", "Buy milk, eggs and bread", "Ünïcode ✓ text"]
    with vertex_container(tmp_path, str(real_models), "text-embedding") as (server, front):
        # the container binds 0.0.0.0 with no secret: allowed in Vertex mode (Vertex authenticates callers)
        assert "0.0.0.0" in server.log.read_text()
        predictions = predict(front, texts[:1] + [{"text": t} for t in texts[1:]])
        native = httpx.post(f"{server.url}/inference", json={"model_type": "text-embedding", "data": {"texts": texts}},
                            timeout=60).json()
        assert [p["embedding"] for p in predictions] == [o["embedding"] for o in native["outputs"]]
        assert len(predictions[0]["embedding"]) == 384
        endpoint = aiplatform_v1.EndpointServiceClient(
            transport="rest", credentials=AnonymousCredentials(),
            client_options={"api_endpoint": front.url}).get_endpoint(name=ENDPOINT)
        assert endpoint.create_time and endpoint.deployed_models[0].id == "7"
        with pytest.raises(gexc.BadRequest) as bad:  # our Google-shaped error becomes the SDK's exception
            predict(front, [{"image": {"b64": "aGk="}}])
        assert "instances[0]" in str(bad.value)
        with pytest.raises(gexc.BadRequest):
            predict(front, ["x"], {"temperature": 0.5})


def test_the_sdk_gets_labels_for_texts(real_models: Path, tmp_path: Path) -> None:
    with vertex_container(tmp_path, str(real_models), "task-category") as (_, front):
        predictions = predict(front, ["buy milk and eggs", {"text": "fix the leaking kitchen tap"}], {"top_k": 3})
        assert [p["label"] for p in predictions] == ["shopping", "maintenance"]
        assert all(len(p["top_k"]) == 3 for p in predictions)
        sent = next(r for r in front.requests if r.method == "POST")
        assert sent.body["parameters"] == {"top_k": 3.0} and isinstance(sent.body["parameters"]["top_k"], float)
        assert "authorization" not in {k.lower() for k in sent.headers}


def test_gs_storage_is_copied_at_start_and_health_waits_for_the_model(real_models: Path, tmp_path: Path) -> None:
    bucket = tmp_path / "gcs" / "household-models"
    shutil.copytree(real_models / "item-classifier", bucket / "serving" / "v3" / "item-classifier")
    cache = tmp_path / "cache"
    with FakeGCS(tmp_path / "gcs", page_size=2) as gcs:
        gcs.release.clear()  # downloads wait: the model cannot load yet
        with vertex_container(tmp_path, "gs://household-models/serving/v3/", "item-classifier",
                              ready="/health/live", STORAGE_EMULATOR_HOST=gcs.url,
                              ML_SERVICE_STORAGE_CACHE_DIR=str(cache)) as (server, front):
            probes = [httpx.get(server.url + ROUTE, timeout=5) for _ in range(3)]
            assert [p.status_code for p in probes] == [503, 503, 503]
            assert probes[0].json()["error"]["status"] == "UNAVAILABLE"
            gcs.release.set()
            deadline = time.monotonic() + 60
            while httpx.get(server.url + ROUTE, timeout=5).status_code != 200:
                assert time.monotonic() < deadline, server.log.read_text()[-2000:]
                time.sleep(0.1)
            assert (cache / "item-classifier" / "model.toml").is_file()
            assert not [p for p in cache.parent.iterdir() if ".incoming-" in p.name]
            assert any("pageToken" in r for r in gcs.requests)  # more objects than one page
            photo = base64.b64encode(photo_bytes()["coffee"]).decode()
            (prediction,) = predict(front, [{"image": {"b64": photo}}], {"top_k": 5.0})
            assert prediction["label"] in PHOTOS["coffee"]


def test_a_broken_storage_uri_is_reported_not_served(tmp_path: Path) -> None:
    (tmp_path / "gcs" / "empty").mkdir(parents=True)
    with FakeGCS(tmp_path / "gcs") as gcs, vertex_container(
            tmp_path, "gs://empty/models", "text-embedding", ready="/health/live", STORAGE_EMULATOR_HOST=gcs.url,
            ML_SERVICE_STORAGE_CACHE_DIR=str(tmp_path / "cache")) as (server, _):
        deadline = time.monotonic() + 30
        while "preload_errors" not in (health := httpx.get(server.url + "/health", timeout=5).json()):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "no objects under gs://empty/models" in health["preload_errors"]["AIP_STORAGE_URI"]
        assert httpx.get(server.url + ROUTE, timeout=5).status_code == 503
