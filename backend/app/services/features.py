"""The ML features, each answered by the first source in the configured order that can (ml-service, Vertex AI,
OpenAI; usable without HTTP). No session is held across a call out: the database is read in one short session,
the sources are asked with none open, and what is to be kept is written in another."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from app.core.config import Settings, Source
from app.crud import tasks as task_crud
from app.db import Database
from app.models import Task
from app.services import recommend as rec
from app.services.ai import AIService
from app.services.fallback import FallbackChain, NoSource
from app.services.imagemap import category_of
from app.services.ml_client import MLServiceClient, MLServiceUnavailable
from app.services.sanitize import Sanitizer
from app.services.vertex import VertexClient

log = logging.getLogger(__name__)
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


@dataclass(frozen=True)
class Scored:
    label: str
    score: float
    source: Source


@dataclass(frozen=True)
class ImageLabels:
    label: str
    score: float
    top_k: list[dict[str, float | str]]
    category: str | None
    source: Source


class Features:
    """The features of one app, with the parts they need (built once in the lifespan)."""

    def __init__(self, settings: Settings, db: Database, ml: MLServiceClient, vertex: VertexClient, ai: AIService,
                 chain: FallbackChain, catalog: list[rec.CatalogItem]) -> None:
        self.settings, self.db, self.ml, self.vertex, self.ai, self.chain = settings, db, ml, vertex, ai, chain
        self.catalog = catalog
        self.catalog_embeddings: np.ndarray | None = None  # on first use (ml-service or Vertex: the same model)

    async def _classify(self, model: str, text: str, sanitizer: Sanitizer,
                        managed: Callable[[], Awaitable[tuple[str, float]]]) -> Scored:
        async def ml() -> tuple[str, float]:
            out = (await self.ml.classify_text(model, [text], top_k=1))[0]
            return out["label"], float(out["score"])

        async def vertex() -> tuple[str, float]:
            out = (await self.vertex.classify_text(model, [text], sanitizer, top_k=1))[0]
            return out["label"], float(out["score"])

        (label, score), source = await self.chain.run({"ml-service": ml, "vertex": vertex, "openai": managed})
        return Scored(label, score, source)

    async def categorize(self, text: str, sanitizer: Sanitizer) -> Scored:
        """The household category of a task text (kitchen, garden, bills, ...)."""
        async def managed() -> tuple[str, float]:
            out = await self.ai.categorize(text, sanitizer)
            return out.category, out.score

        return await self._classify("task-category", text, sanitizer, managed)

    async def intent(self, text: str, sanitizer: Sanitizer) -> Scored:
        """What a request to the home assistant wants (timer, shopping_list_update, ...)."""
        async def managed() -> tuple[str, float]:
            out = await self.ai.intent(text, sanitizer)
            return out.intent, out.score

        return await self._classify("intent-classifier", text, sanitizer, managed)

    async def embed_tasks(self, tasks: list[Task]) -> None:
        """Give tasks whose embedding is missing or stale one (ml-service only; raises MLServiceUnavailable)."""
        stale = [t for t in tasks if t.embedding is None or t.embedded_text != t.text]
        if stale:
            vectors = await self.ml.embed([t.text for t in stale])
            async with self.db.sessions() as s:
                await task_crud.store_embeddings(s, [(t.id, t.text, v) for t, v in zip(stale, vectors, strict=True)])

    async def _embedded(self, borrowed: Embed | None = None) -> tuple[list[int], np.ndarray]:
        """The ids of the household's tasks and their embeddings as one matrix, embedding the stale ones first
        (ml-service's embeddings are stored). With `borrowed` (Vertex's, of sanitized text) stale tasks are embedded
        for this answer only, not stored: ml-service embeds their real text once it is back."""
        async with self.db.sessions() as s:
            rows = await task_crud.embedding_rows(s)
        stale = [(r.id, Task.text_of(r.title, r.notes)) for r in rows
                 if r.embedding is None or r.embedded_text != Task.text_of(r.title, r.notes)]
        fresh: dict[int, np.ndarray] = {}
        if stale:
            vectors = await (borrowed or self.ml.embed)([text for _, text in stale])
            fresh = {i: np.asarray(v, dtype=np.float32) for (i, _), v in zip(stale, vectors, strict=True)}
            if borrowed is None:
                async with self.db.sessions() as s:
                    await task_crud.store_embeddings(s, [(i, text, v) for (i, text), v in zip(stale, vectors,
                                                                                               strict=True)])
        found = [r for r in rows if r.id not in fresh and r.embedding is not None]
        ids = [r.id for r in found] + list(fresh)
        if not ids:
            return [], np.zeros((0, 0), dtype=np.float32)
        stored = np.frombuffer(b"".join(r.embedding for r in found if r.embedding is not None), dtype="<f4")
        parts = [stored.reshape(len(found), -1)] if found else []
        return ids, np.vstack([*parts, np.stack(list(fresh.values()))] if fresh else parts)

    async def similar(self, text: str, limit: int, sanitizer: Sanitizer) -> tuple[list[tuple[Task, float]], Source]:
        """The household's tasks most like `text`: cosine over the stored embeddings (one matrix-vector product)
        with ml-service's or Vertex's query embedding, or the OpenAI fallback's ranking of their titles."""
        async def by_embedding(embed: Embed, borrowed: bool) -> list[tuple[Task, float]]:
            ids, matrix = await self._embedded(embed if borrowed else None)
            if not ids:
                return []
            query = np.asarray((await embed([text]))[0], dtype=np.float32)
            scores = matrix @ query
            order = np.argsort(-scores)[:limit]
            async with self.db.sessions() as s:
                tasks = await task_crud.by_ids(s, [ids[i] for i in order])
            return [(tasks[ids[i]], float(scores[i])) for i in order if ids[i] in tasks]

        async def ml() -> list[tuple[Task, float]]:
            return await by_embedding(self.ml.embed, borrowed=False)

        async def vertex() -> list[tuple[Task, float]]:
            return await by_embedding(lambda texts: self.vertex.embed(texts, sanitizer), borrowed=True)

        async def managed() -> list[tuple[Task, float]]:
            async with self.db.sessions() as s:
                tasks = list(await task_crud.all_tasks(s))
            picked = await self.ai.similar(text, [t.title for t in tasks], limit, sanitizer)
            return [(tasks[i], 1.0 - rank / max(1, len(picked))) for rank, i in enumerate(picked)]

        return await self.chain.run({"ml-service": ml, "vertex": vertex, "openai": managed})

    async def recommend(self, limit: int, sanitizer: Sanitizer) -> tuple[list[rec.Recommendation], Source]:
        """Tasks to suggest next, from the catalog of common household tasks, each with its reason."""
        async with self.db.sessions() as s:
            tasks = list(await task_crud.all_tasks(s))
        now = dt.datetime.now(dt.UTC)

        async def rank(embed: Embed, borrowed: bool) -> list[rec.Recommendation]:
            ids, matrix = await self._embedded(embed if borrowed else None)
            vectors = dict(zip(ids, matrix, strict=True))
            if self.catalog_embeddings is None:  # the catalog is not the household's: nothing personal in it
                self.catalog_embeddings = np.asarray(await embed([c.title for c in self.catalog]), dtype=np.float32)
            household = [rec.HouseholdTask(t.title, t.category, vectors[t.id], t.done, _aware(t.done_at))
                         for t in tasks if t.id in vectors]
            return rec.rank(self.catalog, self.catalog_embeddings, household, now, limit)

        async def ml() -> list[rec.Recommendation]:
            return await rank(self.ml.embed, borrowed=False)

        async def vertex() -> list[rec.Recommendation]:
            return await rank(lambda texts: self.vertex.embed(texts, sanitizer), borrowed=True)

        async def managed() -> list[rec.Recommendation]:
            picks = await self.ai.recommend([t.title for t in tasks], [c.title for c in self.catalog], limit,
                                            sanitizer)
            return [rec.Recommendation(self.catalog[p.index].title, self.catalog[p.index].category,
                                       self.catalog[p.index].every_days, 1.0 - k / max(1, len(picks)), p.reason)
                    for k, p in enumerate(picks)]

        return await self.chain.run({"ml-service": ml, "vertex": vertex, "openai": managed})

    async def classify_image(self, image: bytes, top_k: int = 5) -> ImageLabels:
        """ml-service only: photos never leave the house (neither managed source gets them)."""
        try:
            out = await self.ml.classify_image(image, top_k)
        except MLServiceUnavailable as exc:
            raise NoSource(f"image classification needs ml-service, which is unavailable ({exc}); photos are "
                           "never sent to a managed API") from None
        category = next((c for t in out["top_k"] if (c := category_of(t["label"])) is not None), None)
        return ImageLabels(out["label"], out["score"], out["top_k"], category, "ml-service")


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t
