"""The GPU path on a machine without one: CUDA is chosen when onnxruntime offers it, and a CUDA provider that cannot
actually run (onnxruntime-gpu with no GPU, driver or CUDA libraries) falls back to the CPU loudly, not silently."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ml_service.manifest import load_manifest
from ml_service.runtime import onnx as ort_runtime
from ml_service.runtime.base import RuntimeOptions
from tests.integration.helpers import TENSOR_MANIFEST, tensor_onnx

CUDA = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(("device", "available", "chosen"), [
    ("auto", CUDA, ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    ("cuda", CUDA, ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    ("cpu", CUDA, ["CPUExecutionProvider"]),
    ("auto", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    ("cuda", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
])
def test_providers_follow_the_device_setting(device, available, chosen):
    assert ort_runtime.choose_providers(device, available) == chosen


def test_asking_for_cuda_without_it_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger=ort_runtime.__name__):
        ort_runtime.choose_providers("cuda", ["CPUExecutionProvider"])
    assert "no CUDA provider" in caplog.text


@pytest.fixture
def tensor_model(make_model):
    def build(root):
        mdir = make_model(root, "tensor-math", TENSOR_MANIFEST)
        tensor_onnx(mdir / "1" / "model.onnx")
        return mdir
    return build


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_a_cuda_provider_that_cannot_run_falls_back_to_the_cpu_and_says_so(tmp_path, tensor_model, monkeypatch,
                                                                          caplog):
    """This onnxruntime has no usable CUDA provider, as onnxruntime-gpu on a machine without a GPU: offered one
    anyway, the session still answers, on the CPU, and the log says why."""
    mdir = tensor_model(tmp_path)
    monkeypatch.setattr(ort_runtime, "choose_providers", lambda device, available=None:
                        ["CUDAExecutionProvider", "CPUExecutionProvider"])
    runtime = ort_runtime.OnnxRuntime(mdir / "1" / "model.onnx", load_manifest(mdir / "model.toml"),
                                      RuntimeOptions(device="cuda"))
    with caplog.at_level(logging.WARNING, logger=ort_runtime.__name__):
        runtime.load()
    assert runtime.device == "cpu"
    assert "tensor-math version 1: CUDAExecutionProvider could not be used" in caplog.text
    assert "running on the CPU" in caplog.text
    a = np.ones((2, 4), dtype=np.float32)
    assert np.array_equal(runtime.predict({"a": a, "b": a})["sum"], a * 2)


def test_a_cpu_model_logs_no_fallback(tmp_path, tensor_model, caplog):
    mdir = tensor_model(tmp_path)
    runtime = ort_runtime.OnnxRuntime(mdir / "1" / "model.onnx", load_manifest(mdir / "model.toml"),
                                      RuntimeOptions(device="cpu"))
    with caplog.at_level(logging.WARNING, logger=ort_runtime.__name__):
        runtime.load()
    assert runtime.device == "cpu" and "could not be used" not in caplog.text
