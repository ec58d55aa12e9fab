"""/openapi.json describes every route from the same table the server answers from, and real answers match it."""

from __future__ import annotations

import base64

import msgspec
import pytest
from pydantic import BaseModel

from ml_service.api import schemas as s
from ml_service.app import ROUTES

from .helpers import wait_ready


def test_every_route_is_documented_with_its_bodies(client):
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(r.method, r.path) for r in ROUTES}
    schemas = doc["components"]["schemas"]
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        assert op["summary"], route.name
        if route.produces == "application/json":
            ok = op["responses"][str(route.status)]["content"]["application/json"]["schema"]["$ref"]
            assert ok.rsplit("/", 1)[1] in schemas
        else:  # /metrics (Prometheus text) and /dashboard (HTML)
            assert route.produces in op["responses"]["200"]["content"]
        assert "500" in op["responses"]
        error = op["responses"]["500"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert error == {"native": "NativeError", "v2": "V2Error", "openai": "OpenAIError"}[route.protocol.name]
        if route.body is not None:
            assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(route.body.__name__)
        assert [p["name"] for p in op.get("parameters", []) if p["in"] == "path"] == route.params
    # request bodies are documented from the Structs the codecs parse them with
    assert all(issubclass(r.body, msgspec.Struct) for r in ROUTES if r.body is not None)
    native = schemas["InferenceBody"]
    assert native["required"] == ["model_type", "data"] and "model name or alias" in str(native["properties"])
    assert schemas["InferenceData"]["properties"]["top_k"]["minimum"] == 1
    infer = doc["paths"]["/v2/models/{model}/infer"]["post"]["requestBody"]["content"]
    assert "application/octet-stream" in infer
    assert client.get("/docs").status_code == 200


def _check(model: type[BaseModel], response, status: int = 200) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    model.model_validate(response.json())


def test_real_answers_match_the_documented_shapes(client, make_image):
    _check(s.InferenceResponse, client.post("/inference", json={"model_type": "bert", "data": {"texts": ["a cat"]}}))
    _check(s.InferenceResponse, client.post("/inference", json={"model_type": "sentiment",
                                                                "data": {"text": "good", "top_k": 2}}))
    image = base64.b64encode(make_image("PNG", (40, 40), (255, 0, 0))).decode()
    _check(s.InferenceResponse, client.post("/inference", json={"model_type": "cnn", "data": {"image": image}}))
    _check(s.Health, client.get("/health"))
    _check(s.Live, client.get("/health/live"))
    _check(s.Ready, client.get("/health/ready"))
    _check(s.ModelList, client.get("/models"))
    _check(s.Loaded, client.post("/models/text-classifier/load"))
    _check(s.Unloaded, client.post("/models/text-classifier/unload"))
    _check(s.V2Live, client.get("/v2/health/live"))
    _check(s.ServerMetadata, client.get("/v2"))
    _check(s.ModelMetadata, client.get("/v2/models/text-embedding"))
    _check(s.ModelReadyState, client.get("/v2/models/text-embedding/versions/1/ready"), 503)
    _check(s.InferResponseBody, client.post("/v2/models/text-embedding/infer", json={"inputs": [
        {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a cat"]}]}))
    _check(s.RepositoryIndex, client.post("/v2/repository/index", json={}))
    _check(s.RepositoryLoaded, client.post("/v2/repository/models/text-classifier/load"))
    _check(s.RepositoryUnloaded, client.post("/v2/repository/models/text-classifier/unload"))
    _check(s.EmbeddingsResponse, client.post("/v1/embeddings", json={"model": "bert", "input": ["a", "b"]}))
    _check(s.OpenAIModelList, client.get("/v1/models"))
    _check(s.OpenAIModel, client.get("/v1/models/text-embedding"))
    _check(s.StatsReport, client.get("/stats"))


@pytest.mark.parametrize(("path", "body", "model", "status"), [
    ("/inference", {"model_type": "nope", "data": {}}, s.NativeError, 404),
    ("/inference", {"model_type": "bert"}, s.NativeError, 422),
    ("/v2/models/nope/infer", {"inputs": []}, s.V2Error, 404),
    ("/v2/models/text-embedding/infer", {"inputs": []}, s.V2Error, 422),
    ("/v1/embeddings", {"model": "bert"}, s.OpenAIError, 400),
])
def test_errors_match_the_documented_shapes(client, path, body, model, status):
    _check(model, client.post(path, json=body), status)


def test_docs_need_nothing_from_the_model_repository(tmp_path, app_client):
    with app_client(tmp_path) as client:
        wait_ready(client)
        assert client.get("/openapi.json").json()["paths"]


def test_every_route_table_names_response_schemas_that_exist(tmp_path):
    """Routes name their response schema by name (resolved only when /openapi.json is built): in Vertex mode
    too, every name is a schema and the document builds."""
    from ml_service.api.openapi import build_openapi
    from ml_service.app import routes

    from ..conftest import make_settings

    table = routes(make_settings(tmp_path, aip_mode=True))
    assert any(r.tag == "vertex" for r in table)
    for route in table:
        assert route.response is None or isinstance(getattr(s, route.response, None), type), route.name
    doc = build_openapi(table, auth=False)
    assert {"VertexHealth", "VertexPredictResponse"} <= set(doc["components"]["schemas"])
