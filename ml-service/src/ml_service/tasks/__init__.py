"""Tasks by name: what turns a model's raw items into feeds and its outputs into answers."""

from __future__ import annotations

from collections.abc import Sequence

from ml_service.dataplane import ItemResult, Signature
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


__all__ = ["TASKS", "Classifier", "ItemResult", "ModelTask", "PostStep", "Prepared", "RequestBudget", "TextTask",
           "create_task", "task_signature"]
