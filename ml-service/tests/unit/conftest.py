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
        task = create_task(entry, entry.version(None), entry.manifest)
        task.load()
        return task

    return _make
