"""Load shedding's rules (batching/pressure.py), driven with explicit times: the service rate over busy time,
admission by expected wait against the deadline, and the standing-queue bound on queueing delay."""

from __future__ import annotations

import pytest

from ml_service.batching.pressure import CALM_INTERVALS, RATE_WINDOW_S, Pressure, ShedPolicy
from ml_service.errors import DeadlineUnreachable, Overloaded, Shed

T = 1.0  # target wait, s
INTERVAL = 0.5  # s


def measured(rate: float, now: float = 0.0, policy: ShedPolicy | None = None) -> Pressure:
    """A pressure whose rate is `rate` items/s: one batch of `rate` items after one busy second, ending at `now`."""
    p = Pressure(policy or ShedPolicy(T, INTERVAL), "m:1", now - 1.0)
    p.busy(now - 1.0)
    p.completed(int(rate), now)
    p.idle(now)
    assert p.rate == pytest.approx(rate)
    return p


def standing(p: Pressure, start: float, delay: float, queued: int = 0) -> float:
    """Windows whose oldest item waited `delay`, `queued` items in the batcher, for one whole interval from `start`;
    returns the time after it, when the interval has been judged."""
    t = start
    while t <= start + INTERVAL:
        p.waited(delay, queued, t)
        t += 0.05
    p.waited(delay, queued, t)  # the interval is judged at the next event
    return t


def calm(p: Pressure, start: float, delay: float, intervals: int = CALM_INTERVALS) -> float:
    """`intervals` intervals in a row in which the queue needs `delay`."""
    t = start
    for _ in range(intervals):
        t = standing(p, t, delay)
    return t


def test_a_cold_model_admits_everything():
    p = Pressure(ShedPolicy(T, INTERVAL), "m:1", 0.0)
    assert p.rate is None and p.expected_wait(10_000) is None
    p.check(10_000, 10_000, 0.001, 0.0)  # no rate measured yet: nothing to judge by


def test_the_rate_is_items_per_busy_second_and_idle_time_does_not_count():
    p = Pressure(ShedPolicy(T, INTERVAL), "m:1", 0.0)
    p.busy(0.0)
    p.completed(10, 0.5)
    p.idle(0.5)
    assert p.rate == pytest.approx(20.0)
    p.busy(10.0)  # ten idle seconds later: not slower for it
    p.completed(10, 10.5)
    assert p.rate == pytest.approx(20.0)
    p.completed(30, 11.0)  # the last RATE_WINDOW_S only: the batch at 0.5 s has left the window
    assert p.rate == pytest.approx(40 / 1.0)


def test_the_rate_follows_the_last_window_of_batches():
    p = measured(100.0, now=1.0)
    p.busy(1.0)
    for k in range(1, 41):  # the model slows down to 10 items/s for 4 s
        p.completed(1, 1.0 + 0.1 * k)
    assert p.rate == pytest.approx(10.0, rel=0.05)
    assert RATE_WINDOW_S < 4.0


def test_expected_wait_counts_the_work_ahead_and_the_request_itself():
    p = measured(100.0)
    assert p.expected_wait(150, 50) == pytest.approx(2.0)
    assert p.expected_wait(0) == 0.0


def test_admission_by_expected_wait_at_the_deadline_boundary():
    p = measured(100.0)
    p.check(90, 10, 1.0, 0.0)  # expected 1.0 s, 1.0 s left: admitted
    with pytest.raises(DeadlineUnreachable) as info:
        p.check(91, 10, 1.0, 0.0)  # 1.01 s
    err = info.value
    assert isinstance(err, Shed) and err.status_code == 503 and err.code == "deadline_unreachable"
    assert err.headers["Retry-After"] == "1"
    assert "1.01 s" in err.message and "m:1" in err.message
    with pytest.raises(DeadlineUnreachable) as info:
        p.check(1000, 0, 2.5, 0.0)  # 10 s needed, 2.5 left: come back when 7.5 s of it are done
    assert info.value.headers["Retry-After"] == "8"


def test_a_queue_that_stands_over_two_thirds_of_the_target_for_an_interval_is_held_at_a_third():
    p = measured(100.0)
    t = standing(p, 0.0, 0.7)
    assert p.overloaded
    p.waited(0.3, 0, t)  # the queue has come down: the last window's oldest item waited 0.3 s
    p.check(33, 10, 60, t)  # 0.33 s of work ahead, under T/3: admitted
    with pytest.raises(Overloaded) as info:
        p.check(34, 1, 60, t)
    assert info.value.code == "overloaded" and info.value.headers["Retry-After"] == "1"
    assert "1 s" in info.value.message


