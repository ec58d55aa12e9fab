"""What several codecs share: the protocol declaration, and splitting batched named tensors into rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from ml_service.dataplane import Signature
from ml_service.errors import InvalidInput


def _same(status: int) -> int:
    return status


@dataclass(frozen=True)
class Protocol:
    """A protocol as the HTTP layer needs to know it: its name (the request's label) and its error shape. Each
    codec declares its own (`PROTOCOL`); each route carries the one it speaks."""

    name: str  # native | v2 | openai | vertex
    error_body: Callable[[int, str, str], dict[str, Any]]  # (status, code, message) -> the error JSON
    http_status: Callable[[int], int] = _same  # a protocol whose statuses differ from ours maps them here


class Rows(Sequence[dict[str, np.ndarray]]):
    """Batched named arrays seen as one `{name: row}` item per row, made only when read (the data plane
    checks the count first, so a million declared rows cost nothing)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], n: int) -> None:
        self._arrays = dict(arrays)
        self._n = n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> dict[str, np.ndarray]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, np.ndarray]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, np.ndarray] | list[dict[str, np.ndarray]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return {name: arr[i, ...] for name, arr in self._arrays.items()}


def split_rows(arrays: Mapping[str, np.ndarray], signature: Signature) -> Rows:
    """Batched named arrays (the first dimension is the batch) as one `{name: row}` item per row."""
    names = set(signature.input_names)
    unknown = sorted(set(arrays) - names)
    if unknown:
        raise InvalidInput(f"unknown input(s) {unknown}; the model takes {sorted(names)}")
    missing = sorted(names - set(arrays))
    if missing:
        raise InvalidInput(f"missing input(s) {missing}")
    sizes = set()
    for name, arr in arrays.items():
        if arr.ndim < 1:
            raise InvalidInput(f"input '{name}' needs a batch dimension")
        sizes.add(arr.shape[0])
    if len(sizes) != 1:
        raise InvalidInput("all inputs must have the same batch size")
    return Rows(arrays, sizes.pop())
