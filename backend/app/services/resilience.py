"""Retries and a circuit breaker for calls to ml-service (and to Vertex AI, the same way).

A small module of our own rather than `tenacity`: what we need is one loop that honours `Retry-After`, stays
within the call's time budget, retries only connection errors, 429, 502, 503 and 504, and reports to the breaker once
per call; tenacity would need all of that written as callbacks around it, and it has no breaker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

log = logging.getLogger(__name__)
T = TypeVar("T")
#: answers worth trying again: over a rate limit, overloaded, or a proxy (nginx, a load balancer, Google's front
#: end) that lost the replica it picked
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class CircuitOpen(Exception):
    """The breaker is open: the call was not even tried."""


class Retryable(Exception):
    """A failure worth trying again (a connection error, RETRY_STATUSES), with the server's Retry-After if given."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    """Opens after `failures` consecutive failed calls; after `cooldown_s` lets one probe through (half-open): its
    success closes the circuit, its failure opens it again. While open, calls fail at once (no latency)."""

    def __init__(self, failures: int = 5, cooldown_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.cooldown_s else "open"

    def before(self) -> None:
        """Raise CircuitOpen unless a call may go through now."""
        state = self.state
        if state == "open" or (state == "half-open" and self._probing):
            raise CircuitOpen("ml-service's circuit is open")
        if state == "half-open":
            self._probing = True

    def success(self) -> None:
        self.failures, self.opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        self.failures += 1
        if self._probing or self.failures >= self.threshold:
            self.opened_at = self.clock()
        self._probing = False


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by the call's time budget."""

    retries: int = 2
    base_s: float = 0.1
    max_s: float = 2.0

    def delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return retry_after_s
        return random.uniform(0, min(self.max_s, self.base_s * 2 ** attempt))  # noqa: S311 - jitter, not crypto


async def call_with_retries(fn: Callable[[], Awaitable[T]], policy: RetryPolicy, breaker: CircuitBreaker,
                            budget_s: float, sleep: Callable[[float], Awaitable[None]] | None = None) -> T:
    """Run `fn` through the breaker, retrying `Retryable` failures while the budget allows. Anything else that
    `fn` raises (a 4xx that is not 429: the request itself is wrong) is not retried and does not count against
    the circuit."""
    breaker.before()
    deadline = time.monotonic() + budget_s
    attempt = 0
    while True:
        try:
            result = await fn()
        except asyncio.CancelledError:
            raise
        except Retryable as exc:
            wait = policy.delay(attempt, exc.retry_after_s)
            if attempt >= policy.retries or time.monotonic() + wait >= deadline:
                breaker.failure()
                raise
            attempt += 1
            await (sleep or asyncio.sleep)(wait)
            continue
        except Exception as exc:
            if _is_failure(exc):
                breaker.failure()
            else:
                breaker.success()  # the service answered (a client error is not an outage)
            raise
        breaker.success()
        return result


class Guard:
    """One provider's calls: its retry policy, its breaker and its budget, and the one mapping of everything that
    can go wrong on the way (circuit open, unreachable, overloaded, 5xx, too slow) to the provider's own error."""

    def __init__(self, name: str, policy: RetryPolicy, breaker: CircuitBreaker, budget_s: float,
                 error: Callable[[str], Exception]) -> None:
        self.name, self.policy, self.breaker, self.budget_s, self.error = name, policy, breaker, budget_s, error

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call_with_retries(fn, self.policy, self.breaker, self.budget_s)
        except CircuitOpen as exc:
            raise self.error(str(exc)) from None
        except (Retryable, ServerFailure, TimeoutError) as exc:
            log.warning("%s failed: %s", self.name, exc)
            raise self.error(str(exc)) from None


def _is_failure(exc: BaseException) -> bool:
    """Timeouts and server errors count against the circuit; cancellation and client errors do not."""
    return isinstance(exc, (TimeoutError, ServerFailure))


class ServerFailure(Exception):
    """A 5xx outside RETRY_STATUSES (not retried, but an outage for the breaker)."""


def retry_after(response: httpx.Response) -> float | None:
    """The server's `Retry-After` in seconds, when it gave a number."""
    value = response.headers.get("retry-after", "")
    return float(value) if value.replace(".", "", 1).isdigit() else None


async def send(peer: str, request: Awaitable[httpx.Response]) -> httpx.Response:
    """One HTTP exchange with `peer`, its failures in the terms of `call_with_retries`: never sent, or cut off
    (refused, reset, dropped mid-answer) -> Retryable (the calls are safe to repeat); sent but unanswered in time ->
    TimeoutError (not tried again within the budget); RETRY_STATUSES -> Retryable with the server's Retry-After;
    any other 5xx -> ServerFailure. 2xx and 4xx answers are the caller's."""
    try:
        response = await request
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # never sent
        raise Retryable(f"cannot reach {peer}: {type(exc).__name__}") from exc
    except httpx.TimeoutException as exc:
        raise TimeoutError(f"{peer} did not answer in time") from exc
    except httpx.TransportError as exc:
        raise Retryable(f"cannot reach {peer}: {type(exc).__name__}") from exc
    if response.status_code in RETRY_STATUSES:
        raise Retryable(f"{peer} answered {response.status_code}", retry_after(response))
    if response.status_code >= 500:
        raise ServerFailure(f"{peer} answered {response.status_code}")
    return response
