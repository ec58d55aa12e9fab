"""Budgets, retries and a circuit breaker for every call to a source (ml-service, Vertex AI, OpenAI), and the one
mapping of what can go wrong on the way to the source's own error (`Guard`).

A small module of our own rather than `tenacity`: what we need is one loop that honours `Retry-After`, keeps every
attempt within the call's time budget and the request's, retries only what is worth it, and reports to the breaker
once per call; tenacity would need all of that written as callbacks around it, and it has no breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import httpx

log = logging.getLogger(__name__)
T = TypeVar("T")
#: answers worth trying again: over a rate limit, overloaded, or a proxy (nginx, a load balancer, Google's front
#: end) that lost the replica it picked
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: answers that say our credentials are wrong: the deployment's fault, never the user's
AUTH_STATUSES = frozenset({401, 403})
ALARM_INTERVAL_S = 60.0


class SourceError(Exception):
    """A source could not answer (the next source's cue); each client raises its own subclass."""


class CircuitOpen(Exception):
    """The breaker is open: the call was not even tried."""


class Failure(Exception):
    """What counts against a source's circuit (as do timeouts)."""


class Retryable(Failure):
    """A failure worth trying again (a connection error, RETRY_STATUSES), with the server's Retry-After if given."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServerFailure(Failure):
    """The source failed to serve us: a 5xx outside RETRY_STATUSES, or a 4xx that is not about the request."""


class ConfigFailure(Failure):
    """The source refused our credentials (401/403), or there are none to be had: logged loudly."""


class InvalidAnswer(Failure):
    """The source answered, but not in the shape asked for (HTML, `{}`, too few outputs, ...)."""


_budget: ContextVar[tuple[float, float] | None] = ContextVar("request_budget", default=None)  # (deadline, seconds)


@contextlib.contextmanager
def request_budget(seconds: float) -> Iterator[None]:
    """Every call made inside shares one deadline, `seconds` from now (an enclosing earlier one wins)."""
    end = time.monotonic() + seconds
    current = _budget.get()
    token = _budget.set((end, seconds) if current is None or end < current[0] else current)
    try:
        yield
    finally:
        _budget.reset(token)


@contextlib.contextmanager
def outside_request_budget() -> Iterator[None]:
    """Calls made inside are bounded by their own budgets only, not by the enclosing request's: for work that
    outlasts a request on purpose (learning waits minutes for a training job; a background learn outlives the
    request that started it)."""
    token = _budget.set(None)
    try:
        yield
    finally:
        _budget.reset(token)


class CircuitBreaker:
    """Opens after `failures` consecutive failed calls; after `cooldown_s` lets one probe through (half-open): its
    success closes the circuit, its failure opens it again, and a probe that ends without a verdict (cancelled, or
    cut short by its request's budget) lets the next call probe. While open, calls fail at once (no latency)."""

    def __init__(self, failures: int = 5, cooldown_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 *, name: str = "this source") -> None:
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.name = name
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
            raise CircuitOpen(f"{self.name}'s circuit is open after {self.failures} failed calls")
        if state == "half-open":
            self._probing = True

    def success(self) -> None:
        self.failures, self.opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        self.failures += 1
        if self._probing or self.failures >= self.threshold:
            self.opened_at = self.clock()
        self._probing = False

    def release(self) -> None:
        """A call ended without a verdict: the state stays, and a probe slot it held is free again."""
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


async def call_with_retries(fn: Callable[[float], Awaitable[T]], policy: RetryPolicy, breaker: CircuitBreaker,
                            budget_s: float, sleep: Callable[[float], Awaitable[None]] | None = None) -> T:
    """Run `fn(seconds_left)` through the breaker, retrying `Retryable` failures while the budget allows. The budget
    (`budget_s`, or what is left of the request's if that is less) bounds the whole call: every attempt is cut off
    when it runs out. `Failure`s and timeouts count against the circuit (a timeout only when the source had at
    least half its due: not when earlier sources of the request used the time); anything else `fn` raises (a
    4xx: the request itself is wrong) is not retried and counts as an answer."""
    start = time.monotonic()
    own = start + budget_s
    request = _budget.get()
    deadline = own if request is None else min(own, request[0])
    if deadline - start <= 0:
        raise TimeoutError(f"no time left in the request's budget for {breaker.name}")
    # a timeout is the source's fault when it had at least half of what it could have had; less means the
    # sources before it in the request used the time
    fair = deadline - start >= 0.5 * (budget_s if request is None else min(budget_s, request[1]))
    breaker.before()
    settled = False
    attempt = 0
    try:
        while True:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    result = await fn(deadline - time.monotonic())
            except Retryable as exc:
                wait = policy.delay(attempt, exc.retry_after_s)
                if attempt >= policy.retries or time.monotonic() + wait >= deadline:
                    breaker.failure()
                    settled = True
                    raise
                attempt += 1
                await (sleep or asyncio.sleep)(wait)
                continue
            except TimeoutError:
                if not fair:  # no verdict on the source: the breaker's state stays
                    raise TimeoutError(f"{breaker.name} did not answer in what was left of the request's "
                                       "budget") from None
                breaker.failure()
                settled = True
                raise TimeoutError(f"{breaker.name} did not answer within {deadline - start:.3g} s") from None
            except Failure:
                breaker.failure()
                settled = True
                raise
            except Exception:
                breaker.success()  # the source answered (a client error is not an outage)
                settled = True
                raise
            breaker.success()
            settled = True
            return result
    finally:
        if not settled:
            breaker.release()


def check_status(peer: str, status: int, headers: Mapping[str, str]) -> None:
    """The one reading of an HTTP status for every source: 401/403 -> ConfigFailure; RETRY_STATUSES -> Retryable
    with the server's Retry-After; any other 5xx -> ServerFailure. 2xx and other 4xx are the caller's."""
    if status in AUTH_STATUSES:
        raise ConfigFailure(f"{peer} refused our credentials ({status})")
    if status in RETRY_STATUSES:
        raise Retryable(f"{peer} answered {status}", retry_after(headers))
    if status >= 500:
        raise ServerFailure(f"{peer} answered {status}")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The server's `Retry-After` in seconds, when it gave a number."""
    value = headers.get("retry-after", "")
    return float(value) if value.replace(".", "", 1).isdigit() else None


async def send(peer: str, request: Awaitable[httpx.Response],
               permanent: Callable[[httpx.Response], Exception | None] | None = None) -> httpx.Response:
    """One HTTP exchange with `peer`, its failures in the terms of `call_with_retries`: never sent, or cut off
    (refused, reset, dropped mid-answer) -> Retryable (the calls are safe to repeat); sent but unanswered in time ->
    TimeoutError (not tried again within the budget); statuses as `check_status` reads them, except an answer
    `permanent` recognises (the source says retrying cannot help): its exception is raised as it is."""
    try:
        response = await request
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # never sent
        raise Retryable(f"cannot reach {peer}: {type(exc).__name__}") from exc
    except httpx.TimeoutException as exc:
        raise TimeoutError(f"{peer} did not answer in time") from exc
    except httpx.TransportError as exc:
        raise Retryable(f"cannot reach {peer}: {type(exc).__name__}") from exc
    if permanent is not None and response.status_code >= 400:
        final = permanent(response)
        if final is not None:
            raise final
    check_status(peer, response.status_code, response.headers)
    return response


_alarms: dict[str, float] = {}


def alarm(source: str, message: str, hint: str) -> None:
    """A configuration failure, logged as an error at most once a minute per source (never with a secret)."""
    now = time.monotonic()
    if now - _alarms.get(source, -ALARM_INTERVAL_S) >= ALARM_INTERVAL_S:
        _alarms[source] = now
        log.error("CONFIGURATION: %s; %s. Falling back to the next source (logged once a minute)", message, hint)


class Guard:
    """One source's calls: its retry policy, breaker and budget, and the one mapping of everything that can go
    wrong on the way (circuit open, unreachable, overloaded, 5xx, too slow, refused credentials, a garbage answer)
    to the source's own error, a `SourceError`."""

    def __init__(self, policy: RetryPolicy, breaker: CircuitBreaker, budget_s: float,
                 error: Callable[[str], SourceError], auth_hint: str) -> None:
        self.policy, self.breaker, self.budget_s = policy, breaker, budget_s
        self.error, self.auth_hint = error, auth_hint

    @property
    def name(self) -> str:
        return self.breaker.name

    async def call(self, fn: Callable[[float], Awaitable[T]]) -> T:
        try:
            return await call_with_retries(fn, self.policy, self.breaker, self.budget_s)
        except CircuitOpen as exc:
            raise self.error(str(exc)) from None
        except ConfigFailure as exc:
            alarm(self.name, str(exc), self.auth_hint)
            raise self.error(str(exc)) from None
        except (Failure, TimeoutError) as exc:
            log.warning("%s failed: %s", self.name, exc)
            raise self.error(str(exc)) from None
