"""Pre- and post-processing around a runtime, one class per task."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.manifest import Manifest
from ml_service.repository import ModelEntry, ModelVersion


@dataclass
class Prepared:
    """One item after preprocessing, ready to be collated into a batch."""

    features: Any
    cost: int = 1  # tokens for text (sorting and the token budget); 1 otherwise
    key: Hashable = None  # items are only batched with items of the same key
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ItemResult:
    """One item's answer: named arrays plus facts about how it was computed."""

    outputs: dict[str, np.ndarray]
    meta: dict[str, Any]
    queue_ms: float = 0.0
    inference_ms: float = 0.0
    batch_size: int = 1


@dataclass(frozen=True)
class Options:
    """Per-request options that only shape the answer (not the computation)."""

    top_k: int = 5


class Task(ABC):
    """Turns raw items into runtime feeds and runtime outputs into per-item results."""

    name: str = "base"
    #: preprocessing is heavy enough to split across threads (image decoding)
    parallel_preprocess: bool = False
    #: the `data` keys of the seed API: (single, list)
    data_keys: tuple[str, str] = ("", "")

    def __init__(self, entry: ModelEntry, version: ModelVersion, manifest: Manifest) -> None:
        self.entry = entry
        self.version = version
        self.manifest = manifest
        self.limits = manifest.limits

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load what preprocessing needs (tokenizer, labels)."""

    def parse_seed(self, data: Mapping[str, Any]) -> tuple[list[Any], Options]:
        """Raw items and options from the seed API's `data` object."""
        single, many = self.data_keys
        if single in data and many in data:
            raise InvalidInput(f"give either data.{single} or data.{many}, not both")
        if single in data:
            items: list[Any] = [data[single]]
        elif many in data:
            value = data[many]
            if not isinstance(value, list):
                raise InvalidInput(f"data.{many} must be a list")
            items = value
        else:
            raise InvalidInput(f"data must contain '{single}' or '{many}'")
        self.check_count(len(items), f"data.{many}")
        for i, item in enumerate(items):
            self.check_item(item, f"data.{many}[{i}]" if many in data else f"data.{single}")
        return items, self.parse_options(data)

    def parse_options(self, data: Mapping[str, Any]) -> Options:
        return Options()

    def check_count(self, n: int, where: str) -> None:
        """Reject empty requests and requests over `limits.max_items`."""
        if n == 0:
            raise InvalidInput(f"{where} must not be empty")
        # a request larger than the whole queue could never be queued: that is a limit too
        most = min(self.limits.max_items, self.manifest.batching.max_queue_size)
        if n > most:
            raise PayloadTooLarge(f"{where} has {n} items; model '{self.entry.name}' accepts at most {most}")

    def warmup_items(self) -> list[Any]:
        """Raw items run once at load time: the first request is not slow, and a labels file that does not
        match the model's outputs is caught at load, not in a request."""
        return []

    @abstractmethod
    def check_item(self, item: Any, where: str) -> None:
        """Cheap type and size checks on one raw item (runs on the event loop)."""

    @abstractmethod
    def preprocess(self, items: Sequence[Any]) -> list[Prepared | Exception]:
        """Heavy per-item work (tokenize, decode); an item that fails gets its exception."""

    @abstractmethod
    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        """The runtime's feeds for a batch of prepared items."""

    @abstractmethod
    def postprocess(
        self, outputs: dict[str, np.ndarray], feeds: dict[str, np.ndarray], batch: Sequence[Prepared]
    ) -> list[dict[str, np.ndarray]]:
        """Per-item named outputs from the batch's runtime outputs."""

    @abstractmethod
    def format_seed(self, result: ItemResult, options: Options) -> dict[str, Any]:
        """One entry of the seed API's `outputs` list."""

    def output_name(self, outputs: dict[str, np.ndarray]) -> str:
        """The runtime output a task reads: the declared one, else the first."""
        wanted = self.manifest.postprocessing.output
        if wanted:
            if wanted not in outputs:
                raise RuntimeError(f"model has no output {wanted!r}; it has {list(outputs)}")
            return wanted
        return next(iter(outputs))


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    x = x.astype(np.float32, copy=False)
    z = x - x.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    out: np.ndarray = z
    return out
