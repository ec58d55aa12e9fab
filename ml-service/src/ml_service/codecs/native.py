"""The service's own API, `POST /inference {"model_type", "data", "version"?}`: one output per input."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import numpy as np
from msgspec import UNSET, Meta, Struct, UnsetType

from ml_service.codecs import body
from ml_service.codecs.common import Protocol, split_rows
from ml_service.dataplane import InferenceRequest, InferenceResult, ItemResult, ModelSpec
from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.tensors import to_array

#: the `data` keys for one item and for a list, by input kind
_DATA_KEYS = {"text": ("text", "texts"), "image": ("image", "images")}
_B64 = "base64 of a JPEG, PNG or WebP (a data: URL prefix is accepted)"


class InferenceData(Struct, frozen=True):
    """One of `text`/`texts` (text models), `image`/`images` (image models) or `inputs` (tensor models), and `top_k`
    for classifiers."""

    text: Annotated[str, Meta(description="one text")] | UnsetType = UNSET
    texts: Annotated[list[str], Meta(description="texts, one output each")] | UnsetType = UNSET
    image: Annotated[str, Meta(description=_B64)] | UnsetType = UNSET
    images: Annotated[list[str], Meta(description=_B64)] | UnsetType = UNSET
    inputs: Annotated[dict[str, Any], Meta(description="{input name: nested list}, batch first")] | UnsetType = UNSET
    top_k: Annotated[int, Meta(ge=1, description="labels to return: an integer from 1 to the number of labels "
                                                 "(classifiers; default 5)")] | UnsetType = UNSET


class InferenceBody(Struct, frozen=True):
    """`POST /inference`: a model, its `data`, and optionally a version."""

    model_type: Annotated[str, Meta(min_length=1, description="a model name or alias (GET /models)")]
    data: InferenceData
    version: Annotated[str | int | None, Meta(description="pin a served version; default the live one")] = None


_DECODER = msgspec.json.Decoder(InferenceBody)


def parse_request(raw: bytes | memoryview) -> InferenceBody:
    """The envelope, typed; `data` is read once the model is known."""
    return body.decode(raw, _DECODER, InvalidInput)


def request(model: str, data: dict[str, Any], version: str | int | None = None) -> InferenceBody:
    """A request from Python values (the CLI, tests), checked as a body is."""
    return body.convert({"model_type": model, "data": data, "version": version}, InferenceBody, InvalidInput)


def count(req: InferenceBody) -> int:
    """How many items the envelope declares (admission decides on it before `data` is decoded)."""
    data = req.data
    for many in (data.texts, data.images):
        if many is not UNSET:
            return len(many)
    if data.inputs is not UNSET and data.inputs:
        first = next(iter(data.inputs.values()))
        return len(first) if isinstance(first, list) else 1
    return 1


def parse_top_k(data: InferenceData, n_labels: int) -> int:
    """`data.top_k`: an integer from 1 to the number of labels (default 5, capped at the label count)."""
    k = data.top_k
    if k is UNSET:
        return min(5, n_labels)
    if k > n_labels:
        raise InvalidInput(f"data.top_k must be an integer from 1 to {n_labels}, got {k!r}")
    return k


def decode(req: InferenceBody, spec: ModelSpec) -> tuple[InferenceRequest, int]:
    """The data plane's request for `data`, and the top-k for classifier answers."""
    data, sig = req.data, spec.signature
    top_k = parse_top_k(data, len(spec.labels)) if sig.answer == "classification" else 0
    if any(t.kind == "tensor" for t in sig.inputs):
        inputs = data.inputs
        if inputs is UNSET:
            raise InvalidInput("data.inputs must be an object {input name: nested list}")
        arrays = {}
        for name, value in inputs.items():
            info = sig.input(name)
            if info is None:
                raise InvalidInput(f"unknown input(s) {sorted(set(inputs) - set(sig.input_names))}; "
                                   f"the model takes {sorted(sig.input_names)}")
            arr = to_array(value, info.datatype, None, name)
            if arr.size > info.max_elements:
                raise PayloadTooLarge(f"input '{name}' has {arr.size} elements; the limit is {info.max_elements}")
            arrays[name] = arr
        rows = split_rows(arrays, sig)
        return InferenceRequest(spec.name, rows, spec.version, where="data.inputs"), top_k
    kind = next(t.kind for t in sig.inputs)
    single, many = _DATA_KEYS.get(kind, ("", ""))
    one: str | UnsetType = getattr(data, single, UNSET)
    listed: list[str] | UnsetType = getattr(data, many, UNSET)
    if one is not UNSET and listed is not UNSET:
        raise InvalidInput(f"give either data.{single} or data.{many}, not both")
    if one is not UNSET:
        return InferenceRequest(spec.name, [one], spec.version, where=f"data.{single}", single=True), top_k
    if listed is not UNSET:
        return InferenceRequest(spec.name, listed, spec.version, where=f"data.{many}"), top_k
    raise InvalidInput(f"data must contain '{single}' or '{many}'")


