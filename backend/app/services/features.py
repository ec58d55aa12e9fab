"""The ML features, each answered by the first source in the configured order that can (ml-service, Vertex AI,
OpenAI; usable without HTTP). What each source is sent is the egress policy's (`services/egress.py`).

No session is held across a call out: the database is read in one short session, the sources are asked with none
open, and what is to be kept is written in another (a slow source can never take the pool)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.categories import CategorySet
from app.core.config import Answerer, Settings, Source
from app.crud import categories as category_crud
from app.crud import examples as example_crud
from app.crud import tasks as task_crud
from app.db import Database
from app.models import Task
from app.services import recommend as rec
from app.services.ai import AIService
from app.services.answers import Classification
from app.services.egress import Endpoint, Redactor, task_text
from app.services.fallback import FallbackChain, NoSource
from app.services.imagemap import category_of
from app.services.ml_client import MLServiceClient, MLServiceError, MLServiceUnavailable
from app.services.resilience import SourceError
from app.services.vertex import VertexClient

log = logging.getLogger(__name__)
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


@dataclass(frozen=True)
class Scored:
    label: str
    score: float
    source: Source
    version: str | None = None  # the model version that answered, when the source says (ml-service does)


@dataclass(frozen=True)
class ImageLabels:
    label: str
    score: float
    top_k: list[tuple[str, float]]
    category: str | None
    source: Source


class Features:
    """The features of one app, with the parts they need (built once in the lifespan)."""

    def __init__(self, settings: Settings, db: Database, ml: MLServiceClient, vertex: VertexClient, ai: AIService,
                 chain: FallbackChain, catalog: list[rec.CatalogItem]) -> None:
        self.settings, self.db, self.ml, self.vertex, self.ai, self.chain = settings, db, ml, vertex, ai, chain
        self.catalog = catalog
        self.catalog_embeddings: np.ndarray | None = None  # on first use (ml-service or Vertex: the same model)
        self._later: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Cancel the work left for later (embeddings of new tasks)."""
        for t in list(self._later):
            t.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _classify(self, endpoint: Endpoint, model: str, text: str, redactor: Redactor,
                        managed: Callable[[], Awaitable[tuple[str, float]]],
                        labels: Sequence[str] | None = None) -> Scored:
        async def ml() -> Classification:
            return (await self.ml.classify_text(model, [text], top_k=1, labels=labels))[0]

        async def vertex() -> Classification:
            return (await self.vertex.classify_text(model, [text], redactor, top_k=1, labels=labels))[0]

        async def openai() -> Classification:
            label, score = await managed()
            return Classification(label=label, score=score)

        out, source = await self.chain.run({"ml-service": ml, "vertex": vertex, "openai": openai})
        return Scored(out.label, out.score, source, out.version)

    async def categories(self) -> CategorySet:
        """The household's categories: the fixed ones and those it added."""
        async with self.db.sessions() as s:
            return await category_crud.of_household(s, self.settings.household_id)

    async def categorize(self, text: str, redactor: Redactor, categories: CategorySet | None = None) -> Scored:
        """The household category of a task text (kitchen, garden, bills, ... or one the household added and the
        categorizer learnt): an answer outside the household's categories is the source's invalid answer. The
        OpenAI fallback chooses among the fixed ones (the household's own names stay in the house)."""
        async def managed() -> tuple[str, float]:
            out = await self.ai.categorize(text, redactor)
            return out.category, out.score

        labels = (categories or await self.categories()).all
        return await self._classify("categorize", self.settings.ml_category_model, text, redactor, managed, labels)

    async def intent(self, text: str, redactor: Redactor) -> Scored:
        """What a request to the home assistant wants (timer, shopping_list_update, ...)."""
        async def managed() -> tuple[str, float]:
            out = await self.ai.intent(text, redactor)
            return out.intent, out.score

        return await self._classify("intent", "intent-classifier", text, redactor, managed)

    async def add_task(self, fields: dict[str, Any], redactor: Redactor, categories: CategorySet | None = None
                       ) -> Task:
        """Store a new task, categorized first when it has no category; it is stored whatever the sources do
        (without a category when none can say), and embedded after the answer (`embed_later`). A category given by
        the user is kept as a labelled example too."""
        if fields.get("category"):
            fields["category_source"] = "user"
        else:
            try:
                found = await self.categorize(fields["title"], redactor.including([fields.get("assignee")]),
                                              categories)
                fields["category"], fields["category_source"] = found.label, found.source
            except (NoSource, SourceError, MLServiceError) as exc:
                log.info("task stored without a category: %s", exc)
            except Exception:  # whatever else failed, the task is the user's and is kept
                log.exception("task stored without a category after an unexpected error")
        async with self.db.sessions() as s:
            task = await task_crud.create(s, fields)
            if task.category_source == "user":
                await self.keep_example(s, task)
        self.embed_later(task)
        return task

    async def keep_example(self, db: AsyncSession, task: Task, model_category: str | None = None,
                           model_source: str | None = None) -> None:
        """The task's category, set by its user, as a labelled example of its text as the categorizer sees it (its
        title, `egress.task_text`); the model's answer it replaces beside it."""
        text = task_text("learn", "ml-service", task.title, task.notes)
        await example_crud.record(db, self.settings.household_id, task, text, model_category, model_source)

    def embed_later(self, task: Task) -> None:
        """Embed a new or changed task after the answer (ml-service only; if it cannot now, /similar and
        /recommend embed it when they need it)."""
        async def embed() -> None:
            try:
                await self.embed_tasks([task])
            except MLServiceUnavailable as exc:
                log.info("task %d not embedded now: %s", task.id, exc)

        self._spawn(embed())

    async def embed_tasks(self, tasks: list[Task]) -> None:
        """Give tasks whose embedding is missing or stale one (ml-service only; raises MLServiceUnavailable)."""
        stale = [(t.id, t.text) for t in tasks if t.embedding is None or t.embedded_text != t.text]
        if stale:
            vectors = await self.ml.embed([text for _, text in stale])
            async with self.db.sessions() as s:
                await task_crud.store_embeddings(s, [(i, text, v) for (i, text), v in zip(stale, vectors, strict=True)])

    async def _embedded(self, endpoint: Endpoint, dim: int, source: Source = "ml-service",
                        borrowed: Embed | None = None) -> tuple[list[int], np.ndarray]:
        """The ids of the household's tasks and their embeddings (`dim` wide) as one matrix, embedding the stale
        ones first (ml-service's are stored). With `borrowed` (a managed source's, of what the policy lets it see)
        stale tasks are embedded for this answer only, not stored, and at most FALLBACK_MAX_TASKS of them (the most
        relevant first): ml-service embeds their real text once it is back."""
        async with self.db.sessions() as s:
            rows = await task_crud.embedding_rows(s)
        stale = [r for r in rows if r.embedding is None or len(r.embedding) != 4 * dim
                 or r.embedded_text != Task.text_of(r.title, r.notes)]
        fresh: dict[int, np.ndarray] = {}
        if stale and borrowed is None:
            items = [(r.id, Task.text_of(r.title, r.notes)) for r in stale]
            vectors = await self.ml.embed([text for _, text in items])
            async with self.db.sessions() as s:
                await task_crud.store_embeddings(s, [(i, t, v) for (i, t), v in zip(items, vectors, strict=True)])
            fresh = {i: np.asarray(v, dtype=np.float32) for (i, _), v in zip(items, vectors, strict=True)}
        elif stale and borrowed is not None:
            picked = stale[:self.settings.fallback_max_tasks]  # rows come the most relevant first
            vectors = await borrowed([task_text(endpoint, source, r.title, r.notes) for r in picked])
            fresh = {r.id: np.asarray(v, dtype=np.float32) for r, v in zip(picked, vectors, strict=True)}
        stale_ids = {r.id for r in stale}
        found = [r for r in rows if r.id not in stale_ids]
        ids = [r.id for r in found] + list(fresh)
        if not ids:
            return [], np.zeros((0, dim), dtype=np.float32)
        stored = np.frombuffer(b"".join(r.embedding for r in found if r.embedding is not None), dtype="<f4")
        return ids, np.vstack([stored.reshape(len(found), dim), *fresh.values()])

    async def _candidates(self) -> list[Task]:
        """The tasks a managed API may be shown: at most FALLBACK_MAX_TASKS, the most relevant first, and no more
        than FALLBACK_MAX_CHARS of titles (so a big household cannot make a huge prompt)."""
        async with self.db.sessions() as s:
            tasks = list(await task_crud.relevant_first(s, self.settings.fallback_max_tasks))
        out, chars = [], 0
        for t in tasks:
            chars += len(t.title) + 1
            if chars > self.settings.fallback_max_chars:
                break
            out.append(t)
        return out

    async def similar(self, text: str, limit: int, redactor: Redactor) -> tuple[list[tuple[Task, float]], Answerer]:
        """The household's tasks most like `text`: cosine over the stored embeddings (one matrix-vector product)
        with ml-service's or Vertex's query embedding, or the OpenAI fallback's ranking of their titles."""
        async with self.db.sessions() as s:
            if await task_crud.count(s) == 0:
                return [], "none"

        async def by_embedding(embed: Embed, source: Source, borrowed: bool) -> list[tuple[Task, float]]:
            query = np.asarray((await embed([text]))[0], dtype=np.float32)
            ids, matrix = await self._embedded("similar", len(query), source, embed if borrowed else None)
            scores = matrix @ query
            order = np.argsort(-scores)[:limit]
            async with self.db.sessions() as s:
                tasks = await task_crud.by_ids(s, [ids[i] for i in order])
            return [(tasks[ids[i]], float(scores[i])) for i in order if ids[i] in tasks]

        async def ml() -> list[tuple[Task, float]]:
            return await by_embedding(self.ml.embed, "ml-service", borrowed=False)

        async def vertex() -> list[tuple[Task, float]]:
            return await by_embedding(lambda texts: self.vertex.embed(texts, redactor), "vertex", borrowed=True)

        async def openai() -> list[tuple[Task, float]]:
            tasks = await self._candidates()
            picked = await self.ai.similar(text, [task_text("similar", "openai", t.title, t.notes) for t in tasks],
                                           limit, redactor)
            return [(tasks[i], 1.0 - rank / max(1, len(picked))) for rank, i in enumerate(picked)]

        found, source = await self.chain.run({"ml-service": ml, "vertex": vertex, "openai": openai})
        return found, source

    async def recommend(self, limit: int, redactor: Redactor) -> tuple[list[rec.Recommendation], Answerer]:
        """Tasks to suggest next, from the catalog of common household tasks, each with its reason; from what is
        stored when nothing needs a source (an empty household; every task embedded and the catalog too)."""
        now = dt.datetime.now(dt.UTC)
        async with self.db.sessions() as s:
            rows = await task_crud.embedding_rows(s)
        if not rows:
            return rec.rank(self.catalog, np.zeros((len(self.catalog), 0)), [], now, limit), "stored"

        async def rank(embed: Embed | None, source: Source) -> list[rec.Recommendation]:
            if self.catalog_embeddings is None:  # the catalog is not the household's: nothing personal in it
                assert embed is not None
                self.catalog_embeddings = np.asarray(await embed([c.title for c in self.catalog]), dtype=np.float32)
            dim = self.catalog_embeddings.shape[1]
            borrowed = embed if source != "ml-service" else None
            ids, matrix = await self._embedded("recommend", dim, source, borrowed)
            vectors = dict(zip(ids, matrix, strict=True))
            household = [rec.HouseholdTask(t.title, t.category, vectors[t.id], t.done, _aware(t.done_at))
                         for t in await self._household(ids)]
            return rec.rank(self.catalog, self.catalog_embeddings, household, now, limit)

        stale = any(r.embedding is None or r.embedded_text != Task.text_of(r.title, r.notes) for r in rows)
        if self.catalog_embeddings is not None and not stale:
            try:
                return await rank(None, "ml-service"), "stored"  # nothing to embed: no source is asked
            except SourceError:
                pass  # a task came meanwhile and could not be embedded: the sources decide

        async def ml() -> list[rec.Recommendation]:
            return await rank(self.ml.embed, "ml-service")

        async def vertex() -> list[rec.Recommendation]:
            return await rank(lambda texts: self.vertex.embed(texts, redactor), "vertex")

        async def openai() -> list[rec.Recommendation]:
            tasks = await self._candidates()
            picks = await self.ai.recommend([task_text("recommend", "openai", t.title, t.notes) for t in tasks],
                                            [c.title for c in self.catalog], limit, redactor)
            return [rec.Recommendation(self.catalog[p.index].title, self.catalog[p.index].category,
                                       self.catalog[p.index].every_days, 1.0 - k / max(1, len(picks)), p.reason)
                    for k, p in enumerate(picks)]

        found, source = await self.chain.run({"ml-service": ml, "vertex": vertex, "openai": openai})
        return found, source

    async def _household(self, ids: list[int]) -> list[Task]:
        async with self.db.sessions() as s:
            tasks = await task_crud.by_ids(s, ids)
        return [tasks[i] for i in ids if i in tasks]

    async def classify_image(self, image: bytes, top_k: int = 5) -> ImageLabels:
        """ml-service only: photos never leave the house (neither managed source gets them)."""
        try:
            out = await self.ml.classify_image(image, top_k)
        except MLServiceUnavailable as exc:
            raise NoSource(f"image classification needs ml-service, which is unavailable ({exc}); photos are "
                           "never sent to a managed API") from None
        category = next((c for t in out.top_k if (c := category_of(t.label)) is not None), category_of(out.label))
        return ImageLabels(out.label, out.score, [(t.label, t.score) for t in out.top_k], category, "ml-service")


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t
