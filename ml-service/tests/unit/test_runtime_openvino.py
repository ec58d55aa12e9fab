"""The OpenVINO runtime reads the same ONNX files as ONNX Runtime and gives the same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml_service.manifest import Manifest
from ml_service.runtime.base import RuntimeOptions, create_runtime
from tests.integration.helpers import embedding_onnx, tensor_onnx

pytest.importorskip("openvino")


def _manifest(runtime: str, **kw: object) -> Manifest:
    return Manifest.model_validate({"task": "tensor", "runtime": runtime,
                                    "inputs": [{"name": "a", "dtype": "float32", "shape": [-1, 4]},
                                               {"name": "b", "dtype": "float32", "shape": [-1, 4]}],
                                    "outputs": [{"name": "sum", "dtype": "float32", "shape": [-1, 4]},
                                                {"name": "prod", "dtype": "float32", "shape": [-1, 4]}], **kw})


def test_openvino_matches_onnxruntime_on_tensors(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    tensor_onnx(path)
    rng = np.random.default_rng(0)
    feeds = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=(3, 4)).astype(np.float32)}
    outs = {}
    for name in ("onnx", "openvino"):
        rt = create_runtime(path, _manifest(name), RuntimeOptions(threads=1))
        assert rt.name == name
        rt.load()
        outs[name] = rt.predict(feeds)
        rt.unload()
    assert set(outs["openvino"]) == {"sum", "prod"}
    for key in ("sum", "prod"):
        np.testing.assert_allclose(outs["openvino"][key], outs["onnx"][key], atol=1e-6)
    np.testing.assert_allclose(outs["openvino"]["sum"], feeds["a"] + feeds["b"], atol=1e-6)


def test_openvino_dynamic_batch_and_sequence(tmp_path: Path) -> None:
    path = tmp_path / "e.onnx"
    table = np.random.default_rng(1).normal(size=(20, 6)).astype(np.float32)
    embedding_onnx(path, table)
    manifest = Manifest.model_validate({"task": "tensor", "runtime": "openvino",
                                        "inputs": [{"name": n, "dtype": "int64", "shape": [-1, -1]}
                                                   for n in ("input_ids", "attention_mask", "token_type_ids")],
                                        "outputs": [{"name": "last_hidden_state", "dtype": "float32",
                                                     "shape": [-1, -1, 6]}]})
    rt = create_runtime(path, manifest, RuntimeOptions(threads=1))
    rt.load()
    for n, s in ((1, 3), (4, 7)):  # shapes change between calls, as batches do
        ids = np.arange(n * s, dtype=np.int64).reshape(n, s) % 20
        mask = np.ones_like(ids)
        out = rt.predict({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        np.testing.assert_allclose(out["last_hidden_state"], table[ids], atol=1e-6)
