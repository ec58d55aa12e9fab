"""The service's own API, `POST /inference {"model_type", "data", "version"?}`: one output per input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml_service.codecs.common import Protocol, split_rows
from ml_service.dataplane import InferenceRequest, InferenceResult, ItemResult, ModelSpec
from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.tensors import to_array

#: the `data` keys for one item and for a list, by input kind
_DATA_KEYS = {"text": ("text", "texts"), "image": ("image", "images")}


@dataclass(frozen=True)
class NativeRequest:
    """A parsed `POST /inference` body; `data` is read once the model is known."""

    model: str
    data: Mapping[str, Any]
    version: str | int | None = None


def parse_request(doc: Any) -> NativeRequest:
    """Check the envelope: `model_type`, `data` and an optional `version`."""
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object with 'model_type' and 'data'")
    model = doc.get("model_type")
    if not isinstance(model, str) or not model:
        raise InvalidInput("model_type must be a non-empty string (a model name or alias, see GET /models)")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise InvalidInput("data must be a JSON object")
    version = doc.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, (str, int))):
        raise InvalidInput("version must be a string or an integer")
    return NativeRequest(model, data, version)


def parse_top_k(data: Mapping[str, Any], n_labels: int) -> int:
    """`data.top_k`: an integer from 1 to the number of labels (default 5, capped at the label count)."""
    if "top_k" not in data:
        return min(5, n_labels)
    k = data["top_k"]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_labels:
        raise InvalidInput(f"data.top_k must be an integer from 1 to {n_labels}, got {k!r}")
    return k


def decode(req: NativeRequest, spec: ModelSpec) -> tuple[InferenceRequest, int]:
    """The data plane's request for `data`, and the top-k for classifier answers."""
    data, sig = req.data, spec.signature
    top_k = parse_top_k(data, len(spec.labels)) if sig.answer == "classification" else 0
    if any(t.kind == "tensor" for t in sig.inputs):
        inputs = data.get("inputs")
        if not isinstance(inputs, dict):
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
    if single in data and many in data:
        raise InvalidInput(f"give either data.{single} or data.{many}, not both")
    if single in data:
        return InferenceRequest(spec.name, [data[single]], spec.version, where=f"data.{single}", single=True), top_k
    if many in data:
        value = data[many]
        if not isinstance(value, list):
            raise InvalidInput(f"data.{many} must be a list")
        return InferenceRequest(spec.name, value, spec.version, where=f"data.{many}"), top_k
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


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """`{"error": {"code", "message"}}`."""
    return {"error": {"code": code, "message": message}}


#: this protocol's name and error shape, for the routes that speak it
PROTOCOL = Protocol("native", error_body)
