"""The data plane's vocabulary: what a model declares to the protocols, what a request asks, what comes back.

Codecs (`ml_service.codecs`) turn a protocol's wire format into an `InferenceRequest` using the model's
`ModelSpec`, and an `InferenceResult` back into the wire format; `InferenceService` (`ml_service.service`)
answers the request. Nothing here imports the service, a codec or HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ml_service.manifest import Limits

#: How a protocol turns one input tensor into items: one text (str) per row, one encoded image (bytes, or a
#: base64 str) per row, one CHW float32 array per row, or rows of named arrays (all inputs together).
InputKind = Literal["text", "image", "pixels", "tensor"]
#: The shape of a model's answer per item, for protocols that format answers per item.
AnswerKind = Literal["embedding", "classification", "tensors"]


@dataclass(frozen=True)
class InputInfo:
    """One input tensor a model takes; -1 marks a variable dimension."""

    name: str
    datatype: str  # an Open Inference Protocol datatype (FP32, BYTES, ...)
    shape: tuple[int, ...]
    kind: InputKind
    max_elements: int  # the most elements one request may declare for it

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class OutputInfo:
    """One output tensor a model gives; `label_of` names the probabilities whose best label this is."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    label_of: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """What a task contributes to every protocol: its inputs and outputs and the kind of answer."""

    inputs: tuple[InputInfo, ...]
    outputs: tuple[OutputInfo, ...]
    answer: AnswerKind

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def input(self, name: str) -> InputInfo | None:
        return next((t for t in self.inputs if t.name == name), None)


@dataclass(frozen=True)
class ModelSpec:
    """A served model version as the protocols see it, known without loading the model."""

    name: str
    version: int
    task: str
    runtime: str
    signature: Signature
    limits: Limits
    labels: tuple[str, ...] = ()
    normalized: bool = False  # embeddings are L2-normalized
    created: int = 0  # when its version directory was published (unix seconds)
    fingerprint: str = ""  # of the files it was built from

    @property
    def embeds(self) -> bool:
        """Whether the model answers embeddings (the OpenAI protocol serves only these)."""
        return self.signature.answer == "embedding"

    @property
    def embedding_dim(self) -> int:
        """The embedding width, -1 when unknown."""
        out = next((o for o in self.signature.outputs if o.name == "embedding"), None)
        return out.shape[-1] if out is not None and out.shape else -1


@dataclass(frozen=True)
class InferenceRequest:
    """Items for one model version, already in the kind its task takes (see `InputKind`).

    `max_items` raises the model's per-request item limit for a protocol that allows more (OpenAI
    embeddings): such a request is computed in chunks of the model's limit."""

    model: str
    items: Sequence[Any]
    version: str | int | None = None
    max_items: int | None = None
    where: str = "inputs"  # how error messages name the items: `inputs`, `data.texts`, ...
    single: bool = False  # one item sent on its own (`data.text`): messages name it without an index

    def label(self, i: int) -> str:
        """How an error message names item `i`."""
        return self.where if self.single else f"{self.where}[{i}]"


@dataclass
class ItemResult:
    """One item's answer: named arrays plus facts about how it was computed."""

    outputs: dict[str, np.ndarray]
    meta: dict[str, Any]
    queue_ms: float = 0.0
    inference_ms: float = 0.0
    batch_size: int = 1


@dataclass
class InferenceResult:
    """What a request gets back: per-item results in request order, and timings."""

    spec: ModelSpec
    items: list[ItemResult]
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return sum(int(it.meta.get("tokens", 0)) for it in self.items)


__all__ = ["AnswerKind", "InferenceRequest", "InferenceResult", "InputInfo", "InputKind", "ItemResult",
           "ModelSpec", "OutputInfo", "Signature"]
