"""The dynamic batcher: when batches close, ordering, failures, cancellation, backpressure, deadlines."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from ml_service.batching import Batcher, InferenceFailed, split_window
from ml_service.errors import DeadlineExceeded, InvalidInput, ModelUnavailable, QueueFull
from ml_service.manifest import Batching
from ml_service.tasks import Prepared

from .batching_support import (
    WAIT,
    GateRuntime,
    ItemTask,
    _batcher,
    _hold_compute,
    _results,
    _run,
    _values,
    _wait_event,
)


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
