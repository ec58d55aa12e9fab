"""ONNX Runtime: the fast path (all graph optimizations; CUDA when present and asked for)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ml_service.manifest import DType, Manifest, TensorSpec
from ml_service.runtime.base import Runtime, RuntimeOptions

log = logging.getLogger(__name__)

_ORT_TYPES: dict[str, DType] = {
    "tensor(bool)": "bool", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(int8)": "int8",
    "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(float16)": "float16", "tensor(float)": "float32", "tensor(double)": "float64",
    "tensor(string)": "string",
}


def choose_providers(device: str, available: list[str] | None = None) -> list[str]:
    """Execution providers for a device setting: CUDA first when available (`available`: what this onnxruntime build
    offers, asked of it when not given) and not turned off."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        log.warning("ML_SERVICE_DEVICE=cuda but onnxruntime has no CUDA provider; using the CPU")
    return ["CPUExecutionProvider"]


# y = x @ w with x: float[?, 4] and w: four by four zeros; ir 8, opset 17, as onnx 1.23 writes it (a unit test
# rebuilds it). What `OnnxRuntime.prime` opens and runs.
_PRIME_GRAPH = bytes.fromhex(
    "0808120a6d6c2d736572766963653a8d010a110a01780a017712017922064d61744d756c12057072696d652a4b08040804100122"
    "40000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000004201775a110a0178120c0a0a080112060a000a02080462110a0179120c0a0a080112060a000a02"
    "080442040a001011")


def _session_options(options: RuntimeOptions) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = options.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    # Spinning threads burn the cores the HTTP layer and tokenizer need between batches.
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
    return so


def _spec(arg: Any) -> TensorSpec:
    shape = [d if isinstance(d, int) and d > 0 else -1 for d in arg.shape]
    return TensorSpec(name=arg.name, dtype=_ORT_TYPES.get(arg.type, "float32"), shape=shape)


class OnnxRuntime(Runtime):
    """An `onnxruntime.InferenceSession` over one .onnx file."""

    name = "onnx"
    library = "onnxruntime"

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        super().__init__(path, manifest, options)
        self._session: Any = None
        self._input_names: list[str] = []
        self._release: Any = None

    @classmethod
    def prime(cls, options: RuntimeOptions) -> None:
        """Open and run a one-MatMul graph with the models' options: onnxruntime's first session costs ~30 MB of
        code pages and environment (measured here), once per process."""
        import onnxruntime as ort

        session = ort.InferenceSession(_PRIME_GRAPH, sess_options=_session_options(options),
                                       providers=choose_providers(options.device))
        session.run(None, {"x": np.ones((2, 4), dtype=np.float32)})

    def load(self) -> None:
        import onnxruntime as ort

        providers = choose_providers(self.options.device)
        self._session = ort.InferenceSession(str(self.path), sess_options=_session_options(self.options),
                                             providers=providers)
        if providers[0] != "CPUExecutionProvider" and providers[0] not in self._session.get_providers():
            # onnxruntime-gpu without a usable driver or CUDA/cuDNN libraries falls back quietly: say so once a load
            log.warning("%s version %s: %s could not be used (no GPU, driver or CUDA/cuDNN libraries for this "
                        "onnxruntime build); running on the CPU", self.path.parent.parent.name, self.path.parent.name,
                        providers[0])
        self._input_names = [i.name for i in self._session.get_inputs()]
        if self.options.arena_shrinkage:
            # a run with `release` gives the arena's free chunks back: idle memory is the weights, not the largest
            # batch ever run (text-embedding after a 32x128 batch: +296 MB -> +68 MB)
            ro = ort.RunOptions()
            ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cuda:0" if self.device == "cuda"
                                    else "cpu:0")
            self._release = ro

    def predict(self, feeds: dict[str, np.ndarray], release: bool = False) -> dict[str, np.ndarray]:
        session = self._session
        if session is None:
            raise RuntimeError("model is not loaded")
        feed = {k: v for k, v in feeds.items() if k in self._input_names}
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, feed, self._release if release else None)
        return dict(zip(names, results, strict=True))

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def unload(self) -> None:
        self._session = None

    @property
    def inputs(self) -> list[TensorSpec]:
        """The graph's own inputs once loaded (the file is the truth), else as declared."""
        if self._session is None:
            return super().inputs
        return [_spec(i) for i in self._session.get_inputs()]

    @property
    def outputs(self) -> list[TensorSpec]:
        if self._session is None:
            return super().outputs
        return [_spec(o) for o in self._session.get_outputs()]

    @property
    def device(self) -> str:
        if self._session is not None and "CUDAExecutionProvider" in self._session.get_providers():
            return "cuda"
        return "cpu"
