"""A fake runtime for tests: deterministic outputs from inputs, with optional delay and failure.

Knobs come from the manifest's `[fake]` table: `delay_ms` per batch, `fail_load` (message),
`fail_on` (an input_ids value that fails its batch), `dim` (embedding size), `load_delay_ms`. A model file that
starts with `corrupt` fails to load, like a truncated real one (one version broken, the others fine).
"""

from __future__ import annotations

import time

import numpy as np

from ml_service.runtime.base import Runtime


class FakeRuntime(Runtime):
    """Pretends to be a model; used to test batching and the registry without a real model."""

    name = "fake"
    batches: list[int]

    def load(self) -> None:
        time.sleep(float(self.manifest.fake.get("load_delay_ms", 0)) / 1000)
        if self.manifest.fake.get("fail_load"):
            raise RuntimeError(str(self.manifest.fake["fail_load"]))
        if self.path.is_file() and self.path.read_bytes()[:7] == b"corrupt":
            raise RuntimeError("the model file is corrupt")
        self.batches = []
        self.releases = 0  # runs asked to give the working memory back
        self._loaded = True

    def predict(self, feeds: dict[str, np.ndarray], release: bool = False) -> dict[str, np.ndarray]:
        time.sleep(float(self.manifest.fake.get("delay_ms", 0)) / 1000)
        self.releases += release
        ids = feeds.get("input_ids")
        if ids is None:  # tensor or image models: echo a reduction of the first input
            first = next(iter(feeds.values()))
            n = first.shape[0]
            self.batches.append(n)
            flat = first.reshape(n, -1).astype(np.float32)
            return {"output": flat.sum(axis=1, keepdims=True)}
        fail_on = self.manifest.fake.get("fail_on")
        if fail_on is not None and bool((ids == int(fail_on)).any()):
            raise RuntimeError("fake failure")
        self.batches.append(int(ids.shape[0]))
        dim = int(self.manifest.fake.get("dim", 8))
        mask = feeds["attention_mask"].astype(np.float32)
        # token embedding = [id, 1, 0, ...] so mean pooling yields something input-dependent
        tok = np.zeros((*ids.shape, dim), dtype=np.float32)
        tok[..., 0] = ids.astype(np.float32)
        tok[..., 1] = 1.0
        tok *= mask[..., None]
        return {"last_hidden_state": tok}

    @property
    def loaded(self) -> bool:
        return bool(getattr(self, "_loaded", False))

    def unload(self) -> None:
        self._loaded = False
