"""Raw tensors: named inputs in, named outputs out; the first dimension is the batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml_service.dataplane import InputInfo, OutputInfo, Signature
from ml_service.errors import InvalidInput
from ml_service.manifest import Manifest, TensorSpec
from ml_service.tasks.base import ModelTask, Prepared, RequestBudget
from ml_service.tensors import MANIFEST_TO_V2, V2_DTYPES


def _shape_ok(shape: tuple[int, ...], spec: TensorSpec) -> bool:
    """Whether a row's shape fits the spec without its batch dimension."""
    dims = spec.shape[1:]
    return len(shape) == len(dims) and all(d == -1 or d == s for d, s in zip(dims, shape, strict=True))


class TensorTask(ModelTask):
    """Each item is one row: `{input name: array without the batch dimension}`."""

    name = "tensor"

    @classmethod
    def signature(cls, manifest: Manifest, labels: Sequence[str]) -> Signature:
        cap = manifest.limits.max_tensor_elements
        return Signature(
            tuple(InputInfo(t.name, MANIFEST_TO_V2[t.dtype], tuple(t.shape), "tensor", cap) for t in manifest.inputs),
            tuple(OutputInfo(t.name, MANIFEST_TO_V2[t.dtype], tuple(t.shape)) for t in manifest.outputs),
            "tensors")

    def release_items(self) -> list[Any]:
        """One row of zeros (a string input: empty strings), variable dimensions 1."""
        row = {}
        for spec in self.manifest.inputs:
            shape = tuple(d if d > 0 else 1 for d in spec.shape[1:])
            dtype = V2_DTYPES[MANIFEST_TO_V2[spec.dtype]]
            row[spec.name] = np.full(shape, "", dtype=object) if spec.dtype == "string" else np.zeros(shape, dtype)
        return [row]

    def check_item(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} must be an object of named tensors")
        for spec in self.manifest.inputs:
            arr = item.get(spec.name)
            if not isinstance(arr, np.ndarray):
                raise InvalidInput(f"{where} is missing input '{spec.name}'")
            if arr.dtype != V2_DTYPES[MANIFEST_TO_V2[spec.dtype]]:
                raise InvalidInput(f"input '{spec.name}' must be {spec.dtype}, got {arr.dtype}")
            if not _shape_ok(arr.shape, spec):
                raise InvalidInput(f"input '{spec.name}' has rows of shape {list(arr.shape)}; "
                                   f"expected {spec.shape} (the first dimension is the batch)")

    def preprocess(self, items: Sequence[Any], budgets: Sequence[RequestBudget] | None = None
                   ) -> list[Prepared | Exception]:
        return [Prepared(item, key=tuple((k, v.shape) for k, v in sorted(item.items()))) for item in items]

    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        names = list(batch[0].features)
        return {n: np.stack([p.features[n] for p in batch]) for n in names}

    def postprocess(
        self, outputs: dict[str, np.ndarray], feeds: dict[str, np.ndarray], batch: Sequence[Prepared]
    ) -> list[dict[str, np.ndarray]]:
        return [{k: v[i] for k, v in outputs.items()} for i in range(len(batch))]
