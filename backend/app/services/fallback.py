"""The fallback chain (the guide's hybrid approach): each ML feature tries its sources in the configured order
(`ML_FALLBACK_ORDER`, default ml-service, then Vertex AI, then OpenAI) and moves on when one cannot answer: a
`SourceError` (circuit open, timeout, 5xx, connection refused, refused credentials, a garbage answer) or not
configured. Every answer says which source answered. A request ml-service rejects as wrong (400/413/422) is the
caller's problem: it never goes to the next source. The whole chain runs within the request's budget
(`ML_REQUEST_BUDGET_S`, set per request in `main.py`): a source tried when it is spent fails at once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from app.core.config import Settings, Source
from app.services.ai import AIService
from app.services.resilience import SourceError
from app.services.vertex import VertexClient

log = logging.getLogger(__name__)
T = TypeVar("T")
Call = Callable[[], Awaitable[T]]


class NoSource(Exception):
    """No source in the order could answer."""


class FallbackChain:
    """Runs a feature on the sources in the configured order; returns the answer and who gave it."""

    def __init__(self, settings: Settings, ai: AIService, vertex: VertexClient | None = None) -> None:
        self.order: list[Source] = settings.sources
        self.ai = ai
        self.vertex = vertex

    def _unconfigured(self, source: Source) -> str | None:
        if source == "openai" and not self.ai.configured:
            return "the OpenAI fallback is not configured (OPENAI_API_KEY)"
        if source == "vertex" and (self.vertex is None or not self.vertex.configured):
            return (self.vertex and self.vertex.off) or \
                "Vertex AI is not configured (VERTEX_PROJECT, VERTEX_LOCATION, VERTEX_ENDPOINT_ID)"
        return None

    async def run(self, calls: Mapping[Source, Call[T]]) -> tuple[T, Source]:
        """The first answer of `calls` (the feature's way to ask each source it can use) in the configured order."""
        errors: list[str] = []
        for source in self.order:
            call = calls.get(source)
            if call is None:
                continue
            missing = self._unconfigured(source)
            if missing:
                errors.append(missing)
                continue
            try:
                return await call(), source
            except SourceError as exc:
                errors.append(f"{source}: {exc}")
        if not errors:
            errors.append("no configured source offers this feature")
        log.warning("no source answered: %s", "; ".join(errors))
        raise NoSource("; ".join(errors))
