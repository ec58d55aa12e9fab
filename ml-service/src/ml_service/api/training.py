"""Admin routes that change what a model answers: train a new head version from examples, read a training job,
roll back to the previous version."""

from __future__ import annotations

from ml_service.api.http import Call, Reply, json_reply
from ml_service.api.router import Route
from ml_service.codecs import native
from ml_service.training.examples import Example
from ml_service.training.trainer import Options


async def train(call: Call) -> Reply:
    """Train a classifier head on the shared encoder from labelled examples (with, by default, the examples the served
    version was trained from), compare it with the served version on the same held-out texts, and publish it as the
    next version if it is not worse (or `force`). Answers 202 with a job id at once (bad input is a 4xx before any
    job starts); GET /models/jobs/{job_id} gives its state and report."""
    req = native.parse_train(call.body)
    options = Options(include_base=req.include_base, holdout=req.holdout, seed=req.seed, force=req.force,
                      tolerance=call.settings.train_tolerance if req.tolerance is None else req.tolerance)
    job = call.training.submit(call.params["name"], [Example(e.text, e.label) for e in req.examples], options)
    return json_reply({"job_id": job.job_id, "model": job.model, "state": job.state}, 202)


async def job(call: Call) -> Reply:
    """A training job: its state, and once done its report, the version it published and whether it is live."""
    return json_reply(call.training.get(call.params["job_id"]).as_json())


async def rollback(call: Call) -> Reply:
    """Make the previous working version the default at once; the current one is held back (still pinnable where the
    version policy allows) until a newer version is published and goes live. 409 without a previous version."""
    name, default, rolled_back = await call.rollout.rollback(call.params["name"])
    return json_reply({"model": name, "default_version": str(default), "rolled_back": str(rolled_back)})


ROUTES = [
    Route("POST", "/models/{name}/train", train, native.PROTOCOL, "train_model", body=native.TrainBody,
          response="TrainAccepted", status=202, errors=(400, 401, 404, 409, 413, 422, 503),
          max_body="train_max_body_bytes", tag="models"),
    Route("GET", "/models/jobs/{job_id}", job, native.PROTOCOL, "training_job", response="TrainingJob",
          errors=(401, 404), tag="models"),
    Route("POST", "/models/{name}/rollback", rollback, native.PROTOCOL, "rollback_model", body_required=False,
          response="RolledBack", errors=(401, 404, 409, 503), tag="models"),
]
