"""`VertexClient`: a Vertex AI endpoint as one more source of the ML features, for a household app hosted on
Google Cloud. The endpoint runs the ml-service image as a custom container (docs/vertex.md), so its answers are
ml-service's; `parameters.model` picks the model. Calls go to Vertex's REST `:predict` with httpx, authenticated
with Application Default Credentials from google-auth (the full SDK adds ~270 MB and ~3 s of import for one call),
resolved once at start: without any, against Google's own endpoint, the provider is off (one log line).

Data sent to Vertex leaves the house: every text goes through the household's redactor in `_predict_texts`, the
one place texts are sent (no caller can skip it). Photos are never sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

import httpx

from app.core.config import Settings
from app.services.answers import (
    Classification,
    ClassificationPredictions,
    EmbeddingPredictions,
    Predictions,
    checked,
    parse,
)
from app.services.egress import Redactor
from app.services.resilience import CircuitBreaker, ConfigFailure, Guard, RetryPolicy, SourceError, send

log = logging.getLogger(__name__)
PEER = "Vertex"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_CHUNK = 32  # instances per call: well under Vertex's 1.5 MB request limit for texts of the API's 5000 chars
_RESOLVE_S = 30.0  # at most this long at start to find credentials (google-auth may probe a metadata server)


class VertexError(SourceError):
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
        self.breaker = breaker or CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s, name=PEER)
        self.breaker.name = PEER
        self.guard = Guard(RetryPolicy(retries=1), self.breaker, settings.vertex_timeout_s, VertexError,
                           "check the service account (GOOGLE_APPLICATION_CREDENTIALS) and its role on the endpoint")
        self._credentials: Any = None
        self._refreshing: asyncio.Future[None] | None = None
        self.off: str | None = None  # why the provider is off although named

    @property
    def configured(self) -> bool:
        return self.settings.vertex_configured and self.off is None

    @property
    def url(self) -> str:
        s = self.settings
        base = (s.vertex_api_endpoint or f"https://{s.vertex_location}-aiplatform.googleapis.com").rstrip("/")
        return f"{base}/v1/projects/{s.vertex_project}/locations/{s.vertex_location}/endpoints/" \
               f"{s.vertex_endpoint_id}:predict"

    async def start(self) -> None:
        """Find the credentials once: Application Default Credentials; none against an overridden endpoint (a
        private or test one) means calls without a token; none against Google's own endpoint turns Vertex off."""
        if not self.settings.vertex_configured:
            return
        try:
            self._credentials = await asyncio.wait_for(asyncio.to_thread(_find_credentials), _RESOLVE_S)
        except Exception as exc:  # google-auth's DefaultCredentialsError, a malformed key file, a slow probe
            if self.settings.vertex_api_endpoint:
                log.info("no Google credentials found (%s): calling %s without a token", type(exc).__name__,
                         self.settings.vertex_api_endpoint)
                return
            self.off = f"Vertex AI is off: no Google credentials ({type(exc).__name__})"
            log.error("%s; set GOOGLE_APPLICATION_CREDENTIALS to a service-account key, or run on Google Cloud",
                      self.off)

    async def close(self) -> None:
        await self.http.aclose()

    async def _authorization(self) -> dict[str, str]:
        """`Authorization: Bearer <token>`, refreshed when due by one refresh at a time (the callers wait for it
        within their own budgets); a refresh that fails is a ConfigFailure, counted by the breaker."""
        creds = self._credentials
        if creds is None:
            return {}
        if not creds.valid:
            if self._refreshing is None or self._refreshing.done():
                import google.auth.transport.requests

                self._refreshing = asyncio.ensure_future(
                    asyncio.to_thread(creds.refresh, google.auth.transport.requests.Request()))
                self._refreshing.add_done_callback(lambda f: f.cancelled() or f.exception())
            try:
                await asyncio.shield(self._refreshing)
            except Exception as exc:  # google-auth's RefreshError, transport errors
                raise ConfigFailure(f"Vertex credentials could not be refreshed ({type(exc).__name__})") from None
        return {"Authorization": f"Bearer {creds.token}"}

    async def _predict(self, instances: list[str], parameters: dict[str, Any],
                       answer: type[Predictions[Any]], labels: Collection[str] | None = None) -> list[Any]:
        if not self.configured:
            raise VertexNotConfigured(self.off or "no Vertex endpoint is configured (VERTEX_PROJECT, "
                                      "VERTEX_LOCATION, VERTEX_ENDPOINT_ID)")

        async def once(left: float) -> list[Any]:
            headers = await self._authorization()
            r = await send(PEER, self.http.post(self.url, json={"instances": instances, "parameters": parameters},
                                                headers=headers, timeout=httpx.Timeout(left, connect=min(2.0, left))))
            if r.status_code >= 400:
                raise VertexError(f"Vertex refused the request: {r.status_code} {_status(r)}")
            return checked(PEER, parse(PEER, answer, r.content).predictions, len(instances), labels)

        return await self.guard.call(once)

    async def _predict_texts(self, model: str, texts: list[str], redactor: Redactor,
                             answer: type[Predictions[Any]], labels: Collection[str] | None = None,
                             **parameters: Any) -> list[Any]:
        """Texts, sanitized, to `model` in chunks; one prediction per text, in order."""
        clean = [s.text for s in await redactor.clean(texts)]
        out: list[Any] = []
        for i in range(0, len(clean), _CHUNK):
            out += await self._predict(clean[i:i + _CHUNK], {"model": model, **parameters}, answer, labels)
        return out

    async def embed(self, texts: list[str], redactor: Redactor) -> list[list[float]]:
        """Sentence embeddings from the endpoint's `text-embedding` (the same model as ml-service's)."""
        return [p.embedding for p in await self._predict_texts("text-embedding", texts, redactor, EmbeddingPredictions)]

    async def classify_text(self, model: str, texts: list[str], redactor: Redactor, top_k: int = 3,
                            labels: Collection[str] | None = None) -> list[Classification]:
        """The label, score and top_k per text, as ml-service answers them."""
        return await self._predict_texts(model, texts, redactor, ClassificationPredictions, labels, top_k=top_k)


def _find_credentials() -> Any:
    import google.auth

    creds, _ = google.auth.default(scopes=[SCOPE])
    return creds


def _status(response: httpx.Response) -> str:
    try:
        err = response.json().get("error", {})
        return f"{err.get('status', '')}: {str(err.get('message', ''))[:200]}"
    except (ValueError, AttributeError):
        return response.text[:200]
