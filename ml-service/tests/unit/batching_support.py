"""What the batcher tests share: a task whose items are ids, a runtime whose batches can be held, and the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np

from ml_service.batching import Batcher
from ml_service.dataplane import Signature
from ml_service.errors import InvalidInput
from ml_service.manifest import Batching, Manifest
from ml_service.repository import ModelEntry, ModelVersion
from ml_service.runtime.base import Runtime, RuntimeOptions
from ml_service.tasks import ModelTask, Prepared

WAIT = 10.0  # generous: only reached when something is wrong

MANIFEST = Manifest.model_validate({
    "task": "tensor", "runtime": "fake",
    "inputs": [{"name": "ids", "dtype": "int64", "shape": [-1]}],
    "outputs": [{"name": "y", "dtype": "int64", "shape": [-1]}],
})


class ItemTask(ModelTask):
    """Raw items are `(item id, length)`; the length is the item's token cost.

    `hold_pre` holds preprocessing of the given ids until their event is set; a negative length is
    an item that preprocessing rejects.
    """

    name = "items"

    def __init__(self):
        entry = ModelEntry("items", Path("."), MANIFEST)
        super().__init__(entry, ModelVersion(1, Path(".")), MANIFEST)
        self.hold_pre: dict[int, threading.Event] = {}
        self.in_pre: dict[int, threading.Event] = {}

    @classmethod
    def signature(cls, manifest, labels):
        return Signature((), (), "tensors")

    def check_item(self, item, where):
        pass

    def preprocess(self, items, budgets):
        out = []
        for item_id, length in items:
            if item_id in self.hold_pre:
                self.in_pre.setdefault(item_id, threading.Event()).set()
                assert self.hold_pre[item_id].wait(WAIT)
            if length < 0:
                out.append(InvalidInput(f"item {item_id} has a negative length"))
            else:
                out.append(Prepared(item_id, cost=length))
        return out

    def collate(self, batch):
        return {"ids": np.array([p.features for p in batch], dtype=np.int64),
                "lens": np.array([p.cost for p in batch], dtype=np.int64)}

    def postprocess(self, outputs, feeds, batch):
        return [{"y": outputs["y"][i]} for i in range(len(batch))]


class GateRuntime(Runtime):
    """Records every batch; can hold a batch that contains a given id, and fail batches with given ids."""

    name = "gate"

    def __init__(self, fail_ids=(), delay_s=0.0):
        super().__init__(Path("unused"), MANIFEST, RuntimeOptions())
        self.batches: list[list[int]] = []  # ids per batch, in the order the runtime saw them
        self.lens: list[list[int]] = []
        self.fail_ids = set(fail_ids)
        self.delay_s = delay_s
        self.gates: dict[int, threading.Event] = {}
        self.entered: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def hold(self, item_id):
        """Make the batch holding `item_id` wait until `release(item_id)`."""
        self.gates[item_id] = threading.Event()
        self.entered[item_id] = threading.Event()

    def release(self, item_id):
        self.gates[item_id].set()

    def load(self):
        pass

    def unload(self):
        pass

    def predict(self, feeds, release=False):
        ids = feeds["ids"].tolist()
        with self._lock:
            self.batches.append(ids)
            self.lens.append(feeds["lens"].tolist())
        for i in ids:
            if i in self.gates:
                self.entered[i].set()
                assert self.gates[i].wait(WAIT)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_ids & set(ids):
            raise RuntimeError("the runtime failed")
        return {"y": feeds["ids"] * 10}

    @property
    def seen(self) -> set[int]:
        return {i for b in self.batches for i in b}


def _batcher(runtime=None, task=None, workers=1, shedding=None, **cfg):
    cfg = {"max_batch_size": 4, "max_queue_delay_ms": 5, "max_queue_size": 1000, "window_factor": 4, **cfg}
    return Batcher("test", task or ItemTask(), runtime or GateRuntime(), Batching(**cfg), workers=workers,
                   shedding=shedding)


def _run(batcher: Batcher, scenario):
    async def main():
        batcher.start()
        try:
            await asyncio.wait_for(scenario(), 60)
        finally:
            for gate in getattr(batcher.runtime, "gates", {}).values():
                gate.set()
            for gate in getattr(batcher.task, "hold_pre", {}).values():
                gate.set()
            await asyncio.to_thread(batcher.stop, 5.0)

    asyncio.run(main())


async def _wait_event(event: threading.Event):
    assert await asyncio.to_thread(event.wait, WAIT), "timed out waiting for the worker"


async def _results(futures, timeout=WAIT):
    return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), timeout)


async def _hold_compute(batcher, item_id=-1000):
    """Submit one item and hold the compute thread inside the runtime with it."""
    runtime = batcher.runtime
    runtime.hold(item_id)
    (fut,) = batcher.submit([(item_id, 1)], 60)
    await _wait_event(runtime.entered[item_id])
    return fut


def _values(results):
    return [int(r.outputs["y"]) if not isinstance(r, BaseException) else r for r in results]
