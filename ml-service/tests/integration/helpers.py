"""Integration-tier helpers: tiny ONNX models generated for the session, and response checks.

The repository mirrors what `make models` writes (model.toml layout, tokenizer.json, labels.txt),
with models small enough to build in milliseconds:

* `text-embedding` (aliases bert, embedder; versions 1 and 2 served, 3 is missing its model file):
  Gather from an embedding table, masked -> `last_hidden_state` [N, S, D]; the task pools it.
* `text-classifier` (alias sentiment): Gather -> ReduceMean over the sequence -> MatMul + Add -> logits.
* `image-classifier` (alias cnn): pixel_values [N, 3, 224, 224] -> GlobalAveragePool -> Flatten -> Gemm.
* `tensor-math`: `a`, `b` float32 [N, 4] -> `sum` = a + b, `prod` = a * b.
* `broken`: an invalid model.toml; `flaky`: the fake runtime failing to load.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from starlette.testclient import TestClient

DIM = 8
TEXT_LABELS = ["negative", "neutral", "positive"]
IMAGE_LABELS = ["red", "green", "blue"]
EMBED_MAX_TOKENS = 6
EMBED_MAX_ITEMS = 4
MAX_BODY_BYTES = 4096
IMAGE_MAX_BYTES = 6000
FAIL_REASON = "weights file is corrupted"
FAIL_SHOWN = "model file unreadable or corrupt"  # the fixed reason clients see; FAIL_REASON only in the log
TEXT_INPUTS = [{"name": n, "dtype": "int64", "shape": [-1, -1]}
               for n in ("input_ids", "attention_mask", "token_type_ids")]


def _save(graph: Any, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def embedding_onnx(path: Path, table: np.ndarray) -> None:
    """input_ids/attention_mask/token_type_ids int64 [N, S] -> last_hidden_state [N, S, D] (masked rows)."""
    from onnx import TensorProto, helper, numpy_helper

    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
            for n in ("input_ids", "attention_mask", "token_type_ids")]
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", table.shape[1]])
    type_table = np.zeros((2, table.shape[1]), dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["word_table", "input_ids"], ["words"]),
            helper.make_node("Gather", ["type_table", "token_type_ids"], ["types"]),
            helper.make_node("Add", ["words", "types"], ["emb"]),
            helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask_3d"]),
            helper.make_node("Mul", ["emb", "mask_3d"], ["last_hidden_state"]),
        ],
        "tiny_embedding", ints, [out],
        [numpy_helper.from_array(table.astype(np.float32), "word_table"),
         numpy_helper.from_array(type_table, "type_table"),
         numpy_helper.from_array(np.array([-1], dtype=np.int64), "last_axis")],
    )
    _save(graph, path)


def text_classifier_onnx(path: Path, table: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> None:
    """input_ids [N, S] -> Gather -> ReduceMean(seq) -> MatMul + Add -> logits [N, C]."""
    from onnx import TensorProto, helper, numpy_helper

    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
            for n in ("input_ids", "attention_mask", "token_type_ids")]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weight.shape[1]])
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["word_table", "input_ids"], ["words"]),
            helper.make_node("ReduceMean", ["words"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "head_w"], ["mm"]),
            helper.make_node("Add", ["mm", "head_b"], ["logits"]),
        ],
        "tiny_text_classifier", ints, [out],
        [numpy_helper.from_array(table.astype(np.float32), "word_table"),
         numpy_helper.from_array(weight.astype(np.float32), "head_w"),
         numpy_helper.from_array(bias.astype(np.float32), "head_b")],
    )
    _save(graph, path)


def image_classifier_onnx(path: Path, weight: np.ndarray) -> None:
    """pixel_values [N, 3, 224, 224] -> GlobalAveragePool -> Flatten -> Gemm -> logits [N, C]."""
    from onnx import TensorProto, helper, numpy_helper

    inp = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 224, 224])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weight.shape[1]])
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["pixel_values"], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]),
        ],
        "tiny_image_classifier", [inp], [out],
        [numpy_helper.from_array(weight.astype(np.float32), "fc_w"),
         numpy_helper.from_array(np.zeros(weight.shape[1], dtype=np.float32), "fc_b")],
    )
    _save(graph, path)


#: the manifest of `tensor_onnx`'s graph
TENSOR_MANIFEST: dict[str, Any] = {
    "task": "tensor", "runtime": "onnx", "file": "model.onnx",
    "inputs": [{"name": "a", "dtype": "float32", "shape": [-1, 4]},
               {"name": "b", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "sum", "dtype": "float32", "shape": [-1, 4]},
                {"name": "prod", "dtype": "float32", "shape": [-1, 4]}],
}


def tensor_onnx(path: Path) -> None:
    """a, b float32 [N, 4] -> sum = a + b, prod = a * b."""
    from onnx import TensorProto, helper

    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4]) for n in ("a", "b")]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4]) for n in ("sum", "prod")]
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["prod"])],
        "tiny_tensor", ins, outs,
    )
    _save(graph, path)


@dataclass
class OnnxRepo:
    """The generated repository and the weights the tests compute expected answers from."""

    root: Path
    vocab: dict[str, int]
    embed_tables: dict[int, np.ndarray] = field(default_factory=dict)
    cls_table: np.ndarray | None = None
    cls_weight: np.ndarray | None = None
    cls_bias: np.ndarray | None = None

    def token_ids(self, text: str, max_tokens: int) -> list[int]:
        words = [self.vocab.get(w, self.vocab["[UNK]"]) for w in text.lower().split()]
        return [self.vocab["[CLS]"], *words[: max_tokens - 2], self.vocab["[SEP]"]]

    def expected_embedding(self, text: str, version: int) -> np.ndarray:
        rows = self.embed_tables[version][self.token_ids(text, EMBED_MAX_TOKENS)]
        v = rows.mean(axis=0)
        return v / np.linalg.norm(v)

    def expected_text_probs(self, text: str) -> np.ndarray:
        assert self.cls_table is not None and self.cls_weight is not None and self.cls_bias is not None
        logits = self.cls_table[self.token_ids(text, 16)].mean(axis=0) @ self.cls_weight + self.cls_bias
        e = np.exp(logits - logits.max())
        return e / e.sum()


def build_onnx_repo(root: Path, make_model: Callable[..., Path], write_tokenizer: Callable[..., dict[str, int]],
                    fake_manifest: Callable[..., dict[str, Any]]) -> OnnxRepo:
    rng = np.random.default_rng(1234)
    root.mkdir(parents=True, exist_ok=True)

    # text-embedding: versions 1 and 2 (different tables), version 3 lacks its model file
    mdir = make_model(root, "text-embedding", {
        "task": "embedding", "runtime": "onnx", "file": "model.onnx", "aliases": ["bert", "embedder"],
        "version_policy": "all", "inputs": TEXT_INPUTS,
        "outputs": [{"name": "last_hidden_state", "dtype": "float32", "shape": [-1, -1, DIM]}],
        "preprocessing": {"tokenizer": "tokenizer.json", "max_tokens": EMBED_MAX_TOKENS},
        "postprocessing": {"output": "last_hidden_state", "normalize": True},
        "batching": {"max_batch_size": 8, "max_batch_tokens": 4096, "max_queue_delay_ms": 2.0,
                     "max_queue_size": 256},
        "limits": {"max_items": EMBED_MAX_ITEMS, "max_text_chars": 2000},
        "card": {"source": "generated by the test session", "license": "MIT"},
    }, versions=(1, 2, 3))
    vocab = write_tokenizer(mdir / "tokenizer.json")  # shared by every version
    for v in (1, 2, 3):
        (mdir / str(v) / "tokenizer.json").unlink()
    (mdir / "3" / "model.onnx").unlink()
    repo = OnnxRepo(root, vocab)
    for v in (1, 2):
        table = rng.normal(size=(len(vocab), DIM)).astype(np.float32)
        table[vocab["[PAD]"]] = 0.0
        repo.embed_tables[v] = table
        embedding_onnx(mdir / str(v) / "model.onnx", table)

    # text-classifier: "good"/"great" -> positive, "bad"/"terrible" -> negative, "okay"/"fine" -> neutral
    mdir = make_model(root, "text-classifier", {
        "task": "text-classification", "runtime": "onnx", "file": "model.onnx", "aliases": ["sentiment"],
        "version_policy": "latest", "labels": "labels.txt", "inputs": TEXT_INPUTS,
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, len(TEXT_LABELS)]}],
        "preprocessing": {"tokenizer": "tokenizer.json", "max_tokens": 16},
        "postprocessing": {"output": "logits", "softmax": True},
        "limits": {"max_items": 16},
    }, labels=TEXT_LABELS)
    table = rng.normal(scale=0.05, size=(len(vocab), DIM)).astype(np.float32)
    for word, axis in (("good", 2), ("great", 2), ("bad", 0), ("terrible", 0), ("okay", 1), ("fine", 1)):
        table[vocab[word]] = 0.0
        table[vocab[word], axis] = 4.0
    weight = np.zeros((DIM, len(TEXT_LABELS)), dtype=np.float32)
    weight[[0, 1, 2], [0, 1, 2]] = 3.0
    bias = np.zeros(len(TEXT_LABELS), dtype=np.float32)
    text_classifier_onnx(mdir / "1" / "model.onnx", table, weight, bias)
    repo.cls_table, repo.cls_weight, repo.cls_bias = table, weight, bias

    # image-classifier: the mean color decides (pixels scaled to [0, 1])
    mdir = make_model(root, "image-classifier", {
        "task": "image-classification", "runtime": "onnx", "file": "model.onnx", "aliases": ["cnn"],
        "labels": "labels.txt",
        "inputs": [{"name": "pixel_values", "dtype": "float32", "shape": [-1, 3, 224, 224]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, len(IMAGE_LABELS)]}],
        "preprocessing": {"image_size": 224, "resize": 224, "interpolation": "bilinear",
                          "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]},
        "postprocessing": {"output": "logits", "softmax": True},
        "limits": {"max_items": 3, "max_image_bytes": IMAGE_MAX_BYTES, "max_image_pixels": 1_000_000},
    }, labels=IMAGE_LABELS)
    image_classifier_onnx(mdir / "1" / "model.onnx", np.eye(3, dtype=np.float32) * 10.0)

    mdir = make_model(root, "tensor-math", {**TENSOR_MANIFEST, "limits": {"max_items": 8}})
    tensor_onnx(mdir / "1" / "model.onnx")

    # broken: reported by name, never stops the others
    bdir = root / "broken"
    (bdir / "1").mkdir(parents=True)
    (bdir / "model.toml").write_text('task = "text-generation"\nruntime = "onnx"\n', encoding="utf-8")
    (bdir / "1" / "model.onnx").write_bytes(b"")

    # flaky: valid on disk, fails when loaded
    make_model(root, "flaky", fake_manifest(fail_load=FAIL_REASON))
    return repo


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError("the service never became ready")


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The seed API's error shape: exactly {"error": {"code", "message"}}; returns the inner object."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return dict(body["error"])
