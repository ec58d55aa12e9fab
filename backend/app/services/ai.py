"""`AIService`: the managed API (OpenAI's chat completions through the official `openai` library), used as the
fallback for the ML features. Every prompt goes through `_call_openai`, which sanitizes it first (one place,
so no caller can skip it) and restores the placeholders in the answer; answers are JSON checked against a
schema (a reply that does not parse is an error, not a crash)."""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from app.core.config import Settings
from app.services.sanitize import Sanitizer

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

CATEGORIES = ["kitchen", "bathroom", "laundry", "cleaning", "garden", "shopping", "bills", "maintenance", "pets",
              "kids", "health", "car"]


class AIError(Exception):
    """The managed API could not give a usable answer."""


class AINotConfigured(AIError):
    """No OPENAI_API_KEY: the fallback is off."""


class Categorized(BaseModel):
    category: str
    score: float = Field(ge=0, le=1)


class Intent(BaseModel):
    intent: str
    score: float = Field(ge=0, le=1)


class Ranked(BaseModel):
    indices: list[int]


class Suggestion(BaseModel):
    index: int
    reason: str


class Suggestions(BaseModel):
    suggestions: list[Suggestion]


class AIService:
    """The fallback's calls; `sanitizer` (the household's) is applied to every prompt."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        if settings.openai_api_key:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(api_key=settings.openai_api_key, base_url=settings.openai_base_url,
                                       timeout=settings.openai_timeout_s, max_retries=1)

    @property
    def configured(self) -> bool:
        return self._client is not None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _call_openai(self, prompt: str, system_prompt: str, sanitizer: Sanitizer) -> str:
        """The guide's call, with the prompt sanitized before it leaves and the placeholders put back after."""
        if self._client is None:
            raise AINotConfigured("no OPENAI_API_KEY is configured: the managed fallback is off")
        clean = sanitizer.sanitize(prompt)
        try:
            response = await self._client.chat.completions.create(
                model=self.settings.openai_model, temperature=0,
                response_format={"type": "json_object"},
                messages=[{"role": "system", "content": system_prompt}, {"role": "user", "content": clean.text}])
        except Exception as exc:  # the openai library's errors: connection, status, timeout
            log.warning("the managed API failed: %s", type(exc).__name__)
            raise AIError(f"the managed API failed: {type(exc).__name__}") from None
        content = response.choices[0].message.content or ""
        return sanitizer.restore(content, clean.mapping)

    async def _json(self, model: type[M], prompt: str, system_prompt: str, sanitizer: Sanitizer) -> M:
        text = await self._call_openai(prompt, system_prompt, sanitizer)
        try:
            return model.model_validate(json.loads(text))
        except (ValueError, ValidationError):
            raise AIError("the managed API's answer was not the JSON asked for") from None

    async def categorize(self, text: str, sanitizer: Sanitizer) -> Categorized:
        system = ("You sort household tasks into exactly one category from this list: " + ", ".join(CATEGORIES)
                  + '. Answer only JSON: {"category": <one of the list>, "score": <confidence 0..1>}.')
        out = await self._json(Categorized, f"Task: {text}", system, sanitizer)
        if out.category not in CATEGORIES:
            raise AIError(f"the managed API answered an unknown category {out.category!r}")
        return out

    async def intent(self, text: str, sanitizer: Sanitizer) -> Intent:
        system = ("You name the intent of a home assistant request as a short snake_case label (timer, "
                  "shopping_list_update, calendar, smart_home, reminder_update, ...). Answer only JSON: "
                  '{"intent": <label>, "score": <confidence 0..1>}.')
        return await self._json(Intent, f"Request: {text}", system, sanitizer)

    async def similar(self, text: str, candidates: list[str], limit: int, sanitizer: Sanitizer) -> list[int]:
        listing = "\n".join(f"{i}: {c}" for i, c in enumerate(candidates))
        system = (f"Pick the at most {limit} tasks most similar to the query, most similar first. Answer only JSON: "
                  '{"indices": [<numbers from the list>]}.')
        out = await self._json(Ranked, f"Query: {text}\nTasks:\n{listing}", system, sanitizer)
        return [i for i in dict.fromkeys(out.indices) if 0 <= i < len(candidates)][:limit]

    async def recommend(self, household: list[str], catalog: list[str], limit: int,
                        sanitizer: Sanitizer) -> list[Suggestion]:
        system = (f"Suggest the {limit} catalog tasks this household would most likely need next, given its tasks; "
                  "skip what it already has. Answer only JSON: "
                  '{"suggestions": [{"index": <catalog number>, "reason": <one short sentence>}]}.')
        prompt = ("Household tasks:\n" + "\n".join(f"- {t}" for t in household)
                  + "\nCatalog:\n" + "\n".join(f"{i}: {c}" for i, c in enumerate(catalog)))
        out = await self._json(Suggestions, prompt, system, sanitizer)
        seen: set[int] = set()
        picked = []
        for s in out.suggestions:
            if 0 <= s.index < len(catalog) and s.index not in seen:
                seen.add(s.index)
                picked.append(s)
        return picked[:limit]