def test_a_growing_queue_stands_as_soon_as_it_needs_over_two_thirds_of_the_target_for_an_interval():
    p = measured(100.0)
    t = standing(p, 0.0, 0.0, queued=60)  # 0.6 s: over the level a standing queue is held at, not standing
    assert not p.overloaded
    t = standing(p, t, 0.0, queued=67)  # nothing has waited long yet, but 0.67 s of work is queued (its interval
    t = standing(p, t, 0.0, queued=67)  # began with the 0.6 s sample that closed the last one: one more)
    assert p.overloaded
    calm(p, t, 0.0)  # not standing, nothing refused, long enough: over
    assert not p.overloaded


def test_the_bound_is_on_the_wait_behind_others_not_on_a_request_s_own_compute():
    """A request that alone needs more than the level is admitted to an empty queue even while shedding (refusing it
    would refuse it for ever, and every refusal would keep the model shedding with nothing queued)."""
    p = measured(100.0)
    t = standing(p, 0.0, 0.7)
    p.idle(t)
    p.check(0, 300, 60, t)  # 3 s of its own work, nothing ahead
    with pytest.raises(DeadlineUnreachable):
        p.check(0, 300, 2.0, t)  # but not past its deadline
    calm(p, t, 0.0)  # then nothing standing and nothing refused for long enough: over
    assert not p.overloaded


def test_while_the_queue_stands_the_measured_wait_overrules_an_optimistic_rate():
    p = measured(100.0)
    t = standing(p, 0.0, 0.7)
    p.waited(0.3, 0, t)
    p.check(10, 8, 60, t)  # 0.18 s expected, 0.3 s measured
    p.waited(0.7, 0, t)  # the model got slower than its rate says: what waits now waited 0.7 s
    with pytest.raises(Overloaded):
        p.check(10, 8, 60, t)
    p.idle(t)  # once the batcher is empty, no old measurement holds anything back
    p.check(10, 8, 60, t)


def test_a_burst_that_drains_within_the_interval_is_not_shed():
    p = measured(100.0)
    t = 0.0
    while t <= INTERVAL:
        p.waited(0.9 if t < 0.4 else 0.1, 0, t)  # long waits, then one window with a short one: not standing
        t += 0.05
    p.check(0, 0, 60, t)
    assert not p.overloaded
    p.check(500, 0, 60, t)  # 5 s of work ahead: only the deadline (60 s) judges it


def test_at_exactly_two_thirds_of_the_target_the_queue_does_not_stand():
    p = measured(100.0)
    standing(p, 0.0, ShedPolicy(T, INTERVAL).standing_s)
    assert not p.overloaded


def test_shedding_ends_only_after_a_run_of_calm_intervals():
    """A lull of a few admissions in a row does not end it (the queue would swing between T/3 and 2T/3 under a
    steady overload): CALM_INTERVALS intervals in a row without standing or refusing do."""
    p = measured(100.0)
    t = standing(p, 0.0, 0.8)
    assert p.overloaded
    with pytest.raises(Overloaded):
        p.check(100, 8, 60, t)
    t = standing(p, t, 0.3)  # drained below 2T/3, but this interval refused: still shedding
    t = calm(p, t, 0.3, CALM_INTERVALS - 1)
    assert p.overloaded  # one calm interval short
    with pytest.raises(Overloaded):
        p.check(100, 8, 60, t)  # a refusal starts the count again
    t = standing(p, t, 0.3)  # (the interval it fell in)
    t = calm(p, t, 0.3, CALM_INTERVALS - 1)
    assert p.overloaded
    t = standing(p, t, 0.3)
    assert not p.overloaded
    p.check(100, 8, 60, t)


def test_a_target_of_zero_bounds_nothing_but_the_deadline():
    p = measured(100.0, policy=ShedPolicy(0.0, INTERVAL))
    t = standing(p, 0.0, 30.0)
    assert not p.overloaded
    p.check(2000, 8, 60, t)
    with pytest.raises(DeadlineUnreachable):
        p.check(6000, 8, 60, t)
