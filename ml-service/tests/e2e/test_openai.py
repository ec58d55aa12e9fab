"""OpenAI-compatible embeddings end to end: the real server, the real models and the official `openai`
client (which asks for base64 unless told otherwise)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

openai = pytest.importorskip("openai")

if TYPE_CHECKING:
    from tests.e2e.conftest import Server

pytestmark = pytest.mark.real_models

TEXTS = ["wash the dishes after dinner", "buy milk, eggs and bread", "book a vet appointment for the cat",
         "fix the leaking kitchen tap", "a much longer sentence about cleaning the garage on the weekend " * 3]


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def sent() -> list[dict[str, Any]]:
    """The JSON bodies the client sent, newest last."""
    return []


@pytest.fixture(scope="module")
def client(server: Server, sent: list[dict[str, Any]]) -> Iterator[Any]:
    def record(request: httpx.Request) -> None:
        if request.method == "POST":
            sent.append(json.loads(request.read()))

    http_client = httpx.Client(event_hooks={"request": [record]}, timeout=120)
    c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed", max_retries=0, http_client=http_client)
    yield c
    c.close()


def reference(http: httpx.Client, texts: list[str]) -> tuple[np.ndarray, int]:
    """Embeddings and token count from the seed API for the same texts (chunks of 256)."""
    rows, tokens = [], 0
    for i in range(0, len(texts), 256):
        r = http.post("/inference", json={"model_type": "text-embedding", "data": {"texts": texts[i:i + 256]}})
        assert r.status_code == 200, r.text
        for out in r.json()["outputs"]:
            rows.append(out["embedding"])
            tokens += out["tokens"]
    return np.array(rows, dtype=np.float32), tokens


def embeddings_of(response: Any) -> np.ndarray:
    assert [d.index for d in response.data] == list(range(len(response.data)))
    return np.array([d.embedding for d in response.data], dtype=np.float32)


def assert_openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


# -- embeddings ----------------------------------------------------------------------------------

def test_default_encoding_is_base64_and_matches_inference(client: Any, http: httpx.Client,
                                                          sent: list[dict[str, Any]]) -> None:
    response = client.embeddings.create(model="text-embedding", input=TEXTS)
    assert sent[-1]["encoding_format"] == "base64"  # what the client asked for by default
    emb = embeddings_of(response)
    ref, tokens = reference(http, TEXTS)
    assert emb.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(emb, ref, atol=1e-5)
    assert response.model == "text-embedding" and response.object == "list"
    assert response.usage.prompt_tokens == tokens == response.usage.total_tokens
    assert tokens > len(TEXTS) * 3


def test_float_encoding_and_alias(client: Any, http: httpx.Client, sent: list[dict[str, Any]]) -> None:
    response = client.embeddings.create(model="bert", input=TEXTS, encoding_format="float")
    assert sent[-1]["encoding_format"] == "float"
    np.testing.assert_allclose(embeddings_of(response), reference(http, TEXTS)[0], atol=1e-5)
    assert response.model == "text-embedding"


def test_single_string_input(client: Any, http: httpx.Client) -> None:
    response = client.embeddings.create(model="embedding", input="clean the bathroom mirror")
    assert len(response.data) == 1
    np.testing.assert_allclose(embeddings_of(response), reference(http, ["clean the bathroom mirror"])[0],
                               atol=1e-5)


def test_hundred_inputs(client: Any, http: httpx.Client) -> None:
    texts = [f"household task number {i}: {TEXTS[i % len(TEXTS)]}" for i in range(100)]
    response = client.embeddings.create(model="text-embedding", input=texts)
    ref, tokens = reference(http, texts)
    np.testing.assert_allclose(embeddings_of(response), ref, atol=1e-5)
    assert response.usage.prompt_tokens == tokens


def test_more_inputs_than_one_model_call_takes(client: Any, http: httpx.Client) -> None:
    """600 inputs (the model's max_items is 256) go through the service in chunks, in order."""
    texts = [f"item {i} {TEXTS[i % len(TEXTS)]}" for i in range(600)]
    emb = embeddings_of(client.embeddings.create(model="text-embedding", input=texts))
    ref, _ = reference(http, texts)
    assert emb.shape == (600, 384)
    np.testing.assert_allclose(emb, ref, atol=1e-5)  # the same chunks of 256 as the reference calls


def test_dimensions_truncate_and_renormalize(client: Any, http: httpx.Client) -> None:
    response = client.embeddings.create(model="text-embedding", input=TEXTS, dimensions=128)
    emb = embeddings_of(response)
    assert emb.shape == (len(TEXTS), 128)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    ref = reference(http, TEXTS)[0][:, :128]
    np.testing.assert_allclose(emb, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)


def test_embeddings_without_the_v1_prefix(server: Server, http: httpx.Client) -> None:
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as plain:
        emb = embeddings_of(plain.embeddings.create(model="text-embedding", input=TEXTS[:2]))
    np.testing.assert_allclose(emb, reference(http, TEXTS[:2])[0], atol=1e-5)


# -- models --------------------------------------------------------------------------------------

def test_models_list_and_retrieve(client: Any) -> None:
    models = list(client.models.list())
    assert [m.id for m in models] == ["text-embedding"]
    assert models[0].object == "model" and models[0].owned_by == "ml-service" and models[0].created > 0
    assert client.models.retrieve("bert").id == "text-embedding"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("intent-classifier")


# -- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "status"), [
    ({"input": TEXTS, "dimensions": 385}, "BadRequestError", 400),
    ({"input": ["a"] * 2049}, "BadRequestError", 400),
    ({"input": []}, "BadRequestError", 400),
    ({"input": "a", "encoding_format": "hex"}, "BadRequestError", 400),
    ({"input": [[1, 2, 3]]}, "BadRequestError", 400),
    ({"input": "a", "model": "no-such-model"}, "NotFoundError", 404),
    ({"input": "a", "model": "intent-classifier"}, "BadRequestError", 400),
    ({"input": "x" * 50_001}, "APIStatusError", 413),
])
def test_errors_through_the_client(client: Any, kwargs: dict[str, Any], error: str, status: int) -> None:
    args = {"model": "text-embedding", **kwargs}
    with pytest.raises(getattr(openai, error)) as info:
        client.embeddings.create(**args)
    assert info.value.status_code == status
    body = info.value.body
    assert set(body) == {"message", "type", "param", "code"}, body  # the client unwraps {"error": ...}