def classification_entry(probs: np.ndarray, labels: tuple[str, ...] | list[str], top_k: int) -> dict[str, Any]:
    """`{"label", "score", "top_k": [...]}` from one row of probabilities."""
    k = min(top_k, probs.shape[0])
    idx = np.argpartition(-probs, k - 1)[:k]
    idx = idx[np.argsort(-probs[idx], kind="stable")]
    top = [{"label": labels[i], "score": float(probs[i])} for i in idx]
    return {"label": top[0]["label"], "score": top[0]["score"], "top_k": top}


def item_output(item: ItemResult, spec: ModelSpec, top_k: int) -> dict[str, Any]:
    """One input's answer, as /inference and Vertex give it."""
    answer = spec.signature.answer
    if answer == "embedding":
        out: dict[str, Any] = {"embedding": item.outputs["embedding"]}
    elif answer == "classification":
        out = classification_entry(item.outputs["probabilities"], spec.labels, top_k)
    else:
        return dict(item.outputs)
    if "tokens" in item.meta:
        out["tokens"] = item.meta["tokens"]
        if item.meta.get("truncated"):
            out["truncated"] = True
    return out


def encode(result: InferenceResult, top_k: int) -> dict[str, Any]:
    """The response body: model, version, one output per input, timings."""
    spec = result.spec
    return {
        "model": spec.name,
        "version": str(spec.version),
        "outputs": [item_output(item, spec, top_k) for item in result.items],
        "timings_ms": result.timings_ms,
    }


class TrainExample(Struct, frozen=True):
    """One labelled text."""

    text: Annotated[str, Meta(description="the text, e.g. a household task")]
    label: Annotated[str, Meta(description="its label: one the model knows, or a new one (at most 64 characters)")]


class TrainBody(Struct, frozen=True):
    """`POST /models/{name}/train`: labelled examples and how to train on them."""

    examples: Annotated[list[TrainExample], Meta(description="labelled texts (a given text re-labels the same text "
                                                             "of the served version's examples)")]
    include_base: Annotated[bool, Meta(description="add the examples the served version was trained from")] = True
    holdout: Annotated[float, Meta(gt=0, le=0.5, description="the share of each label held out for the "
                                                             "comparison")] = 0.2
    seed: Annotated[int, Meta(description="the seed of the held-out split")] = 0
    force: Annotated[bool, Meta(description="publish even if the new head is worse than the served version")] = False
    tolerance: Annotated[float, Meta(ge=0, le=0.05, description="accuracy the new head may lose on the compared "
                                                                "texts and still count as not worse")] | None = None
    """None: the server's ML_SERVICE_TRAIN_TOLERANCE."""


_TRAIN_DECODER = msgspec.json.Decoder(TrainBody)


def parse_train(raw: bytes | memoryview) -> TrainBody:
    """A training request, typed (422 naming the field when it does not fit)."""
    return body.decode(raw, _TRAIN_DECODER, InvalidInput)


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """`{"error": {"code", "message"}}`."""
    return {"error": {"code": code, "message": message}}


#: this protocol's name and error shape, for the routes that speak it
PROTOCOL = Protocol("native", error_body)
