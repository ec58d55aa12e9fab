"""OpenVINO: a second CPU runtime behind the same seam, reading the same ONNX files (optional extra)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ml_service.manifest import Manifest
from ml_service.runtime.base import Runtime, RuntimeOptions


class OpenVinoRuntime(Runtime):
    """An OpenVINO compiled model; each compute thread gets its own infer request."""

    name = "openvino"
    library = "openvino"

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        super().__init__(path, manifest, options)
        self._compiled: Any = None
        self._local = threading.local()
        self._outputs: list[str] = []

    def load(self) -> None:
        try:
            import openvino as ov
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("the openvino runtime needs the openvino package: pip install openvino") from exc
        core = ov.Core()
        model = core.read_model(str(self.path))
        config = {"INFERENCE_NUM_THREADS": self.options.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        self._compiled = core.compile_model(model, "CPU", config)
        self._outputs = [o.get_any_name() for o in self._compiled.outputs]

    def predict(self, feeds: dict[str, np.ndarray], release: bool = False) -> dict[str, np.ndarray]:
        if self._compiled is None:
            raise RuntimeError("model is not loaded")
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        names = {i.get_any_name() for i in self._compiled.inputs}
        result = request.infer({k: v for k, v in feeds.items() if k in names})
        return {name: np.array(result[i]) for i, name in enumerate(self._outputs)}

    @property
    def loaded(self) -> bool:
        return self._compiled is not None

    def unload(self) -> None:
        self._compiled = None
        self._local = threading.local()
