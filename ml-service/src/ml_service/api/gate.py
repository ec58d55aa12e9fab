"""Admission at the door, the same for every route: the bearer token, the client's rate limit, and the client's
own deadline. Used by the Router; nothing here reads a body."""

from __future__ import annotations

from ml_service.admission import ClientAddress, KeyStore, RateLimiter, token_id
from ml_service.errors import BadRequest, Unauthorized
from ml_service.observe import RequestContext
from ml_service.settings import Settings

#: at most this many digits in X-Request-Timeout-Ms (gRPC's grpc-timeout has the same rule): 99,999,999 ms is
#: 27 hours, beyond any deadline we keep, and a longer number is refused before it is converted
TIMEOUT_DIGITS = 8


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((v for k, v in headers if k == name), None)


def bearer(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header."""
    value = _header(headers, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(b" ")
    token = token.strip()
    return token if scheme.lower() == b"bearer" and token else None


class Gate:
    """Auth (required, or soft: a valid token identifies the caller, a missing one is fine), rate limits, deadlines."""

    def __init__(self, settings: Settings) -> None:
        self.keys = KeyStore(settings)
        self.limiter = RateLimiter(settings) if settings.rate_limit else None
        self.addresses = ClientAddress(settings.trusted_proxies)
        self.max_timeout_s = settings.request_timeout_s

    def authenticate(self, ctx: RequestContext, headers: list[tuple[bytes, bytes]], required: bool) -> bytes | None:
        """Set `ctx.caller` ("key-N") from a valid token; Unauthorized when one is required and missing or wrong."""
        if not self.keys.enabled:
            return None
        token = bearer(headers)
        index = self.keys.match(token) if token else 0
        if index:
            ctx.caller = f"key-{index}"
            return token
        if required:
            raise Unauthorized()
        return None

    async def limit(self, ctx: RequestContext, headers: list[tuple[bytes, bytes]], peer: str | None,
                    token: bytes | None) -> None:
        """Charge the request (or, by items, arm `ctx.admit` for the data plane) to the caller's limits."""
        limiter = self.limiter
        if limiter is None:
            return
        fwd = _header(headers, b"x-forwarded-for")
        client = token_id(token) if token else self.addresses.of(peer, fwd.decode("latin-1") if fwd else None)
        if limiter.by_items:
            async def admit(n: int) -> None:
                ctx.headers.update(await limiter.admit(client, n))

            ctx.admit = admit
        else:
            ctx.headers.update(await limiter.admit(client, 1))

    def deadline(self, ctx: RequestContext, headers: list[tuple[bytes, bytes]]) -> None:
        """`X-Request-Timeout-Ms`: the client's own deadline, never longer than ML_SERVICE_REQUEST_TIMEOUT_S."""
        value = _header(headers, b"x-request-timeout-ms")
        if value is None:
            return
        if not (0 < len(value) <= TIMEOUT_DIGITS and value.isdigit()) or int(value) < 1:
            raise BadRequest(f"X-Request-Timeout-Ms must be a positive integer of milliseconds, at most "
                             f"{TIMEOUT_DIGITS} digits; got {value[:40].decode('latin-1')!r}")
        ctx.timeout_s = min(int(value) / 1000, self.max_timeout_s)
