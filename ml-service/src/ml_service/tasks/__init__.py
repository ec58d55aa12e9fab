"""Tasks by name: what turns a model's raw items into feeds and its outputs into answers."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ml_service.dataplane import ItemResult, ModelSpec, Signature
from ml_service.manifest import Manifest
from ml_service.repository import ModelEntry, ModelVersion
from ml_service.tasks.base import ModelTask, PostStep, Prepared, RequestBudget
from ml_service.tasks.classify import Classifier
from ml_service.tasks.image import ImageClassificationTask
from ml_service.tasks.tensor import TensorTask
from ml_service.tasks.text import EmbeddingTask, TextClassificationTask, TextTask

TASKS: dict[str, type[ModelTask]] = {
    "embedding": EmbeddingTask,
    "text-classification": TextClassificationTask,
    "image-classification": ImageClassificationTask,
    "tensor": TensorTask,
}


def create_task(entry: ModelEntry, version: ModelVersion, manifest: Manifest) -> ModelTask:
    """The task object for a model version."""
    return TASKS[manifest.task](entry, version, manifest)


def task_signature(manifest: Manifest, labels: Sequence[str]) -> Signature:
    """What a model declares to the protocols, from its manifest alone."""
    return TASKS[manifest.task].signature(manifest, labels)


def model_spec(entry: ModelEntry, mv: ModelVersion) -> ModelSpec:
    """What the protocols need to know of a model version, from its manifest and labels (nothing loaded)."""
    m = mv.manifest
    assert m is not None, "a version is scanned with its manifest"
    try:
        created = int(os.stat(mv.path).st_mtime)
    except OSError:
        created = 0
    return ModelSpec(name=entry.name, version=mv.number, task=m.task, runtime=m.runtime,
                     signature=task_signature(m, mv.labels), limits=m.limits, labels=mv.labels,
                     normalized=m.postprocessing.normalize, created=created, fingerprint=mv.fingerprint)


__all__ = ["TASKS", "Classifier", "ItemResult", "ModelTask", "PostStep", "Prepared", "RequestBudget", "TextTask",
           "create_task", "model_spec", "task_signature"]
