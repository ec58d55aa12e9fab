"""`MLServiceClient`: the backend's one way to ml-service (the guide's `ml_client.inference(model_type, data)` plus
typed helpers). One pooled `httpx.AsyncClient`, opened and closed with the app; bearer token; one time budget for
the whole call, retries included, which ml-service is told of (`X-Request-Timeout-Ms`); retries on connection
errors, 429, 502, 503 and 504 only (honouring Retry-After), except the 503s that say retrying cannot help (a model
that failed to load, ml-service shedding load): those fall back at once; answers checked against their shape; a
circuit breaker so that a dead ml-service costs no latency."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from app.core.config import Settings
from app.services.answers import (
    Classification,
    ClassificationOutputs,
    EmbeddingOutputs,
    Outputs,
    RolledBack,
    TrainJob,
    TrainStarted,
    checked,
    parse,
)
from app.services.resilience import CircuitBreaker, Guard, InvalidAnswer, RetryPolicy, ServerFailure, SourceError, send

log = logging.getLogger(__name__)
T = TypeVar("T")
PEER = "ml-service"
_CHUNK = 256  # texts per embedding call
#: what ml-service answers about the request itself (the user's input): answered as such, no fallback
REJECTIONS = frozenset({400, 413, 422})
#: ml-service's load shedding (503 + Retry-After, at once): its queue cannot answer within the time we said we have
#: left, or it stands over its target wait; a retry within our budget would only add load to an overloaded service
SHEDDING = frozenset({"deadline_unreachable", "overloaded"})
_last_warning: dict[str, float] = {}


class MLServiceError(Exception):
    """Base of what the client raises."""


class MLServiceUnavailable(MLServiceError, SourceError):
    """ml-service could not answer: down, circuit open, timed out, overloaded, failing, refusing our token, or
    answering garbage (the fallback's cue)."""


class MLServiceModelFailed(MLServiceError, SourceError):
    """ml-service is up, but the model failed to load as it is on disk (503 `model_failed`, no Retry-After): the
    next source answers at once; not retried, and not counted against ml-service's circuit (its other models
    serve)."""


class MLServiceShedding(MLServiceError, SourceError):
    """ml-service refused at once because it cannot answer in time (503 `deadline_unreachable` or `overloaded`): the
    next source answers now; not retried within the budget, and not counted against ml-service's circuit (it is up,
    and answers what it accepts in time)."""


class MLServiceRejected(MLServiceError):
    """ml-service answered that the request is wrong (400, 413, 422): not retried, no fallback."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class MLServiceClient:
    """Typed calls to ml-service's own API (`POST /inference`; and for the app's loop its training operation:
    `train`, `job`, `rollback`)."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, breaker: CircuitBreaker | None = None,
                 policy: RetryPolicy | None = None) -> None:
        self.settings = settings
        self.http = http
        self.breaker = breaker or CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s, name=PEER)
        self.breaker.name = PEER
        self.policy = policy or RetryPolicy(retries=settings.ml_service_retries)
        self.guard = Guard(self.policy, self.breaker, settings.ml_service_timeout_s, MLServiceUnavailable,
                           "check ML_SERVICE_SECRET (or ML_SERVICE_SECRET_FILE) against ml-service's tokens")

    @staticmethod
    def make_http(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        """The shared pooled client (the app opens it in its lifespan and closes it on shutdown)."""
        headers = {"Authorization": f"Bearer {settings.ml_service_secret}"} if settings.ml_service_secret else {}
        timeout = httpx.Timeout(settings.ml_service_timeout_s, connect=min(1.0, settings.ml_service_timeout_s))
        return httpx.AsyncClient(base_url=settings.ml_service_url, headers=headers, timeout=timeout,
                                 limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                                 transport=transport)

    async def _request(self, method: str, path: str, body: Any, read: Callable[[httpx.Response], T],
                       rejections: Collection[int] = REJECTIONS) -> T:
        async def once(left: float) -> T:
            timeout = httpx.Timeout(left, connect=min(1.0, left))
            headers = {"X-Request-Timeout-Ms": str(max(1, int(left * 1000)))}  # ml-service stops when we do
            response = await send(PEER, self.http.request(method, path, json=body, headers=headers, timeout=timeout),
                                  _final)
            if response.status_code >= 400:
                err = _error(response)
                if response.status_code in rejections:
                    raise MLServiceRejected(response.status_code, err.get("code", "error"), err.get("message", ""))
                raise ServerFailure(f"{PEER} answered {response.status_code} {err.get('code', '')}".rstrip())
            return read(response)

        return await self.guard.call(once)

    async def inference(self, model_type: str, data: dict[str, Any], version: str | None = None) -> dict[str, Any]:
        """The guide's call: `POST /inference {"model_type", "data"}` (the answer must be a JSON object)."""
        body: dict[str, Any] = {"model_type": model_type, "data": data}
        if version is not None:
            body["version"] = version
        return await self._request("POST", "/inference", body, _object)

    async def _outputs(self, model: str, data: dict[str, Any], answer: type[Outputs[Any]], count: int,
                       labels: Collection[str] | None = None) -> list[Any]:
        def read(response: httpx.Response) -> list[Any]:
            parsed = parse(PEER, answer, response.content)
            items = checked(PEER, parsed.outputs, count, labels)
            for item in items:
                if isinstance(item, Classification):
                    item.version = parsed.version  # which version answered: a new one after learn or rollback
            return items

        return await self._request("POST", "/inference", {"model_type": model, "data": data}, read)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Sentence embeddings (384-d, normalized), in order; any number of texts (sent in chunks of 256)."""
        out: list[list[float]] = []
        for i in range(0, len(texts), _CHUNK):
            chunk = texts[i:i + _CHUNK]
            out += [e.embedding for e in await self._outputs("text-embedding", {"texts": chunk}, EmbeddingOutputs,
                                                              len(chunk))]
        return out

    async def classify_text(self, model: str, texts: list[str], top_k: int = 3,
                            labels: Collection[str] | None = None) -> list[Classification]:
        """The label, score and top_k per text (labels among `labels` when given)."""
        return await self._outputs(model, {"texts": texts, "top_k": top_k}, ClassificationOutputs, len(texts),
                                         labels)

    async def classify_image(self, image: bytes, top_k: int = 5) -> Classification:
        data = {"image": base64.b64encode(image).decode("ascii"), "top_k": top_k}
        out: list[Classification] = await self._outputs("item-classifier", data, ClassificationOutputs, 1)
        return out[0]


    async def train(self, model: str, examples: list[tuple[str, str]], *, include_base: bool = True,
                    holdout: float = 0.2, seed: int = 0, force: bool = False) -> TrainStarted:
        """Start training `model` on the examples (text, label) and, with `include_base`, the ones its served
        version was trained from: `POST /models/{model}/train`, answered 202 with the job. A 4xx (409
        `training_in_progress`, a bad example, no such model) is `MLServiceRejected`."""
        body = {"examples": [{"text": t, "label": lb} for t, lb in examples], "include_base": include_base,
                "holdout": holdout, "seed": seed, "force": force}
        return await self._request("POST", f"/models/{quote(model, safe='')}/train", body,
                                   lambda r: parse(PEER, TrainStarted, r.content), _CLIENT_ERRORS)

    async def job(self, job_id: str) -> TrainJob:
        """A training job's state, and its report and publication once it ended (`GET /models/jobs/{id}`)."""
        return await self._request("GET", f"/models/jobs/{quote(job_id, safe='')}", None,
                                   lambda r: parse(PEER, TrainJob, r.content), _CLIENT_ERRORS)

    async def rollback(self, model: str) -> RolledBack:
        """Make the version before the default the default again (`POST /models/{model}/rollback`); 409 when there
        is none is `MLServiceRejected`."""
        return await self._request("POST", f"/models/{quote(model, safe='')}/rollback", None,
                                   lambda r: parse(PEER, RolledBack, r.content), _CLIENT_ERRORS)


#: the training operations' answers about the request (or the job) itself: every 4xx but the ones `send` reads
#: (401/403: our credentials; 429: retried)
_CLIENT_ERRORS = frozenset(range(400, 500)) - {401, 403, 429}


def _object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise InvalidAnswer(f"{PEER}'s answer is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidAnswer(f"{PEER}'s answer is not a JSON object")
    return body


def _final(response: httpx.Response) -> Exception | None:
    """The 503s after which retrying cannot help (`send`'s `permanent`): a model that failed to load (no
    Retry-After), or ml-service shedding load; the next source's turn now."""
    if response.status_code != 503:
        return None
    err = _error(response)
    code = err.get("code")
    if code == "model_failed" and "retry-after" not in response.headers:
        _warn_once(code, "ml-service: %s; falling back without retrying", err.get("message", "a model failed to load"))
        return MLServiceModelFailed(f"{PEER}: {err.get('message', 'the model failed to load')}")
    if code in SHEDDING:
        _warn_once("shedding", "ml-service is shedding load (%s: %s); falling back without retrying", code,
                   err.get("message", ""))
        return MLServiceShedding(f"{PEER}: {err.get('message', 'overloaded')}")
    return None


def _warn_once(kind: str, message: str, *args: Any) -> None:
    """A warning at most once a minute per kind: every request would say it."""
    now = time.monotonic()
    if now - _last_warning.get(kind, -60.0) >= 60.0:
        _last_warning[kind] = now
        log.warning(message, *args)


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"code": "error", "message": response.text[:200]}
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {"code": "error", "message": str(err)[:200]}
