"""Pre- and post-processing around a runtime, one class per task, and what each task declares to the protocols."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ml_service.dataplane import ItemResult, Signature
from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.manifest import Manifest
from ml_service.repository import ModelEntry, ModelVersion
from ml_service.runtime.base import Runtime

#: A step run on a batch's per-item output rows after postprocessing (a classifier head on an encoder).
PostStep = Callable[[list[dict[str, np.ndarray]]], list[dict[str, np.ndarray]]]


@dataclass
class Prepared:
    """One item after preprocessing, ready to be collated into a batch."""

    features: Any
    cost: int = 1  # tokens for text (sorting and the token budget); 1 otherwise
    key: Hashable = None  # items are only batched with items of the same key
    meta: dict[str, Any] = field(default_factory=dict)


class LabelsMismatch(RuntimeError):
    """The labels file does not match the model's outputs."""


class RequestBudget:
    """What one request may still spend in preprocessing, shared by its items across threads."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels
        self._lock = threading.Lock()

    def take_pixels(self, n: int) -> bool:
        """Spend `n` decoded pixels; False (and nothing spent) when the request has fewer left."""
        with self._lock:
            if n > self.pixels:
                return False
            self.pixels -= n
            return True


class ModelTask(ABC):
    """Turns raw items into runtime feeds and runtime outputs into per-item results, for one model version."""

    name: ClassVar[str] = "base"
    #: preprocessing is heavy enough to split across threads (image decoding)
    parallel_preprocess: ClassVar[bool] = False

    def __init__(self, entry: ModelEntry, version: ModelVersion, manifest: Manifest) -> None:
        self.entry = entry
        self.version = version
        self.manifest = manifest
        self.limits = manifest.limits

    @classmethod
    @abstractmethod
    def signature(cls, manifest: Manifest, labels: Sequence[str]) -> Signature:
        """The inputs, outputs and answer kind this task gives a model (known without loading it)."""

    @classmethod
    def working_set_bytes(cls, manifest: Manifest) -> int:
        """Memory one compute worker's batch is expected to need beyond the weights (an estimate used until the
        model has been loaded and measured once)."""
        return 0

    @classmethod  # noqa: B027 - optional hook
    def prime(cls) -> None:
        """Pay the preprocessing library's one-time costs in this process (see Runtime.prime)."""

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load what preprocessing needs (tokenizer)."""

    def check_count(self, n: int, where: str, most: int | None = None) -> None:
        """Reject empty requests and requests over `limits.max_items` (or a protocol's own `most`)."""
        if n == 0:
            raise InvalidInput(f"{where} must not be empty")
        if most is None:
            # a request larger than the whole queue could never be queued: that is a limit too
            most = min(self.limits.max_items, self.manifest.batching.max_queue_size)
        if n > most:
            raise PayloadTooLarge(f"{where} has {n} items; model '{self.entry.name}' accepts at most {most}")

    def new_budget(self) -> RequestBudget:
        """The preprocessing budget of one request."""
        return RequestBudget(self.limits.max_request_pixels)

    @abstractmethod
    def check_item(self, item: Any, where: str) -> None:
        """Cheap type and size checks on one raw item (runs on the event loop, once per item)."""

    @abstractmethod
    def preprocess(self, items: Sequence[Any], budgets: Sequence[RequestBudget] | None = None
                   ) -> list[Prepared | Exception]:
        """Heavy per-item work (tokenize, decode); an item that fails gets its exception. `budgets`: each item's
        request budget (one fresh budget per item when not given)."""

    @abstractmethod
    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        """The runtime's feeds for a batch of prepared items."""

    @abstractmethod
    def postprocess(
        self, outputs: dict[str, np.ndarray], feeds: dict[str, np.ndarray], batch: Sequence[Prepared]
    ) -> list[dict[str, np.ndarray]]:
        """Per-item named outputs from the batch's runtime outputs."""

    def warmup_items(self) -> list[Any]:
        """Raw items for one full-size batch, run at load time: the first request is not slow, the runtime's
        memory reaches its working size before it is measured, and a bad model fails at load."""
        return []

    def validate(self, runtime: Runtime, full: bool = True) -> None:
        """Run the warm-up batch (`full`; else one small item, for files that passed a full one before) and check
        the outputs against what the manifest declares (labels)."""
        labels = self.version.labels
        if labels:
            for spec in runtime.outputs:
                if len(spec.shape) == 2 and spec.shape[-1] > 0 and spec.shape[-1] != len(labels):
                    raise LabelsMismatch(f"output '{spec.name}' has {spec.shape[-1]} classes but the labels file "
                                         f"has {len(labels)}")
        rows = self.run_local(runtime, self.warmup_items() if full else self.release_items())
        probs = rows[0].get("probabilities") if rows else None
        if labels and probs is not None and probs.shape[-1] != len(labels):
            raise LabelsMismatch(f"the model has {probs.shape[-1]} classes but the labels file has {len(labels)}")

    def release_items(self) -> list[Any]:
        """One small item whose run lets the runtime give its working memory back (see Batcher._release)."""
        return self.warmup_items()[:1]

    def release_memory(self, runtime: Runtime) -> None:
        """Run one small item with `release`: the runtime keeps only what it needs when idle."""
        self.run_local(runtime, self.release_items())

    def run_local(self, runtime: Runtime, items: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        """Items through preprocess, the runtime and postprocess in this thread (warm-up, checks, tools)."""
        if not items:
            return []
        prepared = self.preprocess(items)
        bad = next((p for p in prepared if isinstance(p, Exception)), None)
        if bad is not None:
            raise bad
        ok = [p for p in prepared if isinstance(p, Prepared)]
        feeds = self.collate(ok)
        return self.postprocess(runtime.predict(feeds, release=True), feeds, ok)

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


__all__ = ["ItemResult", "LabelsMismatch", "ModelTask", "PostStep", "Prepared", "RequestBudget", "softmax"]
