"""What the classifiers share: labels, softmax over the chosen output, the V2 outputs, heads on an encoder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ml_service.dataplane import OutputInfo
from ml_service.runtime.base import Runtime
from ml_service.tasks.base import LabelsMismatch, ModelTask, PostStep, Prepared, softmax

#: The item output an encoder gives and a head reads.
ENCODER_OUTPUT = "embedding"


def classifier_outputs(labels: Sequence[str]) -> tuple[OutputInfo, ...]:
    """Probabilities per label, and the best label."""
    n = len(labels) if labels else -1
    return (OutputInfo("probabilities", "FP32", (-1, n)), OutputInfo("label", "BYTES", (-1,), label_of="probabilities"))


class Classifier(ModelTask):
    """Probabilities from the model's output (softmax unless it already holds them)."""

    def postprocess(
        self, outputs: dict[str, np.ndarray], feeds: dict[str, np.ndarray], batch: Sequence[Prepared]
    ) -> list[dict[str, np.ndarray]]:
        out = outputs[self.output_name(outputs)]
        probs = softmax(out) if self.manifest.postprocessing.softmax else out.astype(np.float32)
        return [{"probabilities": row} for row in probs]

    @property
    def is_head(self) -> bool:
        """A head runs on another model's embeddings (model.toml `encoder`): its file is the head graph alone."""
        return bool(self.manifest.encoder)

    def post_step(self, runtime: Runtime) -> PostStep:
        """This head as a post-step on its encoder's batches: their embedding rows in, probabilities out."""
        feed = runtime.inputs[0].name if runtime.inputs else ENCODER_OUTPUT

        def step(rows: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
            feeds = {feed: np.stack([r[ENCODER_OUTPUT] for r in rows])}
            return self.postprocess(runtime.predict(feeds), feeds, [])

        return step

    def validate(self, runtime: Runtime, full: bool = True) -> None:
        if not self.is_head:
            super().validate(runtime, full)
            return
        spec = runtime.inputs[0] if runtime.inputs else None
        dim = spec.shape[-1] if spec is not None and spec.shape and spec.shape[-1] > 0 else None
        if dim is None:
            raise RuntimeError("a head graph must declare the width of its embedding input")
        rows = self.post_step(runtime)([{ENCODER_OUTPUT: np.zeros(dim, dtype=np.float32)}])
        n, labels = rows[0]["probabilities"].shape[-1], self.version.labels
        if labels and n != len(labels):
            raise LabelsMismatch(f"the model has {n} classes but the labels file has {len(labels)}")
