"""What the classifiers share: labels, top-k, softmax over the chosen output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ml_service.errors import InvalidInput
from ml_service.tasks.base import Options, Prepared, Task, softmax


def parse_top_k(data: Mapping[str, Any], n_labels: int) -> Options:
    """`data.top_k`: an integer from 1 to the number of labels (default 5, capped at the label count)."""
    if "top_k" not in data:
        return Options(top_k=min(5, n_labels))
    k = data["top_k"]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_labels:
        raise InvalidInput(f"data.top_k must be an integer from 1 to {n_labels}, got {k!r}")
    return Options(top_k=k)


def classification_entry(probs: np.ndarray, labels: list[str], top_k: int) -> dict[str, Any]:
    """`{"label", "score", "top_k": [...]}` from one row of probabilities."""
    k = min(top_k, probs.shape[0])
    idx = np.argpartition(-probs, k - 1)[:k]
    idx = idx[np.argsort(-probs[idx], kind="stable")]
    top = [{"label": labels[i], "score": float(probs[i])} for i in idx]
    return {"label": top[0]["label"], "score": top[0]["score"], "top_k": top}


class Classifier(Task):
    """Probabilities from the model's output (softmax unless it already holds them), labels, top-k."""

    @property
    def labels(self) -> list[str]:
        return self.entry.labels or []

    def parse_options(self, data: Mapping[str, Any]) -> Options:
        return parse_top_k(data, len(self.labels))

    def postprocess(
        self, outputs: dict[str, np.ndarray], feeds: dict[str, np.ndarray], batch: Sequence[Prepared]
    ) -> list[dict[str, np.ndarray]]:
        out = outputs[self.output_name(outputs)]
        probs = softmax(out) if self.manifest.postprocessing.softmax else out.astype(np.float32)
        return [{"probabilities": row} for row in probs]
