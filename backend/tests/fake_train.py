"""A local stand-in for ml-service's training contract (ml-service's own side is built in parallel; the e2e test
`e2e/test_learn.py` runs the real one): `POST /models/{name}/train`, `GET /models/jobs/{id}`, `POST
/models/{name}/rollback`, and `POST /inference` for the categorizer, whose versions learn the examples by heart.
Its `mode`: `ok`, `slow` (a job runs until `finish()`), `busy` (409 `training_in_progress`), `reject` (422),
`no_route` (404 on the training routes, as an ml-service without them), `fail` (the job fails), `not_better`
(the job succeeds, nothing is published), `alien` (categorize answers a label nobody has)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.servers import ThreadedServer

BASE = {"descale the kettle": "kitchen", "water the plants": "garden"}  # what version 2 answers


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class FakeTrainer(ThreadedServer):
    """Set `ML_SERVICE_URL` to `url`; `trained` holds the train bodies received, `versions` the published ones."""

    def __init__(self, mode: str = "ok") -> None:
        app = FastAPI()
        super().__init__(app, mode)
        self.trained: list[dict[str, Any]] = []
        self.versions: list[tuple[str, dict[str, str]]] = [("2", dict(BASE))]  # default last
        self.jobs: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._release = False

        @app.post("/inference")
        async def inference(request: Request) -> Any:
            body = await request.json()
            self.requests.append({"headers": dict(request.headers), "body": body})
            version, known = self.versions[-1]
            labels = ["spaceship" if self.mode == "alien" else known.get(t.lower(), "kitchen")
                      for t in body["data"]["texts"]]
            return {"model": body["model_type"], "version": version, "unexpected": True,
                    "outputs": [{"label": lb, "score": 0.9, "top_k": [{"label": lb, "score": 0.9}]} for lb in labels]}

        @app.post("/models/{name}/train", status_code=202)
        async def train(name: str, request: Request) -> Any:
            body = await request.json()
            self.requests.append({"headers": dict(request.headers), "body": body, "path": request.url.path})
            if self.mode == "no_route":
                return _error(404, "not_found", "no route POST /models/task-category/train")
            if self.mode == "busy" or any(j["state"] in ("queued", "running") for j in self.jobs.values()):
                return _error(409, "training_in_progress", "a training job runs for this model")
            if self.mode == "reject":
                return _error(422, "invalid_input", "examples.0.label: must not be blank")
            self.trained.append(body)
            job_id = f"job-{next(self._ids)}"
            self.jobs[job_id] = {"job_id": job_id, "model": name, "state": "queued", "error": None, "report": None,
                                 "published": False, "version": None, "live": False, "extra": {"ignored": 1}}
            asyncio.get_running_loop().create_task(self._run(job_id, body))
            return {"job_id": job_id, "model": name, "state": "queued"}

        @app.get("/models/jobs/{job_id}")
        async def job(job_id: str) -> Any:
            if self.mode == "no_route":
                return _error(404, "not_found", "no route")
            if job_id not in self.jobs:
                return _error(404, "job_not_found", f"no job {job_id}")
            return self.jobs[job_id]

        @app.post("/models/{name}/rollback")
        async def rollback(name: str) -> Any:
            if len(self.versions) < 2:
                return _error(409, "nothing_to_roll_back", "no earlier version to go back to")
            gone, _ = self.versions.pop()
            return {"model": name, "default_version": int(self.versions[-1][0]), "rolled_back": gone}

    def finish(self) -> None:
        """Let a `slow` job end."""
        self._release = True

    async def _run(self, job_id: str, body: dict[str, Any]) -> None:
        job = self.jobs[job_id]
        await asyncio.sleep(0.1)
        job["state"] = "running"
        while self.mode == "slow" and not self._release and not self._stopping:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        if self.mode == "fail":
            job.update(state="failed", error="the examples hold one label only")
            return
        examples = {e["text"].lower(): e["label"] for e in body["examples"]}
        labels = sorted({*BASE.values(), *examples.values()})
        published = self.mode != "not_better"
        version = str(int(self.versions[-1][0]) + 1)
        job.update(state="succeeded", published=published, version=version if published else None, live=published,
                   report={"seed": body["seed"], "holdout": body["holdout"], "n_train": 8, "n_test": 2,
                           "labels": labels, "new_labels": sorted(set(labels) - set(BASE.values())),
                           "new": {"accuracy": 0.95, "macro_f1": 0.94, "per_label": {}},
                           "served": {"version": self.versions[-1][0], "accuracy": 0.9, "macro_f1": 0.9,
                                      "per_label": {}},
                           "new_on_served_labels": {"accuracy": 0.95, "macro_f1": 0.94}, "agreement": 0.97,
                           "decision": "published" if published else "not_better"})
        if published:
            self.versions.append((version, {**self.versions[-1][1], **examples}))
