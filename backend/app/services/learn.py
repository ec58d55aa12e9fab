"""The app's loop: the household's corrections (labelled examples, `crud/examples.py`) are sent to ml-service's
train operation with the base set the served categorizer was built from (`include_base`: ml-service adds those
itself), the job is waited for, and its report says whether the new version went live (ml-service publishes it
only when it is not worse on the held-out texts). Rollback makes the version before it the default again.

One learn at a time per backend; it may run for minutes, so it is bounded by LEARN_TIMEOUT_S, not by the request's
budget. There is no fallback: the managed APIs cannot be trained. No answer of the categorizer is cached anywhere
in the backend, so a new version (or a rollback) is what the next categorize gets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from app.core.config import Settings
from app.crud import examples as example_crud
from app.db import Database
from app.services.answers import RolledBack, TrainJob
from app.services.ml_client import MLServiceClient, MLServiceRejected
from app.services.resilience import SourceError, outside_request_budget

log = logging.getLogger(__name__)
T = TypeVar("T")
HOLDOUT, SEED = 0.2, 0  # the same split every time, so two reports compare the same held-out texts


class LearnError(Exception):
    """Learning (or rolling back) could not be done; `status`, `code` and a message safe to show."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Learned:
    """What `learn` answers: the job as it ended (or as it stood when LEARN_TIMEOUT_S ran out: `finished` false)."""

    job_id: str
    state: str
    published: bool
    version: str | None
    live: bool
    report: dict[str, Any] | None
    error: str | None
    examples: int

    @property
    def finished(self) -> bool:
        return self.state not in ("queued", "running")


class Learner:
    """Sends the household's examples to ml-service's train operation; one learn at a time."""

    def __init__(self, settings: Settings, db: Database, ml: MLServiceClient, poll_s: tuple[float, float] = (0.2, 2.0)
                 ) -> None:
        self.settings, self.db, self.ml = settings, db, ml
        self.model, self.household = settings.ml_category_model, settings.household_id
        self.poll_s = poll_s  # the first wait between two looks at the job, and the longest
        self._lock = asyncio.Lock()
        self._corrections = 0  # since the last background learn started
        self._later: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._lock.locked()

    async def learn(self, force: bool = False) -> Learned:
        """Train on the household's examples (with the base set), wait for the job (at most LEARN_TIMEOUT_S) and
        answer how it ended. LearnError: 409 when a learn runs or there is nothing to learn from, 503 when
        ml-service cannot train, ml-service's own 4xx when it refuses the examples."""
        if self._lock.locked():
            raise LearnError(409, "learn_in_progress", "a learn is running already; try again when it has ended")
        async with self._lock:
            with outside_request_budget():
                return await self._learn(force)

    async def _learn(self, force: bool) -> Learned:
        async with self.db.sessions() as s:
            examples = [(e.text, e.label) for e in await example_crud.of_household(s, self.household)]
        if not examples:
            raise LearnError(409, "no_examples", "nothing to learn from yet: set or change some tasks' categories "
                                                 "first")
        started = await self._ask(self.ml.train(self.model, examples, holdout=HOLDOUT, seed=SEED, force=force))
        log.info("learning: job %s on %d examples of the household and the base set", started.job_id, len(examples))
        deadline = time.monotonic() + self.settings.learn_timeout_s
        wait = self.poll_s[0]
        job: TrainJob | None = None
        while True:
            try:
                job = await self._ask(self.ml.job(started.job_id), on_404=LearnError(
                    503, "job_lost", f"ml-service lost training job {started.job_id!r} (it may have restarted)"))
            except LearnError as exc:
                if exc.status != 503 or exc.code == "job_lost" or time.monotonic() + wait >= deadline:
                    raise
                log.info("learning: job %s not seen now (%s); looking again", started.job_id, exc.message)
            if (job is not None and job.finished) or time.monotonic() + wait >= deadline:
                break
            await asyncio.sleep(wait)
            wait = min(self.poll_s[1], wait * 1.5)
        assert job is not None
        log.info("learning: job %s %s, published %s, version %s, live %s", job.job_id, job.state, job.published,
                 job.version, job.live)
        return Learned(job.job_id, job.state, job.published, job.version, job.live, job.report, job.error,
                       len(examples))

    async def job(self, job_id: str) -> TrainJob:
        """A training job as ml-service has it now."""
        return await self._ask(self.ml.job(job_id), on_404=LearnError(404, "not_found",
                                                                      f"ml-service has no training job {job_id!r}"))

    async def rollback(self) -> RolledBack:
        """The categorizer's previous version the default again; 409 when there is none to go back to."""
        return await self._ask(self.ml.rollback(self.model))

    async def _ask(self, call: Awaitable[T], on_404: LearnError | None = None) -> T:
        """ml-service's failures as LearnErrors (a 404 as `on_404` when given: a job it does not know)."""
        try:
            return await call
        except SourceError as exc:
            raise LearnError(503, "ml_service_unavailable", f"ml-service cannot train now: {exc}") from None
        except MLServiceRejected as exc:
            if exc.status == 404 and on_404 is not None:
                raise on_404 from None
            if exc.status == 404:
                raise LearnError(503, "learn_unavailable", f"ml-service cannot train or roll back {self.model!r} "
                                 f"({exc.code}: {exc.message})") from None
            raise LearnError(exc.status, exc.code, exc.message) from None

    def corrected(self) -> None:
        """A user set or changed a task's category: every LEARN_AFTER_CORRECTIONS of them start a learn in the
        background (never waited for by the user's request)."""
        every = self.settings.learn_after_corrections
        if every <= 0:
            return
        self._corrections += 1
        if self._corrections >= every and not self._lock.locked():
            self._corrections = 0
            self._spawn(self._background())

    async def _background(self) -> None:
        try:
            await self.learn()
        except LearnError as exc:
            log.warning("background learn did not run: %s (%s)", exc.message, exc.code)
        except Exception as exc:  # a background task has nobody to answer; one line, no traceback, no secret
            log.warning("background learn failed: %s", type(exc).__name__)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def close(self) -> None:
        """Stop a background learn (ml-service's job runs on; the next learn finds it in progress)."""
        for t in list(self._later):
            t.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)
