"""The dynamic batcher: when batches close, ordering, failures, cancellation, backpressure, deadlines."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ml_service.batching import Batcher, InferenceFailed, split_window
from ml_service.dataplane import Signature
from ml_service.errors import DeadlineExceeded, InvalidInput, MLServiceError, ModelUnavailable, QueueFull
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

    def predict(self, feeds):
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


# -- split_window --------------------------------------------------------------------------------
def test_split_window_caps_size_and_tokens_and_groups_keys():
    cfg = Batching(max_batch_size=3, max_batch_tokens=100)
    items = [Prepared(i, cost=c, key=k) for i, (c, k) in enumerate(
        [(10, "a"), (60, "a"), (5, "b"), (10, "a"), (10, "a"), (10, "a"), (150, "a"), (5, "b")])]
    batches = split_window(items, cfg)
    assert sorted(i for b in batches for i in b) == list(range(len(items)))
    for b in batches:
        assert len(b) <= 3
        assert len({items[i].key for i in b}) == 1
        assert len(b) == 1 or max(items[i].cost for i in b) * len(b) <= 100
    assert [2, 7] in batches  # the two "b" items together
    assert [6] in batches  # longer than the token budget: alone, never dropped


# -- when a batch closes -------------------------------------------------------------------------
def test_closes_on_max_batch_size():
    rt = GateRuntime()
    b = _batcher(rt, max_batch_size=4, window_factor=1, max_queue_delay_ms=10_000)

    async def scenario():
        first = await _hold_compute(b)
        futures = b.submit([(i, 5) for i in range(6)], 60)
        while len(b._ready) < 6:  # all six preprocessed and waiting
            await asyncio.sleep(0.005)
        rt.release(-1000)
        # a full batch goes at once: well before the 10 s queue delay would have passed
        results = await _results([first, *futures], timeout=5)
        assert _values(results) == [-10000, 0, 10, 20, 30, 40, 50]
        assert [len(x) for x in rt.batches] == [1, 4, 2]

    _run(b, scenario)


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_sizes_never_exceed_the_maximum(workers):
    rt = GateRuntime()
    b = _batcher(rt, max_batch_size=3, window_factor=2, workers=workers)

    async def scenario():
        results = await _results(b.submit([(i, 2) for i in range(14)], 60))
        assert _values(results) == [i * 10 for i in range(14)]
        assert max(len(x) for x in rt.batches) == 3
        assert sum(len(x) for x in rt.batches) == 14

    _run(b, scenario)


@pytest.mark.parametrize("workers", [1, 2])
def test_closes_on_max_batch_tokens(workers):
    rt = GateRuntime()
    b = _batcher(rt, max_batch_size=32, max_batch_tokens=100, workers=workers)

    async def scenario():
        lengths = [10, 60, 10, 10, 150, 60, 10]
        results = await _results(b.submit(list(enumerate(lengths)), 60))
        assert _values(results) == [i * 10 for i in range(len(lengths))]
        for lens in rt.lens:
            assert len(lens) == 1 or max(lens) * len(lens) <= 100, rt.lens
        assert sorted(rt.lens) == [[10, 10, 10, 10], [60], [60], [150]]

    _run(b, scenario)


def test_closes_on_max_queue_delay():
    task = ItemTask()
    rt = GateRuntime()
    b = _batcher(rt, task, max_batch_size=8, max_queue_delay_ms=50)

    async def scenario():
        first = await _hold_compute(b)
        (a,) = b.submit([(1, 3)], 60)
        while len(b._ready) < 1:
            await asyncio.sleep(0.005)
        task.hold_pre[2] = threading.Event()
        (late,) = b.submit([(2, 3)], 60)  # stuck in preprocessing: "more is on its way"
        await _wait_event(task.in_pre.setdefault(2, threading.Event()))
        rt.release(-1000)
        # item 1 does not wait for item 2 longer than the queue delay
        assert _values(await _results([first, a])) == [-10000, 10]
        assert not late.done()
        task.hold_pre[2].set()
        assert _values(await _results([late])) == [20]
        assert rt.batches == [[-1000], [1], [2]]

    _run(b, scenario)


def test_waits_up_to_the_delay_to_fill_a_batch():
    task = ItemTask()
    rt = GateRuntime()
    b = _batcher(rt, task, max_batch_size=8, max_queue_delay_ms=10_000)

    async def scenario():
        first = await _hold_compute(b)
        (a,) = b.submit([(1, 3)], 60)
        while len(b._ready) < 1:
            await asyncio.sleep(0.005)
        task.hold_pre[2] = threading.Event()
        (late,) = b.submit([(2, 3)], 60)
        await _wait_event(task.in_pre.setdefault(2, threading.Event()))
        rt.release(-1000)
        await _results([first])
        await asyncio.sleep(0.3)
        assert not a.done()  # held back: item 2 is on its way and the delay is long
        task.hold_pre[2].set()
        assert _values(await _results([a, late])) == [10, 20]
        assert rt.batches == [[-1000], [1, 2]]

    _run(b, scenario)


def test_a_lone_item_is_not_held_for_the_delay():
    rt = GateRuntime()
    b = _batcher(rt, max_batch_size=8, max_queue_delay_ms=10_000)

    async def scenario():
        # nothing else is queued, so the 10 s delay is not waited for
        assert _values(await _results(b.submit([(7, 3)], 60), timeout=5)) == [70]

    _run(b, scenario)


# -- ordering and failures ---------------------------------------------------------------------
def test_results_come_back_in_request_order_although_windows_are_length_sorted():
    rt = GateRuntime()
    b = _batcher(rt, max_batch_size=3, window_factor=4)

    async def scenario():
        lengths = [50, 3, 20, 1, 7, 33, 2, 12]
        results = await _results(b.submit(list(enumerate(lengths)), 60))
        assert _values(results) == [i * 10 for i in range(len(lengths))]
        assert [r.meta for r in results] == [{}] * len(lengths)
        seen = [i for batch in rt.batches for i in batch]
        assert seen == sorted(range(len(lengths)), key=lambda i: lengths[i])  # shortest first, padding cut
        assert results[0].batch_size == len(rt.batches[-1])

    _run(b, scenario)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_exception_fails_only_its_own_batch(workers):
    rt = GateRuntime(fail_ids={3})
    b = _batcher(rt, max_batch_size=2, workers=workers)

    async def scenario():
        results = await _results(b.submit([(i, 4) for i in range(6)], 60))
        assert _values(results[:2]) == [0, 10]
        assert isinstance(results[2], InferenceFailed) and isinstance(results[3], InferenceFailed)
        assert results[2].status_code == 500
        assert "the runtime failed" not in results[2].message  # details stay in the log
        assert _values(results[4:]) == [40, 50]
        assert b.stats.failed_batches == 1
        assert _values(await _results(b.submit([(9, 4)], 60))) == [90]  # and it keeps working
        assert b.pending == 0

    _run(b, scenario)


def test_an_item_rejected_by_preprocessing_fails_alone():
    rt = GateRuntime()
    b = _batcher(rt)

    async def scenario():
        results = await _results(b.submit([(0, 2), (1, -1), (2, 2)], 60))
        assert _values([results[0], results[2]]) == [0, 20]
        assert isinstance(results[1], InvalidInput)
        assert 1 not in rt.seen
        assert b.pending == 0

    _run(b, scenario)


@pytest.mark.parametrize("workers", [1, 2])
def test_no_starvation_under_mixed_lengths(workers):
    rt = GateRuntime(delay_s=0.001)
    b = _batcher(rt, max_batch_size=8, max_batch_tokens=256, window_factor=2, workers=workers)
    rng = random.Random(7)

    async def scenario():
        (long_item,) = b.submit([(0, 250)], 60)
        futures, expected = [long_item], [0]
        next_id = 1
        for _ in range(30):  # a steady stream of mostly short items, with some long ones
            batch = []
            for _ in range(rng.randint(1, 12)):
                batch.append((next_id, rng.choice([1, 2, 3, 4, 200, 250]) if rng.random() < 0.1 else rng.randint(1, 8)))
                expected.append(next_id * 10)
                next_id += 1
            futures += b.submit(batch, 60)
            await asyncio.sleep(0.002)
        stream_done = long_item.done()
        results = await _results(futures)
        assert _values(results) == expected
        assert stream_done, "the first (long) item waited for the whole stream of short ones"
        assert b.pending == 0
        assert b.stats.items == len(expected)

    _run(b, scenario)


@pytest.mark.parametrize("workers", [1, 2])
def test_many_concurrent_requests_all_complete(workers):
    rt = GateRuntime()
    b = _batcher(rt, max_batch_size=16, max_batch_tokens=64, workers=workers)
    rng = random.Random(3)

    async def one_request(base):
        items = [(base + k, rng.randint(1, 40)) for k in range(rng.randint(1, 20))]
        await asyncio.sleep(rng.random() / 50)
        res = await _results(b.submit(items, 60))
        assert _values(res) == [i * 10 for i, _ in items]
        return len(items)

    async def scenario():
        counts = await asyncio.gather(*(one_request(1000 * r) for r in range(40)))
        assert sum(len(x) for x in rt.batches) == sum(counts)
        assert b.pending == 0

    _run(b, scenario)


# -- cancellation, backpressure, deadlines, stop ---------------------------------------------------
def test_a_cancelled_item_is_skipped_and_not_computed():
    rt = GateRuntime()
    b = _batcher(rt)

    async def scenario():
        first = await _hold_compute(b)
        a, keep = b.submit([(1, 2), (2, 2)], 60)
        a.cancel()
        rt.release(-1000)
        assert _values(await _results([first, keep])) == [-10000, 20]
        assert 1 not in rt.seen
        assert b.pending == 0

    _run(b, scenario)


def test_queue_full_is_refused_at_submit_with_retry_after():
    rt = GateRuntime()
    b = _batcher(rt, max_queue_size=4)

    async def scenario():
        first = await _hold_compute(b)
        queued = b.submit([(1, 1), (2, 1)], 60)
        with pytest.raises(QueueFull) as info:
            b.submit([(3, 1), (4, 1)], 60)  # 3 pending + 2 > 4: the whole request is refused
        exc = info.value
        assert exc.status_code == 503
        assert exc.code == "queue_full"
        assert exc.headers == {"Retry-After": "1"}
        assert b.pending == 3
        queued += b.submit([(5, 1)], 60)  # exactly full is fine
        with pytest.raises(QueueFull):
            b.submit([(6, 1)], 60)
        rt.release(-1000)
        assert _values(await _results([first, *queued])) == [-10000, 10, 20, 50]
        assert not ({3, 4, 6} & rt.seen)
        assert _values(await _results(b.submit([(7, 1)] * 4, 60))) == [70] * 4  # room again

    _run(b, scenario)


def test_an_item_past_its_deadline_is_answered_and_not_computed():
    rt = GateRuntime()
    b = _batcher(rt)

    async def scenario():
        first = await _hold_compute(b)
        (late,) = b.submit([(1, 2)], 0.05)
        (in_time,) = b.submit([(2, 2)], 60)
        await asyncio.sleep(0.3)
        rt.release(-1000)
        results = await _results([first, late, in_time])
        assert _values([results[0], results[2]]) == [-10000, 20]
        assert isinstance(results[1], DeadlineExceeded)
        assert results[1].status_code == 504
        assert 1 not in rt.seen
        assert b.stats.expired == 1
        assert b.pending == 0

    _run(b, scenario)


def test_stop_fails_leftovers_with_model_unavailable():
    rt = GateRuntime()
    b = _batcher(rt)

    async def scenario():
        first = await _hold_compute(b)
        leftovers = b.submit([(1, 2), (2, 2)], 60)
        while len(b._ready) < 2:
            await asyncio.sleep(0.005)
        stopping = asyncio.create_task(asyncio.to_thread(b.stop, WAIT))
        results = await _results(leftovers)
        assert all(isinstance(r, ModelUnavailable) for r in results), results
        assert results[0].status_code == 503
        rt.release(-1000)
        await stopping
        assert _values(await _results([first])) == [-10000]  # the batch already running finishes
        assert not ({1, 2} & rt.seen)
        with pytest.raises(ModelUnavailable, match="unloading"):
            b.submit([(3, 1)], 60)
        assert b.pending == 0

    _run(b, scenario)


def test_stats_count_batches_items_and_padding():
    rt = GateRuntime()
    b = Batcher("test", ItemTask(), rt, Batching(max_batch_size=2))

    async def scenario():
        await _results(b.submit([(0, 2), (1, 4)], 60))
        assert b.stats.batches == 1
        assert b.stats.items == 2
        assert b.stats.real_tokens == 6
        assert b.stats.padded_tokens == 8
        assert list(b.stats.recent_sizes) == [2]

    _run(b, scenario)


def test_items_still_in_preprocessing_when_stopped_fail_at_once():
    task = ItemTask()
    task.hold_pre[7] = threading.Event()
    rt = GateRuntime()
    b = _batcher(rt, task)

    async def scenario():
        (fut,) = b.submit([(7, 3)], 60)
        await _wait_event(task.in_pre.setdefault(7, threading.Event()))
        stopping = asyncio.create_task(asyncio.to_thread(b.stop, WAIT))
        await asyncio.sleep(0.05)
        task.hold_pre[7].set()  # preprocessing finishes after stop(): the item must not wait for its deadline
        (result,) = await _results([fut], timeout=10)
        assert isinstance(result, ModelUnavailable) and result.status_code == 503
        await stopping
        assert 7 not in rt.seen and b.pending == 0

    _run(b, scenario)


def test_a_worker_survives_an_unexpected_error_and_keeps_serving():
    class Flaky(GateRuntime):
        def predict(self, feeds):
            if 666 in feeds["ids"].tolist():
                raise MemoryError("out of memory")  # the message must not reach the client
            return super().predict(feeds)

    b = _batcher(Flaky(), workers=1)

    async def scenario():
        bad = await _results(b.submit([(666, 1)], 60))
        assert isinstance(bad[0], MLServiceError) and bad[0].status_code == 500
        assert "out of memory" not in bad[0].message
        good = await _results(b.submit([(1, 1), (2, 1)], 60))
        assert _values(good) == [10, 20]
        assert b.pending == 0

    _run(b, scenario)


def test_a_big_request_does_not_hold_back_a_small_one():
    """Requests share the queues round-robin, a batch a turn: one item sent after 200 is computed in the next window,
    not last."""
    rt = GateRuntime(delay_s=0.002)
    b = _batcher(rt, workers=1, max_batch_size=4, window_factor=2)

    async def scenario():
        held = await _hold_compute(b)
        big = b.submit([(i, 1) for i in range(200)], 60)
        (small,) = b.submit([(999, 1)], 60)
        rt.release(-1000)
        await _results([held, small])
        position = next(i for i, batch in enumerate(rt.batches) if 999 in batch)
        assert position <= 2, rt.batches[:6]  # the held batch, at most one batch of big's, then its own
        results = await _results(big)
        assert _values(results) == [i * 10 for i in range(200)]

    _run(b, scenario)


def test_requests_up_to_a_batch_are_served_whole_in_the_order_they_came():
    """Issue 23: with a backlog of 8-item requests, each is answered after the work ahead of it (one item a turn
    from every request made each wait for the whole queue, and for what came after it)."""
    rt = GateRuntime()
    b = _batcher(rt, workers=1, max_batch_size=8, window_factor=1)

    async def scenario():
        held = await _hold_compute(b)
        requests = [b.submit([(100 * r + k, 1) for k in range(8)], 60) for r in range(6)]
        rt.release(-1000)
        await _results([held, *(f for r in requests for f in r)])
        assert [sorted(x // 100 for x in batch) for batch in rt.batches[1:]] == [[r] * 8 for r in range(6)]

    _run(b, scenario)


def test_preprocessing_takes_bounded_chunks_round_robin():
    """A pre thread takes at most a window of items at a time, a batch at most from each request in turn."""
    task = ItemTask()
    seen: list[list[int]] = []
    original = task.preprocess

    def recording(items, budgets):
        seen.append([i for i, _ in items])
        return original(items, budgets)

    task.preprocess = recording
    task.hold_pre[-1] = threading.Event()
    b = _batcher(task=task, workers=1, max_batch_size=4, window_factor=2)

    async def scenario():
        (first,) = b.submit([(-1, 1)], 60)
        await _wait_event(task.in_pre.setdefault(-1, threading.Event()))
        big = b.submit([(i, 1) for i in range(100)], 60)
        small = b.submit([(1000 + i, 1) for i in range(3)], 60)
        task.hold_pre[-1].set()
        await _results([first, *big, *small])
        chunks = seen[1:]
        assert max(len(c) for c in chunks) <= 8
        assert chunks[0] == [0, 1, 2, 3, 1000, 1001, 1002, 4]  # batches of 4: big's first, small's whole, big's

    _run(b, scenario)


def test_cancelled_items_are_counted_and_never_computed():
    rt = GateRuntime()
    b = _batcher(rt, workers=1)

    async def scenario():
        held = await _hold_compute(b)
        futures = b.submit([(i, 1) for i in range(50)], 60)
        for f in futures:
            f.cancel()
        rt.release(-1000)
        await _results([held])
        more = await _results(b.submit([(77, 1)], 60))
        assert _values(more) == [770]
        assert not rt.seen & set(range(50))
        assert b.stats.cancelled == 50 and b.pending == 0

    _run(b, scenario)


def test_a_post_step_runs_on_its_requests_rows_only():
    rt = GateRuntime()
    b = _batcher(rt, workers=1, max_batch_size=8)

    def double(rows):
        return [{"y": r["y"] * 2} for r in rows]

    def broken(rows):
        raise RuntimeError("head exploded")

    async def scenario():
        held = await _hold_compute(b)
        plain = b.submit([(1, 1), (2, 1)], 60)
        doubled = b.submit([(3, 1)], 60, post=double)
        failed = b.submit([(4, 1)], 60, post=broken)
        rt.release(-1000)
        results = await _results([held, *plain, *doubled, *failed])
        assert _values(results[:4]) == [-10000, 10, 20, 60]
        assert isinstance(results[4], InferenceFailed) and "exploded" not in results[4].message
        assert b.pending == 0

    _run(b, scenario)
