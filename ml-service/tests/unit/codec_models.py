"""In-memory model entries and request helpers shared by the codec tests (nothing on disk is read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ml_service.codecs import native, v2
from ml_service.dataplane import InferenceResult, ItemResult, ModelSpec
from ml_service.manifest import Manifest
from ml_service.repository import ModelEntry, ModelVersion
from ml_service.tasks import create_task, model_spec

IDS = [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}]


def entry_for(task: str, labels: list[str] | None = None, **manifest: Any) -> ModelEntry:
    """A valid in-memory model entry (nothing on disk is read)."""
    base: dict[str, Any] = {"task": task}
    if task in ("embedding", "text-classification"):
        base["preprocessing"] = {"tokenizer": "tokenizer.json"}
    if task in ("text-classification", "image-classification"):
        base["labels"] = "labels.txt"
    base.update(manifest)
    m = Manifest.model_validate(base)
    path = Path("/nonexistent/m")
    mv = ModelVersion(1, path / "1", labels=tuple(labels or ()), manifest=m)
    return ModelEntry(name="m", path=path, manifest=m, versions={1: mv})


def task_for(entry: ModelEntry) -> Any:
    assert entry.manifest is not None
    return create_task(entry, entry.versions[1], entry.manifest)


def spec_of(entry: ModelEntry) -> ModelSpec:
    return model_spec(entry, entry.versions[1])


def items_of(entry: ModelEntry, req: v2.InferRequest) -> list[Any]:
    """The items a V2 request decodes to, checked as the data plane checks them (count, then each item)."""
    request = v2.decode(req, spec_of(entry))
    task = task_for(entry)
    task.check_count(len(request.items), request.where)
    items = list(request.items)
    for i, item in enumerate(items):
        task.check_item(item, request.label(i))
    return items


def result_of(entry: ModelEntry, rows: list[dict[str, Any]]) -> InferenceResult:
    return InferenceResult(spec_of(entry), [ItemResult(r, {}) for r in rows])


EMB = entry_for("embedding", inputs=IDS, outputs=[{"name": "sentence_embedding", "dtype": "float32",
                                                    "shape": [-1, 384]}],
                postprocessing={"output": "sentence_embedding"})
CLS = entry_for("text-classification", labels=["a", "b", "c"])
IMG = entry_for("image-classification", labels=["x", "y"], limits={"max_items": 4})
TENSOR = entry_for("tensor", inputs=[{"name": "x", "dtype": "float32", "shape": [-1, 4]},
                                     {"name": "flag", "dtype": "bool", "shape": [-1]}],
                   outputs=[{"name": "y", "dtype": "int32", "shape": [-1, 2]}], limits={"max_tensor_elements": 1000})


def body_of(doc: dict[str, Any], *blobs: bytes) -> tuple[bytes, str | None]:
    head = orjson.dumps(doc)
    if not blobs:
        return head, None
    return head + b"".join(blobs), str(len(head))


def native_body(doc: Any) -> native.InferenceBody:
    return native.parse_request(orjson.dumps(doc))


def parse(entry: ModelEntry, doc: dict[str, Any], *blobs: bytes) -> v2.InferRequest:
    body, header = body_of(doc, *blobs)
    return v2.parse_infer_request(body, header, spec_of(entry).signature)

