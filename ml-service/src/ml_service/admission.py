"""Who may call, and how often: the bearer tokens (rotatable without a restart) and rate limits per client on
the `limits` library, in memory or in Redis so that every replica shares one budget."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ml_service.errors import PayloadTooLarge, RateLimited, RateLimitUnavailable
from ml_service.observe import LogThrottle
from ml_service.settings import Settings

if TYPE_CHECKING:
    from limits import RateLimitItem

log = logging.getLogger(__name__)
_throttled = LogThrottle(log)


class KeyStore:
    """The accepted tokens: `ML_SERVICE_SECRET` (comma-separated) and `ML_SERVICE_SECRET_FILE` (one a line, re-read
    by `reload()`, which `serve` calls on SIGHUP: a rotation needs no restart)."""

    def __init__(self, settings: Settings) -> None:
        self._inline = [k.encode() for k in settings.api_keys]
        self._file = settings.secret_file
        self.keys = self._inline + self._read_file()

    def _read_file(self) -> list[bytes]:
        if self._file is None:
            return []
        try:
            lines = Path(self._file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            log.error("cannot read ML_SERVICE_SECRET_FILE: %s", exc.strerror)
            return []
        return [line.strip().encode() for line in lines if line.strip() and not line.lstrip().startswith("#")]

    @property
    def enabled(self) -> bool:
        """Auth is on when a secret or a secret file is configured (even if the file is empty: nobody gets in)."""
        return bool(self._inline) or self._file is not None

    def reload(self) -> None:
        self.keys = self._inline + self._read_file()
        log.info("bearer tokens reloaded: %d accepted", len(self.keys))

    def match(self, token: bytes) -> int:
        """The 1-based index of the key `token` is, else 0; constant time over every key (no early exit)."""
        found = 0
        for i, key in enumerate(self.keys, 1):
            if hmac.compare_digest(token, key):
                found = i
        return found


def token_id(token: bytes) -> str:
    """A stable, non-reversible id for a token (rate-limit buckets); never the token itself."""
    return "t:" + hashlib.sha256(token).hexdigest()[:16]


class ClientAddress:
    """The client's address: the connection's peer, or, behind a trusted proxy, the last address it was given."""

    def __init__(self, trusted: str) -> None:
        self.nets = [ipaddress.ip_network(p.strip(), strict=False) for p in trusted.split(",") if p.strip()]

    def _trusted(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in self.nets)

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        addr = peer or "unknown"
        if forwarded_for and self._trusted(addr):
            for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
                addr = hop
                if not self._trusted(hop):
                    break
        return "ip:" + addr


class RateLimiter:
    """`ML_SERVICE_RATE_LIMIT` (e.g. `20/second;600/minute`) per client, a sliding-window counter from `limits`;
    shared through Redis when `ML_SERVICE_REDIS_URL` is set. Redis unreachable: fail open (logged, counted) or,
    with `ML_SERVICE_RATE_LIMIT_FAIL=closed`, refuse with 503."""

    def __init__(self, settings: Settings) -> None:
        from limits import parse_many
        from limits.aio.storage import MemoryStorage, Storage
        from limits.aio.strategies import SlidingWindowCounterRateLimiter
        from limits.storage import storage_from_string

        self.items = parse_many(settings.rate_limit or "")
        self.by_items = settings.rate_limit_cost == "items"
        self.fail_closed = settings.rate_limit_fail == "closed"
        storage: Storage
        if settings.redis_url:
            url = settings.redis_url
            found = storage_from_string(url if url.startswith("async+") else f"async+{url}", implementation="redispy",
                                        wrap_exceptions=True, socket_connect_timeout=0.5, socket_timeout=0.5)
            assert isinstance(found, Storage)
            storage = found
        else:
            storage = MemoryStorage()
        self.shared = bool(settings.redis_url)
        self.strategy = SlidingWindowCounterRateLimiter(storage)
        self.storage_errors = 0

    async def admit(self, client: str, cost: int = 1) -> dict[str, str]:
        """Spend `cost` from the client's every limit; the X-RateLimit headers of the tightest, or RateLimited.
        A cost over a whole limit could never be admitted: PayloadTooLarge (413, no Retry-After), nothing spent."""
        from limits.errors import StorageError

        for item in self.items:
            if cost > item.amount:
                raise PayloadTooLarge(f"this request has {cost} items but the rate limit allows at most "
                                      f"{item.amount} per {_window(item)} (ML_SERVICE_RATE_LIMIT, counted in items): "
                                      f"send at most {item.amount} in one request")
        try:
            tightest: tuple[int, int, float] | None = None  # remaining, limit, reset
            for item in self.items:
                ok = await self.strategy.hit(item, client, cost=cost)
                stats = await self.strategy.get_window_stats(item, client)
                if not ok:
                    wait = max(1, math.ceil(stats.reset_time - time.time()))
                    raise RateLimited(f"rate limit of {item} exceeded; retry in {wait} s", headers={
                        "Retry-After": str(wait), "X-RateLimit-Limit": str(item.amount),
                        "X-RateLimit-Remaining": str(max(0, stats.remaining)),
                        "X-RateLimit-Reset": str(int(stats.reset_time))})
                if tightest is None or stats.remaining < tightest[0]:
                    tightest = (stats.remaining, item.amount, stats.reset_time)
        except StorageError:
            self.storage_errors += 1
            if self.fail_closed:
                _throttled.warning("ratelimit", "the rate-limit store is unreachable: refusing (fail closed)")
                raise RateLimitUnavailable("the rate-limit store is unreachable and this service fails closed "
                                           "(ML_SERVICE_RATE_LIMIT_FAIL=closed); retry shortly") from None
            _throttled.warning("ratelimit", "the rate-limit store is unreachable: admitting (fail open)")
            return {}
        if tightest is None:
            return {}
        return {"X-RateLimit-Limit": str(tightest[1]), "X-RateLimit-Remaining": str(max(0, tightest[0])),
                "X-RateLimit-Reset": str(int(tightest[2]))}


def _window(item: RateLimitItem) -> str:
    """`minute`, `10 seconds`: the window of a `limits` item."""
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"
