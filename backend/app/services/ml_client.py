"""`MLServiceClient`: the backend's one way to ml-service (the guide's `ml_client.inference(model_type, data)` plus
typed helpers). One pooled `httpx.AsyncClient`, opened and closed with the app; bearer token; timeouts; retries
on connection errors, 429, 502, 503 and 504 only (honouring Retry-After, within the call's budget); a circuit breaker so
that a dead ml-service costs no latency."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx

from app.core.config import Settings
from app.services.resilience import CircuitBreaker, Guard, RetryPolicy, send

log = logging.getLogger(__name__)


class MLServiceError(Exception):
    """Base of what the client raises."""


class MLServiceUnavailable(MLServiceError):
    """ml-service could not answer: down, circuit open, timed out, overloaded or failing (the fallback's cue)."""


class MLServiceRejected(MLServiceError):
    """ml-service answered that the request is wrong (a 4xx other than 429): not retried, no fallback."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class MLServiceClient:
    """Typed calls to ml-service's own API (`POST /inference`)."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, breaker: CircuitBreaker | None = None,
                 policy: RetryPolicy | None = None) -> None:
        self.settings = settings
        self.http = http
        self.breaker = breaker or CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self.policy = policy or RetryPolicy(retries=settings.ml_service_retries)
        self.guard = Guard("ml-service", self.policy, self.breaker, settings.ml_service_timeout_s, MLServiceUnavailable)

    @staticmethod
    def make_http(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        """The shared pooled client (the app opens it in its lifespan and closes it on shutdown)."""
        headers = {"Authorization": f"Bearer {settings.ml_service_secret}"} if settings.ml_service_secret else {}
        timeout = httpx.Timeout(settings.ml_service_timeout_s, connect=min(1.0, settings.ml_service_timeout_s))
        return httpx.AsyncClient(base_url=settings.ml_service_url, headers=headers, timeout=timeout,
                                 limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                                 transport=transport)

    async def _request(self, method: str, path: str, json: Any = None) -> Any:
        async def once() -> Any:
            response = await send("ml-service", self.http.request(method, path, json=json))
            if response.status_code >= 400:
                err = _error(response)
                raise MLServiceRejected(response.status_code, err.get("code", "error"), err.get("message", ""))
            return response.json()

        return await self.guard.call(once)

    async def inference(self, model_type: str, data: dict[str, Any], version: str | None = None) -> dict[str, Any]:
        """The guide's call: `POST /inference {"model_type", "data"}`."""
        body: dict[str, Any] = {"model_type": model_type, "data": data}
        if version is not None:
            body["version"] = version
        result: dict[str, Any] = await self._request("POST", "/inference", body)
        return result

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Sentence embeddings (384-d, normalized), in order; any number of texts (sent in chunks of 256)."""
        out: list[list[float]] = []
        for i in range(0, len(texts), 256):
            result = await self.inference("text-embedding", {"texts": texts[i:i + 256]})
            out += [o["embedding"] for o in result["outputs"]]
        return out

    async def classify_text(self, model: str, texts: list[str], top_k: int = 3) -> list[dict[str, Any]]:
        """`{"label", "score", "top_k"}` per text."""
        result = await self.inference(model, {"texts": texts, "top_k": top_k})
        outputs: list[dict[str, Any]] = result["outputs"]
        return outputs

    async def classify_image(self, image: bytes, top_k: int = 5) -> dict[str, Any]:
        result = await self.inference("item-classifier", {"image": base64.b64encode(image).decode("ascii"),
                                                          "top_k": top_k})
        output: dict[str, Any] = result["outputs"][0]
        return output


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"code": "error", "message": response.text[:200]}
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {"code": "error", "message": str(err)[:200]}
