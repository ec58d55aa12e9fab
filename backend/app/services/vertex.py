"""`VertexClient`: a Vertex AI endpoint as one more source of the ML features, for a household app hosted on
Google Cloud. The endpoint runs the ml-service image as a custom container (docs/vertex.md), so its answers are
ml-service's; `parameters.model` picks the model. Calls go to Vertex's REST `:predict` with httpx, authenticated
with Application Default Credentials from google-auth (the full SDK adds ~270 MB and ~3 s of import for one call).

Data sent to Vertex leaves the house: every text goes through the household's sanitizer in `_predict_texts`, the
one place texts are sent (no caller can skip it). Photos are never sent."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from app.core.config import Settings
from app.services.resilience import CircuitBreaker, Guard, RetryPolicy, send
from app.services.sanitize import Sanitizer

log = logging.getLogger(__name__)
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_CHUNK = 32  # instances per call: well under Vertex's 1.5 MB request limit for texts of the API's 5000 chars


class VertexError(Exception):
    """Vertex could not give a usable answer (the next source's cue)."""


class VertexNotConfigured(VertexError):
    """No endpoint named, or no credentials for Google's own endpoint."""


class VertexClient:
    """Predictions from one Vertex AI endpoint (`VERTEX_PROJECT`, `VERTEX_LOCATION`, `VERTEX_ENDPOINT_ID`)."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None,
                 breaker: CircuitBreaker | None = None) -> None:
        self.settings = settings
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(settings.vertex_timeout_s, connect=2.0),
                                              limits=httpx.Limits(max_connections=32))
        self.breaker = breaker or CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self.policy = RetryPolicy(retries=1)
        self.guard = Guard("Vertex", self.policy, self.breaker, settings.vertex_timeout_s, VertexError)
        self._credentials: Any = None
        self._resolved = False
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self.settings.vertex_configured

    @property
    def url(self) -> str:
        s = self.settings
        base = (s.vertex_api_endpoint or f"https://{s.vertex_location}-aiplatform.googleapis.com").rstrip("/")
        return f"{base}/v1/projects/{s.vertex_project}/locations/{s.vertex_location}/endpoints/" \
               f"{s.vertex_endpoint_id}:predict"

    async def close(self) -> None:
        await self.http.aclose()

    async def _authorization(self) -> dict[str, str]:
        """`Authorization: Bearer <token>` from Application Default Credentials, refreshed when due; none against an
        overridden endpoint (a private or test one) where no credentials are found."""
        async with self._lock:
            if not self._resolved:
                self._credentials = await asyncio.to_thread(self._find_credentials)
                self._resolved = True
            creds = self._credentials
            if creds is None:
                return {}
            if not creds.valid:
                import google.auth.transport.requests

                try:
                    await asyncio.to_thread(creds.refresh, google.auth.transport.requests.Request())
                except Exception as exc:  # google-auth's RefreshError, transport errors
                    log.warning("Vertex credentials could not be refreshed: %s", type(exc).__name__)
                    raise VertexError(f"Vertex credentials could not be refreshed ({type(exc).__name__})") from None
            return {"Authorization": f"Bearer {creds.token}"}

    def _find_credentials(self) -> Any:
        import google.auth
        import google.auth.exceptions

        try:
            creds, _ = google.auth.default(scopes=[SCOPE])
        except google.auth.exceptions.DefaultCredentialsError:
            if self.settings.vertex_api_endpoint:
                log.info("no Google credentials found: calling %s without a token", self.settings.vertex_api_endpoint)
                return None
            raise
        return creds

    async def _predict(self, instances: list[Any], parameters: dict[str, Any]) -> list[Any]:
        if not self.configured:
            raise VertexNotConfigured("no Vertex endpoint is configured (VERTEX_PROJECT, VERTEX_LOCATION, "
                                      "VERTEX_ENDPOINT_ID)")

        async def once() -> list[Any]:
            try:
                headers = await self._authorization()
            except VertexError:
                raise
            except Exception as exc:  # DefaultCredentialsError: Google's endpoint without credentials
                raise VertexNotConfigured(f"no Google credentials for Vertex ({type(exc).__name__})") from None
            r = await send("Vertex", self.http.post(self.url, json={"instances": instances, "parameters": parameters},
                                                    headers=headers))
            if r.status_code >= 400:
                raise VertexError(f"Vertex refused the request: {r.status_code} {_status(r)}")
            try:
                predictions = r.json()["predictions"]
            except (ValueError, KeyError, TypeError):
                raise VertexError("Vertex's answer has no predictions") from None
            if not isinstance(predictions, list) or len(predictions) != len(instances):
                raise VertexError("Vertex answered a different number of predictions than instances")
            return predictions

        return await self.guard.call(once)

    async def _predict_texts(self, model: str, texts: list[str], sanitizer: Sanitizer,
                             **parameters: Any) -> list[Any]:
        """Texts, sanitized, to `model` in chunks; one prediction per text, in order."""
        clean = [sanitizer.sanitize(t).text for t in texts]
        out: list[Any] = []
        for i in range(0, len(clean), _CHUNK):
            out += await self._predict(clean[i:i + _CHUNK], {"model": model, **parameters})
        return out

    async def embed(self, texts: list[str], sanitizer: Sanitizer) -> list[list[float]]:
        """Sentence embeddings from the endpoint's `text-embedding` (the same model as ml-service's)."""
        return [p["embedding"] for p in await self._predict_texts("text-embedding", texts, sanitizer)]

    async def classify_text(self, model: str, texts: list[str], sanitizer: Sanitizer,
                            top_k: int = 3) -> list[dict[str, Any]]:
        """`{"label", "score", "top_k"}` per text, as ml-service answers them."""
        return list(await self._predict_texts(model, texts, sanitizer, top_k=top_k))


def _status(response: httpx.Response) -> str:
    try:
        err = response.json().get("error", {})
        return f"{err.get('status', '')}: {str(err.get('message', ''))[:200]}"
    except (ValueError, AttributeError):
        return response.text[:200]
