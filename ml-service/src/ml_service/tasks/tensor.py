"""Raw tensors: named inputs in, named outputs out; the first dimension is the batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.manifest import TensorSpec
from ml_service.tasks.base import ItemResult, Options, Prepared, Task

# numpy kinds of the values sent that convert without loss to an input's kind
_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def _shape_ok(shape: tuple[int, ...], spec: TensorSpec) -> bool:
    """Whether a row's shape fits the spec without its batch dimension."""
    dims = spec.shape[1:]
    return len(shape) == len(dims) and all(d == -1 or d == s for d, s in zip(dims, shape, strict=True))


class TensorTask(Task):
    """Each item is one row: `{input name: array without the batch dimension}`."""

    name = "tensor"

    def parse_seed(self, data: Mapping[str, Any]) -> tuple[list[Any], Options]:
        inputs = data.get("inputs")
        if not isinstance(inputs, dict):
            raise InvalidInput("data.inputs must be an object {input name: nested list}")
        specs = self._specs()
        unknown = sorted(set(inputs) - set(specs))
        if unknown:
            raise InvalidInput(f"unknown input(s) {unknown}; the model takes {sorted(specs)}")
        return self.rows_from_arrays({k: self.to_array(v, k) for k, v in inputs.items()}), Options()

    def _specs(self) -> dict[str, TensorSpec]:
        return {s.name: s for s in self.manifest.inputs}

    def to_array(self, value: Any, name: str) -> np.ndarray:
        spec = self._specs()[name]
        try:
            kind = np.asarray(value).dtype.kind  # what was sent: null, strings, bools are not numbers
            arr = np.asarray(value, dtype=np.dtype(spec.dtype))
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput(f"input '{name}' is not a rectangular array of {spec.dtype}") from None
        if arr.size and kind not in _ACCEPTED_KINDS.get(arr.dtype.kind, ""):
            raise InvalidInput(f"input '{name}' must hold {spec.dtype} values")
        if arr.size > self.limits.max_tensor_elements:
            raise PayloadTooLarge(f"input '{name}' has {arr.size} elements; the limit is "
                                  f"{self.limits.max_tensor_elements}")
        return arr

    def rows_from_arrays(self, arrays: Mapping[str, Any]) -> list[dict[str, np.ndarray]]:
        """Split batched arrays into rows after checking names, dtypes and shapes against the spec."""
        specs = self._specs()
        unknown = sorted(set(arrays) - set(specs))
        if unknown:
            raise InvalidInput(f"unknown input(s) {unknown}; the model takes {sorted(specs)}")
        missing = sorted(set(specs) - set(arrays))
        if missing:
            raise InvalidInput(f"missing input(s) {missing}")
        sizes = set()
        for name, arr in arrays.items():
            if not isinstance(arr, np.ndarray) or arr.ndim < 1:
                raise InvalidInput(f"input '{name}' needs a batch dimension")
            if not _shape_ok(arr.shape[1:], specs[name]):
                raise InvalidInput(f"input '{name}' has shape {list(arr.shape)}; expected {specs[name].shape}")
            sizes.add(arr.shape[0])
        if len(sizes) != 1:
            raise InvalidInput("all inputs must have the same batch size")
        n = sizes.pop()
        self.check_count(n, "inputs")
        return [{name: arr[i] for name, arr in arrays.items()} for i in range(n)]

    def check_item(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} must be an object of named tensors")

    def preprocess(self, items: Sequence[Any]) -> list[Prepared | Exception]:
        return [Prepared(item, key=tuple((k, v.shape) for k, v in sorted(item.items()))) for item in items]

    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        names = list(batch[0].features)
        return {n: np.stack([p.features[n] for p in batch]) for n in names}

    def postprocess(
        self, outputs: dict[str, np.ndarray], feeds: dict[str, np.ndarray], batch: Sequence[Prepared]
    ) -> list[dict[str, np.ndarray]]:
        return [{k: v[i] for k, v in outputs.items()} for i in range(len(batch))]

    def format_seed(self, result: ItemResult, options: Options) -> dict[str, Any]:
        return dict(result.outputs)
