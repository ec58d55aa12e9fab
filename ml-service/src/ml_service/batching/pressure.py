"""Load shedding for one model version's batcher: its measured service rate, the expected wait of new work, and a
standing-queue detector in the spirit of CoDel as Facebook runs it in front of its servers (folly's `Codel`).

* **Service rate**: items completed per second of *busy* time (time with work in the batcher) over the last
  `RATE_WINDOW_S` of completed batches. Busy time, not wall time: an idle spell does not make the model look slow,
  and under a backlog it is the real throughput, tokenizing and every other overhead included. None until the
  first batch completes: a cold model admits everything.
* **Queueing delay**: the larger of what the items in the batcher need at that rate (it leads: a growing queue
  shows at once) and how long the oldest item of the last window waited (measured: it corrects a rate that is too
  optimistic when the model slows down, its CPU taken by something else). The **expected wait** of a request of n
  items adds n / rate: when its last item should be done.
* **Admission by expected wait**: a request expected to finish after its deadline is refused at once
  (`DeadlineUnreachable`) instead of waiting for a 504.
* **A bound on queueing delay**, the target wait T (0: none). The queueing delay is sampled at every window the
  batcher forms and every admission. When the smallest sample over an interval is above 2T/3, the queue is
  *standing* (a burst that drains within an interval is not, nor the queue a fixed number of clients keeps at
  saturation), and from then on a request is admitted only if the queueing delay ahead of it is at most T/3
  (`Overloaded`): new work is refused until the queue is down there, and held there. What is bounded is the wait
  behind others, not a request's own compute: one that alone needs more than that is still admitted to an empty
  queue (the deadline judges it). The state ends after `CALM_INTERVALS` intervals in a row in which the queue did
  not stand and nothing was refused for it (after one, a lull of a few admissions under a steady overload ended it,
  and the queue swung between T/3 and 2T/3).

T is what an accepted request may wait (folly's Codel sheds what waited over twice its target delay while
overloaded: that bound). Standing at 2T/3 catches the onset of up to 4x the capacity before the queue reaches T (it
grows by an interval's excess while being judged) and leaves a saturated closed loop alone; holding at T/3 leaves
room for the throughput to drop by two thirds and for a window's batches to run one after another. Measured
(docs/reliability.md): held at T/2, the p99 of accepted requests at twice the capacity was 0.89-0.94 T on a 2-core VM
whose throughput swings from second to second, at T/3 0.70-0.76 T with the same goodput; standing at T/3 or T/2,
4 clients of 32 sentences at saturation (0.4-0.6 s queued) were shed.

What is queued is never dropped for its age (only at its deadline): the lanes serve a big request a batch at a
time, so an old request may have much of its work done, and dropping it would throw that away. Refusing at the
door costs nothing.

Not thread-safe: the batcher calls it under its lock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ml_service.errors import DeadlineUnreachable, Overloaded

RATE_WINDOW_S = 2.0  # long enough for tens of batches, short enough to follow a model that slows down
CALM_INTERVALS = 10  # shedding ends after this many intervals without standing or refusing (1 s by default)


@dataclass(frozen=True)
class ShedPolicy:
    """The queue-delay bound of one model version: the target wait (0: only the deadline bounds the queue) and the
    interval over which a queue must stand before anything is shed."""

    target_wait_s: float = 1.0
    interval_s: float = 0.1

    @property
    def standing_s(self) -> float:
        """Over this queueing delay for an interval, the queue is standing."""
        return self.target_wait_s * 2 / 3

    @property
    def level_s(self) -> float:
        """The queueing delay a standing queue is held at."""
        return self.target_wait_s / 3


class Pressure:
    """The service rate, the expected wait and the standing-queue state of one batcher."""

    def __init__(self, policy: ShedPolicy, name: str, now: float) -> None:
        self.policy = policy
        self.name = name
        self.rate: float | None = None  # items per busy second
        self.overloaded = False
        self._busy_total = 0.0
        self._busy_since: float | None = None
        self._done: deque[tuple[float, int, float]] = deque([(now, 0, 0.0)])  # (when, items, busy total then)
        self._done_items = 0  # items of every record but the first (the window's start)
        self._interval_end = now + policy.interval_s
        self._min_delay = math.inf
        self._refused = 0
        self._calm = 0  # intervals in a row that did not stand and refused nothing
        self._head_delay = 0.0  # how long the oldest item of the last window waited (0 once the batcher is empty)

    # -- what the batcher reports ----------------------------------------------------------------
    def busy(self, now: float) -> None:
        """The batcher went from empty to holding work."""
        if self._busy_since is None:
            self._busy_since = now

    def idle(self, now: float) -> None:
        """The batcher has nothing left."""
        self._head_delay = 0.0
        if self._busy_since is not None:
            self._busy_total += now - self._busy_since
            self._busy_since = None

    def completed(self, items: int, now: float) -> None:
        """A batch of `items` finished computing."""
        busy = self._busy_total + (now - self._busy_since if self._busy_since is not None else 0.0)
        done = self._done
        done.append((now, items, busy))
        self._done_items += items
        while len(done) > 2 and done[1][0] < now - RATE_WINDOW_S:
            done.popleft()
            self._done_items -= done[0][1]
        span = busy - done[0][2]
        if span > 0 and self._done_items:
            self.rate = self._done_items / span

    def waited(self, delay_s: float, queued: int, now: float) -> None:
        """A window was formed; its oldest item had waited `delay_s`, and `queued` items are in the batcher."""
        self._head_delay = delay_s
        self._sample(queued, now)

    # -- decisions -----------------------------------------------------------------------------------
    def expected_wait(self, queued: int, items: int = 0) -> float | None:
        """Seconds until `items` more would be done behind `queued`; None before the rate is known."""
        return None if self.rate is None else self._delay(queued) + items / self.rate

    def check(self, queued: int, items: int, left_s: float, now: float) -> None:
        """Raise DeadlineUnreachable or Overloaded if a request of `items` should not be admitted now."""
        self._sample(queued, now)
        if self.rate is None:
            return
        ahead = self._delay(queued)
        wait = ahead + items / self.rate
        if wait > left_s:
            raise DeadlineUnreachable(
                f"model '{self.name}' cannot answer in time: its queue needs about {wait:.2f} s and the request has "
                f"{max(0.0, left_s):.2f} s left; retry later", retry_after_s=max(1, math.ceil(wait - left_s)))
        if self.overloaded and ahead > self.policy.level_s:
            self._refused += 1
            raise Overloaded(f"model '{self.name}' is overloaded: its queue has stood near its target wait of "
                             f"{self.policy.target_wait_s:g} s, so new requests are refused until it drains; retry "
                             "shortly")

    def _delay(self, queued: int) -> float:
        """The queueing delay behind `queued` items (see the module's docstring)."""
        return max(self._head_delay, queued / self.rate if self.rate else 0.0)

    def _sample(self, queued: int, now: float) -> None:
        self._roll(now)
        delay = self._delay(queued)
        if delay < self._min_delay:
            self._min_delay = delay

    def _roll(self, now: float) -> None:
        if now < self._interval_end:
            return
        if self.policy.target_wait_s > 0:
            if self._min_delay > self.policy.standing_s and self._min_delay != math.inf:
                self.overloaded, self._calm = True, 0
            elif self._refused:
                self._calm = 0
            else:
                self._calm += 1
                if self._calm >= CALM_INTERVALS:
                    self.overloaded = False
        self._min_delay = math.inf
        self._refused = 0
        self._interval_end = now + self.policy.interval_s


__all__ = ["CALM_INTERVALS", "RATE_WINDOW_S", "Pressure", "ShedPolicy"]
