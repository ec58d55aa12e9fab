"""Load shedding in the batcher (issue 23): admission by expected wait and the queue-delay bound, on real threads
with a runtime of known speed. Bounds are generous: a slower machine only makes the model slower, which makes
every refusal here more certain, and the bounds on waits are far from what the same load costs without shedding."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from ml_service.batching import ShedPolicy
from ml_service.errors import DeadlineUnreachable, Shed

from .batching_support import GateRuntime, _batcher, _hold_compute, _results, _run


async def _open_loop(b, seconds: float, every_s: float, items: int) -> list[tuple[str, float]]:
    """Requests of `items` due every `every_s` whatever the answers (open loop), each admitted and submitted as the
    data plane does; returns each request's outcome ('ok', or the error code) and its latency in seconds."""
    outcomes: list[tuple[str, float]] = []

    async def one(base: int) -> None:
        t0 = time.perf_counter()
        try:
            b.admit(items, 60)
            results = await _results(b.submit([(base + k, 1) for k in range(items)], 60))
        except Shed as exc:
            outcomes.append((exc.code, time.perf_counter() - t0))
            return
        errors = [r for r in results if isinstance(r, BaseException)]
        outcomes.append((errors[0].code if errors else "ok", time.perf_counter() - t0))

    tasks = []
    start = time.perf_counter()
    k = 0
    while time.perf_counter() - start < seconds:
        while k * every_s <= time.perf_counter() - start:
            tasks.append(asyncio.create_task(one(1000 * k)))
            k += 1
        await asyncio.sleep(every_s / 4)
    await asyncio.gather(*tasks)
    assert len(outcomes) == len(tasks)  # every request exactly one outcome
    return outcomes


def test_a_cold_batcher_admits_and_then_refuses_what_it_cannot_finish_by_the_deadline():
    rt = GateRuntime(delay_s=0.05)  # a batch of at most 2 takes >= 50 ms: at most 40 items/s
    b = _batcher(rt, max_batch_size=2, window_factor=1)

    async def scenario():
        assert b.expected_wait() is None
        b.admit(10_000, 0.001)  # no rate measured yet: admitted
        await _results(b.submit([(1, 1), (2, 1)], 60))
        assert 0 < b.pressure.rate <= 40
        held = await _hold_compute(b)
        queued = b.submit([(i, 1) for i in range(10, 30)], 60)  # 21 items in the batcher: >= 0.5 s of work
        assert b.expected_wait() >= 21 / 40
        with pytest.raises(DeadlineUnreachable) as info:
            b.admit(2, 0.2)
        assert info.value.headers["Retry-After"] == "1"
        b.admit(2, 60)  # the same request with time to spare
        rt.release(-1000)
        await _results([held, *queued])

    _run(b, scenario)


def test_under_sustained_overload_accepted_requests_wait_about_the_target_not_the_backlog():
    target = 0.4
    rt = GateRuntime(delay_s=0.02)  # 4 items per >= 20 ms: at most 200 items/s
    b = _batcher(rt, max_batch_size=4, window_factor=1, shedding=ShedPolicy(target, 0.1))

    async def scenario():
        # 4 items every 5 ms = 800 items/s for 2.5 s: at least 4x capacity. Queued to the deadline (60 s), the
        # last accepted requests would wait ~7 s.
        outcomes = await _open_loop(b, 2.5, 0.005, 4)
        waits = sorted(w for code, w in outcomes if code == "ok")
        codes = {code for code, _ in outcomes}
        assert codes <= {"ok", "overloaded"}, codes  # nothing else: no deadline, no 5xx
        refused = [w for code, w in outcomes if code == "overloaded"]
        assert len(refused) > len(outcomes) / 2  # most of the excess is refused...
        assert len(waits) >= 2.5 * 200 / 4 / 4  # ...while the model keeps working (a quarter of its rate, at least)
        assert waits[-1] < 3 * target, waits[-10:]  # and what it accepts stays near the target
        assert b.stats.items >= 4 * len(waits)

    _run(b, scenario)


def test_below_capacity_nothing_is_shed():
    rt = GateRuntime(delay_s=0.02)
    b = _batcher(rt, max_batch_size=4, window_factor=1, shedding=ShedPolicy(0.3, 0.05))

    async def scenario():
        outcomes = await _open_loop(b, 1.5, 0.08, 4)  # 50 items/s: a quarter of capacity, with a tight target
        assert {code for code, _ in outcomes} == {"ok"}
        assert not b.pressure.overloaded

    _run(b, scenario)


def test_the_rate_and_the_expected_wait_are_measured_from_completed_batches():
    rt = GateRuntime(delay_s=0.01)
    b = _batcher(rt, max_batch_size=4, window_factor=1)

    async def scenario():
        await _results(b.submit([(i, 1) for i in range(40)], 60))  # 10 batches of 4, >= 10 ms each
        rate = b.pressure.rate
        assert rate is not None and 0 < rate <= 400
        assert b.expected_wait() == 0.0
        assert math.isclose(b.pressure.expected_wait(0, 40), 40 / rate)

    _run(b, scenario)
