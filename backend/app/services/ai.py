"""`AIService`: the managed API (OpenAI's chat completions through the official `openai` library), a fallback for
the ML features. Every prompt is made in `_ask`, which sanitizes its texts first (one place, so no caller can skip
it) and puts the placeholders back in the answer. Calls go through the same budget, retries and breaker as the other
sources (the library's own retries are off); answers are checked against their JSON schema."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from app.core.categories import CATEGORIES, Category
from app.core.config import Settings
from app.services.answers import ChatCompletion, parse
from app.services.egress import Redactor
from app.services.resilience import (
    CircuitBreaker,
    Guard,
    InvalidAnswer,
    Retryable,
    RetryPolicy,
    SourceError,
    check_status,
)
from app.services.sanitize import Sanitized

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
PEER = "OpenAI"


class AIError(SourceError):
    """The managed API could not give a usable answer."""


class AINotConfigured(AIError):
    """No OPENAI_API_KEY: the fallback is off."""


class Categorized(BaseModel):
    category: Category  # anything else is an invalid answer
    score: float = Field(ge=0, le=1)


class Intent(BaseModel):
    intent: str = Field(min_length=1, max_length=80)
    score: float = Field(ge=0, le=1)


class Ranked(BaseModel):
    indices: list[int]


class Suggestion(BaseModel):
    index: int
    reason: str = Field(max_length=500)


class Suggestions(BaseModel):
    suggestions: list[Suggestion]


class AIService:
    """The fallback's calls; each takes the household's `Redactor`, applied to every text of the prompt."""

    def __init__(self, settings: Settings, breaker: CircuitBreaker | None = None) -> None:
        self.settings = settings
        self._client: Any = None
        breaker = breaker or CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s, name=PEER)
        self.guard = Guard(RetryPolicy(retries=1), breaker, settings.openai_timeout_s, AIError,
                           "check OPENAI_API_KEY (or OPENAI_API_KEY_FILE)")
        if settings.openai_api_key:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(api_key=settings.openai_api_key, base_url=settings.openai_base_url,
                                       timeout=settings.openai_timeout_s, max_retries=0)

    @property
    def configured(self) -> bool:
        return self._client is not None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _complete(self, system: str, user: str, left: float) -> str:
        """One chat completion; the openai library's failures in the terms of `call_with_retries`."""
        import openai

        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                model=self.settings.openai_model, temperature=0, response_format={"type": "json_object"},
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}], timeout=left)
        except openai.APITimeoutError:
            raise TimeoutError(f"{PEER} did not answer in time") from None
        except openai.APIConnectionError as exc:
            raise Retryable(f"cannot reach {PEER}: {type(exc).__name__}") from None
        except openai.APIStatusError as exc:
            check_status(PEER, exc.status_code, exc.response.headers)  # 401/403, 429/5xx: raises
            raise AIError(f"{PEER} refused the request: {exc.status_code}") from None
        return parse(PEER, ChatCompletion, raw.http_response.content).choices[0].message.content

    async def _ask(self, answer: type[M], system: str, texts: Sequence[str], prompt: Callable[[list[str]], str],
                   redactor: Redactor) -> tuple[M, list[Sanitized]]:
        """The one way a prompt leaves: `texts` sanitized, `prompt(sanitized texts)` sent, the answer checked."""
        if self._client is None:
            raise AINotConfigured("no OPENAI_API_KEY is configured: the managed fallback is off")
        clean = await redactor.clean(texts)
        user = prompt([c.text for c in clean])

        async def once(left: float) -> M:
            content = await self._complete(system, user, left)
            try:
                return answer.model_validate(json.loads(content))
            except (ValueError, ValidationError):
                raise InvalidAnswer(f"{PEER}'s answer was not the JSON asked for") from None

        return await self.guard.call(once), clean

    async def categorize(self, text: str, redactor: Redactor) -> Categorized:
        system = ("You sort household tasks into exactly one category from this list: " + ", ".join(CATEGORIES)
                  + '. Answer only JSON: {"category": <one of the list>, "score": <confidence 0..1>}.')
        out, _ = await self._ask(Categorized, system, [text], lambda t: f"Task: {t[0]}", redactor)
        return out

    async def intent(self, text: str, redactor: Redactor) -> Intent:
        system = ("You name the intent of a home assistant request as a short snake_case label (timer, "
                  "shopping_list_update, calendar, smart_home, reminder_update, ...). Answer only JSON: "
                  '{"intent": <label>, "score": <confidence 0..1>}.')
        out, _ = await self._ask(Intent, system, [text], lambda t: f"Request: {t[0]}", redactor)
        return out

    async def similar(self, text: str, candidates: list[str], limit: int, redactor: Redactor) -> list[int]:
        """Indices into `candidates`, most similar first."""
        system = (f"Pick the at most {limit} tasks most similar to the query, most similar first. Answer only JSON: "
                  '{"indices": [<numbers from the list>]}.')

        def prompt(t: list[str]) -> str:
            return f"Query: {t[0]}\nTasks:\n" + "\n".join(f"{i}: {c}" for i, c in enumerate(t[1:]))

        out, _ = await self._ask(Ranked, system, [text, *candidates], prompt, redactor)
        return [i for i in dict.fromkeys(out.indices) if 0 <= i < len(candidates)][:limit]

    async def recommend(self, household: list[str], catalog: list[str], limit: int,
                        redactor: Redactor) -> list[Suggestion]:
        """Catalog picks with their reasons; the catalog is public and goes as it is."""
        system = (f"Suggest the {limit} catalog tasks this household would most likely need next, given its tasks; "
                  "skip what it already has. Answer only JSON: "
                  '{"suggestions": [{"index": <catalog number>, "reason": <one short sentence>}]}.')
        listing = "\nCatalog:\n" + "\n".join(f"{i}: {c}" for i, c in enumerate(catalog))

        def prompt(t: list[str]) -> str:
            return "Household tasks:\n" + "\n".join(f"- {x}" for x in t) + listing

        out, clean = await self._ask(Suggestions, system, household, prompt, redactor)
        seen: set[int] = set()
        picked = []
        for s in out.suggestions:
            if 0 <= s.index < len(catalog) and s.index not in seen:
                seen.add(s.index)
                picked.append(Suggestion(index=s.index, reason=redactor.restore(s.reason, clean)))
        return picked[:limit]
