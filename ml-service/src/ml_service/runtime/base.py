"""The small seam every runtime implements: load, predict a batch, unload, report memory."""

from __future__ import annotations

import functools
import importlib
import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ml_service.errors import ManifestError
from ml_service.manifest import Manifest, TensorSpec

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class RuntimeOptions:
    """What a runtime needs from the settings."""

    threads: int = 1
    device: str = "auto"  # auto | cpu | cuda
    spinning: bool = False
    arena_shrinkage: bool = True  # give the working memory back when a batch is the last of a burst


class Runtime(ABC):
    """One loaded model file. `predict` may be called from several compute threads at once."""

    name: str = "base"
    library: str = ""  # the module of the library it runs models with

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        self.path = path
        self.manifest = manifest
        self.options = options

    @classmethod  # noqa: B027 - optional hook
    def prime(cls, options: RuntimeOptions) -> None:
        """Pay the library's one-time costs in this process (its environment, thread pools, the code pages a first
        model touches), so that they count to the process and not to whichever model happens to load first. A
        library too heavy to import for models that may never load (torch) is not primed."""

    @abstractmethod
    def load(self) -> None:
        """Read the model file; heavy imports happen here, not at module import."""

    @abstractmethod
    def predict(self, feeds: dict[str, np.ndarray], release: bool = False) -> dict[str, np.ndarray]:
        """Run one batch: named inputs in, named outputs out (batch dimension first). `release`: nothing is queued
        after this batch, so the runtime may give its working memory back once it is done."""

    @abstractmethod
    def unload(self) -> None:
        """Release the model."""

    @property
    def loaded(self) -> bool:
        """Whether `predict` can run now."""
        return True

    @property
    def inputs(self) -> list[TensorSpec]:
        """Input tensors, as declared or as read from the model."""
        return list(self.manifest.inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        """Output tensors, as declared or as read from the model."""
        return list(self.manifest.outputs)

    @property
    def device(self) -> str:
        """Where the model runs ('cpu' or 'cuda')."""
        return "cpu"

    @classmethod
    def library_version(cls) -> str:
        """Which build of its library is installed (part of what a load profile is valid for): the library's
        module file and when it was written, found without importing it (which would cost ~0.4 s of metadata
        reading, or count its memory to the wrong model)."""
        return _installed(cls.library) if cls.library else ""


@functools.cache
def _installed(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return ""
    try:
        return f"{spec.origin}@{Path(spec.origin).stat().st_mtime_ns}"
    except OSError:
        return ""


#: runtime name -> "module:class", imported only when a model needs it (heavy imports stay lazy)
RUNTIMES: dict[str, str] = {
    "onnx": "ml_service.runtime.onnx:OnnxRuntime",
    "openvino": "ml_service.runtime.openvino:OpenVinoRuntime",
    "torchscript": "ml_service.runtime.torchscript:TorchScriptRuntime",
    "fake": "ml_service.runtime.fake:FakeRuntime",
}


def runtime_class(name: str) -> type[Runtime]:
    """The runtime class of a manifest's `runtime`; an unknown name is a ManifestError, never a silent fallback."""
    target = RUNTIMES.get(name)
    if target is None:
        raise ManifestError(f"unknown runtime {name!r}; known runtimes: {sorted(RUNTIMES)}")
    module, _, cls_name = target.partition(":")
    cls: type[Runtime] = getattr(importlib.import_module(module), cls_name)
    return cls


def create_runtime(path: Path, manifest: Manifest, options: RuntimeOptions) -> Runtime:
    """The runtime the manifest names (not loaded yet)."""
    return runtime_class(manifest.runtime)(path, manifest, options)
