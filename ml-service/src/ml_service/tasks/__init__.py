"""Tasks by name."""

from __future__ import annotations

from ml_service.manifest import Manifest
from ml_service.repository import ModelEntry, ModelVersion
from ml_service.tasks.base import ItemResult, Options, Prepared, Task
from ml_service.tasks.image import ImageClassificationTask
from ml_service.tasks.tensor import TensorTask
from ml_service.tasks.text import EmbeddingTask, TextClassificationTask, TextTask

TASKS: dict[str, type[Task]] = {
    "embedding": EmbeddingTask,
    "text-classification": TextClassificationTask,
    "image-classification": ImageClassificationTask,
    "tensor": TensorTask,
}


def create_task(entry: ModelEntry, version: ModelVersion, manifest: Manifest) -> Task:
    """The task object for a model version."""
    return TASKS[manifest.task](entry, version, manifest)


__all__ = ["TASKS", "ItemResult", "Options", "Prepared", "Task", "TextTask", "create_task"]
