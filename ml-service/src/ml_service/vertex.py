"""Vertex AI custom-container mode (set by Vertex's `AIP_*` variables): its routes, the model it serves, and the
model repository copied from a `gs://` AIP_STORAGE_URI."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ml_service.repository import ModelRepository
from ml_service.settings import Settings

log = logging.getLogger(__name__)
DEFAULT_MODEL = "text-embedding"


class StorageError(Exception):
    """The model repository could not be read from AIP_STORAGE_URI."""


def base_route(settings: Settings) -> str:
    """Vertex's default route of a deployed model: `/v1/endpoints/{endpoint}/deployedModels/{deployed model}`."""
    return f"/v1/endpoints/{settings.aip_endpoint_id}/deployedModels/{settings.aip_deployed_model_id}"


def health_route(settings: Settings) -> str:
    """Where Vertex probes the container (AIP_HEALTH_ROUTE)."""
    return settings.aip_health_route or base_route(settings)


def predict_routes(settings: Settings) -> list[str]:
    """Where predictions arrive: AIP_PREDICT_ROUTE, else the default route with and without `:predict`."""
    if settings.aip_predict_route:
        return [settings.aip_predict_route]
    base = base_route(settings)
    return [base, base + ":predict"]


def served_model(settings: Settings, repository: ModelRepository) -> str:
    """ML_SERVICE_VERTEX_MODEL, else the repository's only valid model, else `text-embedding`."""
    if settings.vertex_model:
        return settings.vertex_model
    valid = [n for n, e in repository.entries.items() if e.valid]
    return valid[0] if len(valid) == 1 else DEFAULT_MODEL


class Deployment:
    """Vertex mode's deployment: the model predictions use, chosen once the repository has been read."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: str | None = None

    def choose(self, repository: ModelRepository) -> str:
        self.model = served_model(self.settings, repository)
        log.info("Vertex AI mode: predictions use %s", self.model)
        return self.model


async def prepare_storage(settings: Settings) -> str | None:
    """Vertex mode's start-up step, before any model is read (as KServe's storage initializer): copy a gs://
    AIP_STORAGE_URI to the local repository and check it. Returns why it failed, or None."""
    uri = (settings.aip_storage_uri or "").strip()
    try:
        if uri.startswith("gs://"):
            await asyncio.to_thread(copy_from_gcs, uri, settings.model_cache_dir)
        check_repository(settings.model_cache_dir)
    except StorageError as exc:
        log.error("AIP_STORAGE_URI: %s", exc)
        return str(exc)
    except Exception as exc:  # the client's own errors (credentials, network, 403, ...)
        log.error("AIP_STORAGE_URI: could not copy %s: %s", uri, exc)
        return f"could not copy {uri}: {type(exc).__name__} (see the log)"
    return None


def check_repository(root: Path) -> None:
    """AIP_STORAGE_URI must name a repository (a folder per model), not one model's folder."""
    if (root / "model.toml").is_file():
        raise StorageError(f"{root} holds one model (its model.toml is at the top); AIP_STORAGE_URI must be a "
                           "model repository with a folder per model: upload the folder above it")


def copy_from_gcs(uri: str, dest: Path, client: Any = None, workers: int = 8) -> int:
    """Copy every object under a `gs://bucket/prefix` to `dest` and return how many: into a temporary folder
    first, which then replaces `dest` whole, so a half copy is never read. The client is google-cloud-storage's
    (Application Default Credentials on Google Cloud; anonymous against STORAGE_EMULATOR_HOST)."""
    if not uri.startswith("gs://") or len(uri) <= 5:
        raise StorageError(f"not a gs:// URI: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    if client is None:
        try:
            from google.cloud import storage
        except ImportError:
            raise StorageError("a gs:// AIP_STORAGE_URI needs google-cloud-storage: pip install "
                               "'ml-service[vertex]'") from None
        client = storage.Client(project=os.environ.get("CLOUD_ML_PROJECT_ID"))
    blobs = [b for b in client.list_blobs(bucket, prefix=prefix) if not b.name.endswith("/")]
    if not blobs:
        raise StorageError(f"no objects under {uri}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.incoming-", dir=dest.parent))
    try:
        jobs = []
        for blob in blobs:
            target = (tmp / blob.name[len(prefix):]).resolve()
            if not target.is_relative_to(tmp.resolve()) or target == tmp.resolve():
                raise StorageError(f"object name {blob.name!r} leaves the model folder; refusing it")
            target.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((blob, target))
        with ThreadPoolExecutor(max(1, min(workers, len(jobs)))) as pool:
            list(pool.map(lambda job: job[0].download_to_filename(str(job[1])), jobs))
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("copied %d file(s) from %s to %s", len(jobs), uri, dest)
    return len(jobs)


__all__ = ["DEFAULT_MODEL", "Deployment", "StorageError", "base_route", "check_repository", "copy_from_gcs",
           "health_route", "predict_routes", "prepare_storage", "served_model"]
