"""Unit-tier fixtures: a fresh model repository directory per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    """An empty model repository (MODEL_CACHE_DIR) for one test."""
    root = tmp_path / "models"
    root.mkdir()
    return root


@pytest.fixture
def make_task(repo_root, make_model):
    """`make_task(manifest_dict, labels=None) -> Task`: a loaded task for a model written to disk."""
    from ml_service.repository import ModelRepository
    from ml_service.tasks import create_task

    def _make(manifest, labels=None, name="m"):
        make_model(repo_root, name, manifest, labels=labels)
        entry = ModelRepository(repo_root).scan()[name]
        assert entry.valid, entry.error
        mv = entry.versions[entry.candidates[-1]]
        task = create_task(entry, mv, mv.manifest)
        task.load()
        return task

    return _make


def native_items(task, data):
    """What the service's own API makes of `data` for this task's model, checked as the data plane checks it:
    `(items, top_k)`."""
    from ml_service.codecs import native
    from ml_service.tasks import model_spec

    request, top_k = native.decode(native.request("m", data), model_spec(task.entry, task.version))
    task.check_count(len(request.items), request.where)
    items = list(request.items)
    for i, item in enumerate(items):
        task.check_item(item, request.label(i))
    return items, top_k


def native_output(task, result, top_k=5):
    """One entry of the service's own API's `outputs` for this task's model."""
    from ml_service.codecs import native
    from ml_service.dataplane import InferenceResult
    from ml_service.tasks import model_spec

    return native.encode(InferenceResult(model_spec(task.entry, task.version), [result]), top_k)["outputs"][0]
