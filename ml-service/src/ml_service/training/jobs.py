"""Training jobs of the running service (`POST /models/{name}/train`): checked at once, then run in the background
(embedding through the data plane, fitting and publishing off the event loop), one at a time per model; their
state and report can be read by id, and the last `KEEP` finished ones are kept."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ml_service.errors import JobNotFound, MLServiceError, TrainingInProgress
from ml_service.training.examples import Example
from ml_service.training.trainer import Options, Plan, Trainer

log = logging.getLogger(__name__)
KEEP = 100
State = Literal["queued", "running", "succeeded", "failed"]


@dataclass
class Job:
    """One training: its state, and once done its report, the version it published and whether that is live."""

    job_id: str
    model: str
    state: State = "queued"
    error: str | None = None
    report: dict[str, Any] | None = None
    published: bool = False
    version: int | None = None
    live: bool = False
    created: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "model": self.model, "state": self.state, "error": self.error,
                "report": self.report, "published": self.published,
                "version": str(self.version) if self.version is not None else None, "live": self.live}


class TrainingJobs:
    """The service's training jobs."""

    def __init__(self, trainer: Trainer, keep: int = KEEP) -> None:
        self.trainer = trainer
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def submit(self, name: str, examples: Sequence[Example], options: Options) -> Job:
        """Check the training (a 4xx now, before any job) and start it; 409 while the model has one queued or
        running."""
        plan = self.trainer.plan(name, examples, options)
        if any(j.model == plan.model and j.state in ("queued", "running") for j in self._jobs.values()):
            raise TrainingInProgress(f"model '{plan.model}' has a training job in progress; wait for it to finish")
        job = Job(secrets.token_hex(8), plan.model)
        self._jobs[job.job_id] = job
        self._tasks[job.job_id] = asyncio.create_task(self._run(job, plan))
        self._trim()
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no training job {job_id!r} (finished jobs are kept for the last {self.keep})")
        return job

    def _trim(self) -> None:
        done = [k for k, j in self._jobs.items() if j.state in ("succeeded", "failed")]
        for k in done[:max(0, len(self._jobs) - self.keep)]:
            del self._jobs[k]

    async def _run(self, job: Job, plan: Plan) -> None:
        job.state = "running"
        try:
            outcome = await self.trainer.run(plan)
            job.report, job.published, job.version = outcome.report, outcome.published, outcome.version
            if outcome.version is not None:
                job.live = await self.trainer.go_live(plan.model, outcome.version,
                                                      self.trainer.settings.train_live_timeout_s)
                if not job.live:
                    job.error = (f"version {outcome.version} was published but is not the default (see GET /models "
                                 "for its state)")
            job.state = "succeeded"
        except MLServiceError as exc:
            job.state, job.error = "failed", exc.message
            log.warning("training job %s for %s failed: %s", job.job_id, job.model, exc.message)
        except Exception:
            job.state, job.error = "failed", "internal error; see the service log"
            log.exception("training job %s for %s failed", job.job_id, job.model)
        finally:
            self._tasks.pop(job.job_id, None)
            self._trim()

    async def close(self) -> None:
        """Cancel what is still running (shutdown)."""
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


__all__ = ["Job", "TrainingJobs"]
