"""The service's one error hierarchy. Each error carries its HTTP status and a stable code.

The message is safe to show a client: it says what to fix and never carries internal details.
"""

from __future__ import annotations


class MLServiceError(Exception):
    """Base of every error the service reports to clients."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidInput(MLServiceError):
    """The request's content is wrong: missing fields, bad types, undecodable data."""

    status_code = 422
    code = "invalid_input"


class BadRequest(MLServiceError):
    """The request cannot be parsed at all (not JSON, wrong framing)."""

    status_code = 400
    code = "bad_request"


class ModelNotFound(MLServiceError):
    """No model by that name or alias."""

    status_code = 404
    code = "model_not_found"


class VersionNotFound(MLServiceError):
    """The model exists but that version does not, or is not served."""

    status_code = 404
    code = "version_not_found"


class PayloadTooLarge(MLServiceError):
    """The body, or the number of items, is over a configured limit."""

    status_code = 413
    code = "payload_too_large"


class Unauthorized(MLServiceError):
    """Missing or wrong bearer token."""

    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "missing or invalid bearer token") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class JobNotFound(MLServiceError):
    """No training job by that id (finished jobs are kept for a while, the last 100)."""

    status_code = 404
    code = "job_not_found"


class NotTrainable(InvalidInput):
    """`models train` on a model whose served version is not a text classifier head on a shared encoder."""

    code = "not_trainable"


class Conflict(MLServiceError):
    """The operation conflicts with the model's current state."""

    status_code = 409
    code = "conflict"


class TrainingInProgress(Conflict):
    """A training job for this model is queued or running; one at a time per model."""

    code = "training_in_progress"


class NoPreviousVersion(Conflict):
    """A rollback with no earlier working version to go back to."""

    code = "no_previous_version"


class RateLimited(MLServiceError):
    """Over the client's rate limit (headers: Retry-After and X-RateLimit-*)."""

    status_code = 429
    code = "rate_limited"


class PathNotFound(MLServiceError):
    """No route has this path."""

    status_code = 404
    code = "not_found"


class MethodNotAllowed(MLServiceError):
    """The path exists but not for this method."""

    status_code = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(f"{message}; use {', '.join(allowed)}", headers={"Allow": ", ".join(allowed)})


class InferenceFailed(MLServiceError):
    """The runtime raised while computing; details go to the log only."""

    status_code = 500
    code = "inference_failed"


class ModelUnavailable(MLServiceError):
    """The model failed to load, does not fit in the memory budget now, or is unloading; retry later."""

    status_code = 503
    code = "model_unavailable"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class ModelFailed(MLServiceError):
    """The model version failed to load as it is on disk: retrying does not help until its files change or an
    operator loads it again, so no Retry-After is given."""

    status_code = 503
    code = "model_failed"


class RateLimitUnavailable(MLServiceError):
    """The shared rate-limit store (Redis) is unreachable and `ML_SERVICE_RATE_LIMIT_FAIL=closed`: nothing is
    admitted until it is back. The model is fine, so this is not `model_unavailable`."""

    status_code = 503
    code = "rate_limit_unavailable"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class Shed(MLServiceError):
    """Refused at once so that what the model accepts is answered in time: 503 with Retry-After. The subclasses say
    why (`ml_service_rejections_total` counts them by reason)."""

    status_code = 503
    code = "shed"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class QueueFull(Shed):
    """The model's batch queue is full; the client should retry shortly."""

    code = "queue_full"


class DeadlineUnreachable(Shed):
    """The model's queue needs longer than what is left of the request's deadline (its expected wait, from the
    work queued ahead and the measured service rate): refused before any work, instead of a 504 at the deadline."""

    code = "deadline_unreachable"


class Overloaded(Shed):
    """The model's queue has stood above two thirds of its target wait: new requests are refused until it is down to
    a third of it, and held there."""

    code = "overloaded"


class DeadlineExceeded(MLServiceError):
    """The item waited in the queue past its deadline and was dropped uncomputed."""

    status_code = 504
    code = "deadline_exceeded"


class ClientDisconnected(Exception):
    """The client went away before its answer was ready; nothing is sent and nothing is logged as an error."""


class ManifestError(Exception):
    """A model directory is invalid; reported by name, never raised to clients."""