def test_error_shape_on_the_wire(http: httpx.Client) -> None:
    error = assert_openai_error(http.post("/v1/embeddings", json={"model": "nope", "input": "a"}), 404)
    assert error["type"] == "invalid_request_error" and error["code"] == "model_not_found"
    assert_openai_error(http.post("/v1/embeddings", json={"model": "bert", "input": ["a"] * 2049}), 400)
    assert_openai_error(http.post("/embeddings", json={"model": "bert", "input": []}), 400)
    assert_openai_error(http.post("/v1/embeddings", content=b"{", headers={"Content-Type": "application/json"}),
                        400)


# -- auth ----------------------------------------------------------------------------------------

def test_auth_applies_to_openai(secured_server: Server) -> None:
    with openai.OpenAI(base_url=f"{secured_server.url}/v1", api_key="key-one", max_retries=0) as good:
        response = good.embeddings.create(model="text-embedding", input=["water the plants"])
        assert len(response.data[0].embedding) == 384
        assert [m.id for m in good.models.list()] == ["text-embedding"]
    with openai.OpenAI(base_url=f"{secured_server.url}/v1", api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            bad.embeddings.create(model="text-embedding", input="a")
        assert info.value.status_code == 401
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    with secured_server.client() as http:
        error = assert_openai_error(http.post("/v1/embeddings", json={"model": "bert", "input": "a"}), 401)
        assert error["type"] == "authentication_error"
