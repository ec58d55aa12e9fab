"""The ML features, each answered by the first source in the configured order that can (ml-service, Vertex AI,
OpenAI; usable without HTTP)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Source
from app.db import Task
from app.services import recommend as rec
from app.services.container import Services
from app.services.imagemap import category_of
from app.services.ml_client import MLServiceError, MLServiceUnavailable
from app.services.router import NoSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    label: str
    score: float
    source: Source


async def _classify(s: Services, model: str, text: str, sanitizer: Any,
                    managed: Callable[[], Awaitable[tuple[str, float]]]) -> Scored:
    async def ml() -> tuple[str, float]:
        out = (await s.ml.classify_text(model, [text], top_k=1))[0]
        return out["label"], float(out["score"])

    async def vertex() -> tuple[str, float]:
        out = (await s.vertex.classify_text(model, [text], sanitizer, top_k=1))[0]
        return out["label"], float(out["score"])

    (label, score), source = await s.router.run({"ml-service": ml, "vertex": vertex, "openai": managed})
    return Scored(label, score, source)


async def categorize(s: Services, text: str, sanitizer: Any) -> Scored:
    async def managed() -> tuple[str, float]:
        out = await s.ai.categorize(text, sanitizer)
        return out.category, out.score

    return await _classify(s, "task-category", text, sanitizer, managed)


async def intent(s: Services, text: str, sanitizer: Any) -> Scored:
    async def managed() -> tuple[str, float]:
        out = await s.ai.intent(text, sanitizer)
        return out.intent, out.score

    return await _classify(s, "intent-classifier", text, sanitizer, managed)


async def embed_missing(s: Services, db: AsyncSession, tasks: list[Task]) -> None:
    """Give tasks whose embedding is missing or stale one (ml-service only; raises MLServiceUnavailable)."""
    stale = [t for t in tasks if t.embedding is None or t.embedded_text != t.text]
    if not stale:
        return
    vectors = await s.ml.embed([t.text for t in stale])
    for t, v in zip(stale, vectors, strict=True):
        t.embedding, t.embedded_text = np.asarray(v, dtype="<f4").tobytes(), t.text
    await db.commit()


Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


async def _embedded(s: Services, db: AsyncSession, borrowed: Embed | None = None) -> tuple[list[int], np.ndarray]:
    """The ids of the household's tasks and their embeddings as one matrix, embedding the stale ones first; reads
    only the columns it needs. Measured for 10,000 tasks (SQLite, 2 cores): 75-120 ms to read, 2-7 ms to search,
    15 MB of embeddings (20 MB database).

    With `borrowed` (Vertex's, of sanitized text) stale tasks are embedded for this answer only, not stored:
    ml-service embeds their real text once it is back."""
    rows = (await db.execute(select(Task.id, Task.title, Task.notes, Task.embedded_text))).all()
    stale = [r.id for r in rows if r.embedded_text != Task.text_of(r.title, r.notes)]
    fresh: dict[int, np.ndarray] = {}
    if stale:
        stale_tasks = list((await db.execute(select(Task).where(Task.id.in_(stale)))).scalars().all())
        if borrowed is None:
            await embed_missing(s, db, stale_tasks)
        else:
            vectors = await borrowed([t.text for t in stale_tasks])
            fresh = {t.id: np.asarray(v, dtype=np.float32) for t, v in zip(stale_tasks, vectors, strict=True)}
    found = [r for r in (await db.execute(select(Task.id, Task.embedding).where(Task.embedding.is_not(None))
                                          .order_by(Task.id))).all() if r.id not in fresh]
    ids = [r.id for r in found] + list(fresh)
    if not ids:
        return [], np.zeros((0, 0), dtype=np.float32)
    stored = np.frombuffer(b"".join(r.embedding for r in found), dtype="<f4")
    parts = [stored.reshape(len(found), -1)] if found else []
    return ids, np.vstack([*parts, np.stack(list(fresh.values()))] if fresh else parts)


async def similar(s: Services, db: AsyncSession, text: str, limit: int, sanitizer: Any
                  ) -> tuple[list[tuple[Task, float]], Source]:
    """The household's tasks most like `text`: cosine over the stored embeddings (one matrix-vector product) with
    ml-service's or Vertex's query embedding, or the OpenAI fallback's ranking of their titles."""
    async def by_embedding(embed: Embed, borrowed: bool) -> list[tuple[Task, float]]:
        ids, matrix = await _embedded(s, db, embed if borrowed else None)
        if not ids:
            return []
        query = np.asarray((await embed([text]))[0], dtype=np.float32)
        scores = matrix @ query
        order = np.argsort(-scores)[:limit]
        tasks = {t.id: t for t in (await db.execute(select(Task).where(Task.id.in_([ids[i] for i in order]))))
                 .scalars().all()}
        return [(tasks[ids[i]], float(scores[i])) for i in order]

    async def ml() -> list[tuple[Task, float]]:
        return await by_embedding(s.ml.embed, borrowed=False)

    async def vertex() -> list[tuple[Task, float]]:
        return await by_embedding(lambda texts: s.vertex.embed(texts, sanitizer), borrowed=True)

    async def managed() -> list[tuple[Task, float]]:
        tasks = list((await db.execute(select(Task).order_by(Task.id))).scalars().all())
        picked = await s.ai.similar(text, [t.title for t in tasks], limit, sanitizer)
        return [(tasks[i], 1.0 - rank / max(1, len(picked))) for rank, i in enumerate(picked)]

    return await s.router.run({"ml-service": ml, "vertex": vertex, "openai": managed})


async def recommend(s: Services, db: AsyncSession, limit: int, sanitizer: Any
                    ) -> tuple[list[rec.Recommendation], Source]:
    tasks = list((await db.execute(select(Task).order_by(Task.id))).scalars().all())
    now = dt.datetime.now(dt.UTC)

    async def rank(embed: Embed, borrowed: bool) -> list[rec.Recommendation]:
        ids, matrix = await _embedded(s, db, embed if borrowed else None)
        vectors = dict(zip(ids, matrix, strict=True))
        if s.catalog_embeddings is None:  # the catalog is not the household's: nothing personal in it
            s.catalog_embeddings = np.asarray(await embed([c.title for c in s.catalog]), dtype=np.float32)
        household = [rec.HouseholdTask(t.title, t.category, vectors[t.id], t.done, _aware(t.done_at))
                     for t in tasks if t.id in vectors]
        return rec.rank(s.catalog, s.catalog_embeddings, household, now, limit)

    async def ml() -> list[rec.Recommendation]:
        return await rank(s.ml.embed, borrowed=False)

    async def vertex() -> list[rec.Recommendation]:
        return await rank(lambda texts: s.vertex.embed(texts, sanitizer), borrowed=True)

    async def managed() -> list[rec.Recommendation]:
        picks = await s.ai.recommend([t.title for t in tasks], [c.title for c in s.catalog], limit, sanitizer)
        return [rec.Recommendation(s.catalog[p.index].title, s.catalog[p.index].category, s.catalog[p.index].every_days,
                                   1.0 - k / max(1, len(picks)), p.reason) for k, p in enumerate(picks)]

    return await s.router.run({"ml-service": ml, "vertex": vertex, "openai": managed})


async def classify_image(s: Services, image: bytes, top_k: int = 5) -> dict[str, Any]:
    """ml-service only: photos never leave the house (neither managed source gets them)."""
    try:
        out = await s.ml.classify_image(image, top_k)
    except MLServiceUnavailable as exc:
        raise NoSource(f"image classification needs ml-service, which is unavailable ({exc}); photos are never "
                       "sent to a managed API") from None
    category = next((c for t in out["top_k"] if (c := category_of(t["label"])) is not None), None)
    return {"label": out["label"], "score": out["score"], "top_k": out["top_k"], "category": category,
            "source": "ml-service"}


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


__all__ = ["MLServiceError", "Scored", "categorize", "classify_image", "embed_missing", "intent", "recommend",
           "similar"]
