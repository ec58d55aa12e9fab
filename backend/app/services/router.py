"""The guide's hybrid approach: each ML feature tries ml-service first and falls back to the managed API when
ml-service cannot answer (circuit open, timeout, 5xx, connection refused). Every answer says which source
answered. A request ml-service rejects as wrong (4xx) is the caller's problem: it never goes to the fallback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.config import Settings, Source
from app.services.ai import AIError, AIService
from app.services.ml_client import MLServiceUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


class NoSource(Exception):
    """Neither ml-service nor the fallback could answer."""


class HybridRouter:
    """Runs a feature on the sources in `FALLBACK_ORDER`; returns the answer and who gave it."""

    def __init__(self, settings: Settings, ai: AIService) -> None:
        self.order: list[Source] = settings.sources
        self.ai = ai

    async def run(self, ml: Callable[[], Awaitable[T]] | None,
                  managed: Callable[[], Awaitable[T]] | None) -> tuple[T, Source]:
        errors: list[str] = []
        for source in self.order:
            if source == "ml-service" and ml is not None:
                try:
                    return await ml(), "ml-service"
                except MLServiceUnavailable as exc:
                    errors.append(f"ml-service is unavailable ({exc})")
            elif source == "openai" and managed is not None:
                if not self.ai.configured:
                    errors.append("the managed fallback is not configured (OPENAI_API_KEY)")
                    continue
                try:
                    return await managed(), "openai"
                except AIError as exc:
                    errors.append(str(exc))
        if not errors:
            errors.append("no configured source offers this feature")
        log.warning("no source answered: %s", "; ".join(errors))
        raise NoSource("; ".join(errors))
