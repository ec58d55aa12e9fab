"""The TorchScript runtime: `torch.jit.load` (never pickle), inputs by declared order, named outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml_service.manifest import Manifest
from ml_service.runtime.base import RuntimeOptions, create_runtime

torch = pytest.importorskip("torch")


class _SumProd(torch.nn.Module):  # type: ignore[misc]
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, a * b


def _manifest(outputs: int = 2) -> Manifest:
    outs = [{"name": "sum", "dtype": "float32", "shape": [-1, 4]},
            {"name": "prod", "dtype": "float32", "shape": [-1, 4]}]
    return Manifest.model_validate({"task": "tensor", "runtime": "torchscript", "file": "model.pt",
                                    "inputs": [{"name": "a", "dtype": "float32", "shape": [-1, 4]},
                                               {"name": "b", "dtype": "float32", "shape": [-1, 4]}],
                                    "outputs": outs[:outputs]})


def test_torchscript_runs_a_scripted_module(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.jit.script(_SumProd()).save(str(path))
    rt = create_runtime(path, _manifest(), RuntimeOptions(threads=1, device="cpu"))
    assert rt.name == "torchscript"
    rt.load()
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.full((2, 4), 2.0, dtype=np.float32)
    out = rt.predict({"b": b, "a": a})  # fed by name, passed in the declared order
    np.testing.assert_allclose(out["sum"], a + b)
    np.testing.assert_allclose(out["prod"], a * b)
    assert rt.device == "cpu"
    rt.unload()
    with pytest.raises(RuntimeError, match="not loaded"):
        rt.predict({"a": a, "b": b})


def test_output_count_must_match_the_manifest(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.jit.script(_SumProd()).save(str(path))
    rt = create_runtime(path, _manifest(outputs=1), RuntimeOptions(threads=1))
    rt.load()
    with pytest.raises(RuntimeError, match="declares 1"):
        rt.predict({"a": np.zeros((1, 4), np.float32), "b": np.zeros((1, 4), np.float32)})


def test_a_pickle_is_not_loaded(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"not": "a torchscript archive"}))
    rt = create_runtime(path, _manifest(), RuntimeOptions(threads=1))
    with pytest.raises(Exception):  # noqa: B017 - torch's own error type; the point is it refuses
        rt.load()


def test_an_unknown_runtime_is_a_manifest_error_never_the_fake() -> None:
    from pathlib import Path

    from ml_service.errors import ManifestError
    from ml_service.manifest import Manifest
    from ml_service.runtime.base import RuntimeOptions, create_runtime

    m = Manifest.model_validate({"task": "tensor", "runtime": "fake", "inputs": [{"name": "x", "dtype": "float32",
                                 "shape": [-1]}], "outputs": [{"name": "y", "dtype": "float32", "shape": [-1]}]})
    m = m.model_copy(update={"runtime": "tensorrt"})  # past the schema, as a bad caller could
    with pytest.raises(ManifestError, match="unknown runtime 'tensorrt'"):
        create_runtime(Path("m.onnx"), m, RuntimeOptions())
