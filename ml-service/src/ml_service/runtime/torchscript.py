"""TorchScript runtime (optional `torch` extra): `torch.jit.load`, never pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ml_service.manifest import Manifest
from ml_service.runtime.base import Runtime, RuntimeOptions


class TorchScriptRuntime(Runtime):
    """A TorchScript module; inputs are passed positionally in the manifest's declared order."""

    name = "torchscript"
    library = "torch"

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        super().__init__(path, manifest, options)
        self._module: Any = None
        self._torch: Any = None
        self._device = "cpu"

    def load(self) -> None:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("the torchscript runtime needs torch: pip install 'ml-service[torch]'") from exc
        if not self.manifest.inputs or not self.manifest.outputs:
            raise RuntimeError("torchscript models must declare their inputs and outputs in model.toml")
        want_cuda = self.options.device in ("auto", "cuda") and torch.cuda.is_available()
        self._device = "cuda" if want_cuda else "cpu"
        torch.set_num_threads(self.options.threads)
        module = torch.jit.load(str(self.path), map_location=self._device)  # type: ignore[no-untyped-call]
        module.eval()
        self._module, self._torch = module, torch

    def predict(self, feeds: dict[str, np.ndarray], release: bool = False) -> dict[str, np.ndarray]:
        torch = self._torch
        if self._module is None:
            raise RuntimeError("model is not loaded")
        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])).to(self._device)
                for s in self.manifest.inputs]
        with torch.inference_mode():
            out = self._module(*args)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        names = [s.name for s in self.manifest.outputs]
        if len(out) != len(names):
            raise RuntimeError(f"model returned {len(out)} outputs, model.toml declares {len(names)}")
        return {n: t.detach().cpu().numpy() for n, t in zip(names, out, strict=True)}

    @property
    def loaded(self) -> bool:
        return self._module is not None

    def unload(self) -> None:
        self._module = None

    @property
    def device(self) -> str:
        return self._device
