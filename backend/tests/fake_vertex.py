"""A local stand-in for a Vertex AI endpoint serving the ml-service image: `:predict` in Vertex's wire format
(`{"instances", "parameters"}` -> `{"predictions", "deployedModelId"}`, Google-shaped errors) with answers of the
right shape (labels by keywords, bag-of-words embeddings), and Google's OAuth token endpoint for a service-account
key (`/token`). Records every request. `mode`: `ok`, `garbage` (`{"predictions": [{"foo": 1}]}`), `unauthorized`
(401), `hang`; `token_mode`: `ok` or `fail` (the token exchange answers 400)."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fake_openai import KEYWORDS
from tests.servers import ThreadedServer

INTENTS = {"timer": "timer", "remind": "reminder_update", "buy": "shopping_list_update"}


def embedding(text: str, dim: int = 384) -> list[float]:
    """A normalized bag of words: texts sharing words are close (enough for a stand-in)."""
    v = [0.0] * dim
    for word in text.lower().split():
        v[int(hashlib.sha256(word.strip(".,:;!?").encode()).hexdigest(), 16) % dim] += 1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def predict(model: str, text: str) -> dict[str, Any]:
    if model == "text-embedding":
        return {"embedding": embedding(text)}
    low = text.lower()
    table = KEYWORDS if model == "task-category" else INTENTS
    label = next((v for k, v in table.items() if k in low), "cleaning" if model == "task-category" else "calendar")
    return {"label": label, "score": 0.8, "top_k": [{"label": label, "score": 0.8}]}


class FakeVertex(ThreadedServer):
    """Set `VERTEX_API_ENDPOINT` to `url` (any project, location and endpoint id)."""

    def __init__(self) -> None:
        app = FastAPI()
        super().__init__(app)
        self.token_mode = "ok"
        self.tokens = 0

        @app.post("/v1/projects/{project}/locations/{location}/endpoints/{endpoint}")
        async def predict_route(endpoint: str, request: Request) -> Any:
            body = await request.json()
            self.requests.append({"path": request.url.path, "headers": dict(request.headers), "body": body})
            if not endpoint.endswith(":predict"):
                return JSONResponse({"error": {"code": 404, "status": "NOT_FOUND"}}, status_code=404)
            if self.mode == "hang":
                await self.hang()
            if self.mode == "unauthorized":
                return JSONResponse({"error": {"code": 401, "message": "Request had invalid authentication "
                                               "credentials.", "status": "UNAUTHENTICATED"}}, status_code=401)
            if self.mode == "garbage":
                return {"predictions": [{"foo": 1} for _ in body["instances"]], "deployedModelId": "5"}
            model = body["parameters"]["model"]
            return {"predictions": [predict(model, t) for t in body["instances"]], "deployedModelId": "5"}

        @app.post("/token")
        async def token(request: Request) -> Any:
            self.tokens += 1
            if self.token_mode == "fail":
                return JSONResponse({"error": "invalid_grant", "error_description": "Invalid JWT"}, status_code=400)
            return {"access_token": f"ya29.fake-{self.tokens}", "expires_in": 3600, "token_type": "Bearer"}

    def instances(self) -> list[str]:
        """Every text sent for prediction."""
        return [t for r in self.requests for t in r["body"].get("instances", [])]
