"""Logs: JSON lines or console text (`ML_SERVICE_LOG_FORMAT`), and one line per request (a request hook).

A request's line carries its id, protocol, route, model, version, status, item count and timings; never the
input, never a token (the caller is a key id such as `key-1`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from ml_service.observe import RequestContext

REQUEST_LOGGER = "ml_service.requests"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class ConsoleFormatter(logging.Formatter):
    """Time, level, logger and message; a request line's fields as `key=value`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        return text + ("".join(f" {k}={v}" for k, v in extra.items() if v is not None) if extra else "")


class ClosedTransportFilter(logging.Filter):
    """uvicorn does not mark a pipelined request disconnected when its client closes (only the last request of
    the connection), so answering it fails on the closed transport and uvicorn logs "ASGI callable returned
    without completing response" at ERROR. The router knows each time that happens (`expected`): exactly that
    many lines are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.expected = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.expected and record.getMessage().startswith("ASGI callable returned without completing"):
            self.expected -= 1
            return False
        return True


#: the process's one filter of those lines, installed on uvicorn's error logger by `configure`
closed_transport = ClosedTransportFilter()


def configure(level: str = "info", fmt: str = "console") -> None:
    """The root handler for the whole process (uvicorn's loggers included), in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    uvicorn_error = logging.getLogger("uvicorn.error")
    if closed_transport not in uvicorn_error.filters:
        uvicorn_error.addFilter(closed_transport)


class RequestLog:
    """The request hook writing one line per request at INFO on `ml_service.requests`."""

    def __init__(self) -> None:
        self.log = logging.getLogger(REQUEST_LOGGER)

    def on_end(self, ctx: RequestContext) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        t = ctx.timings_ms or {}
        self.log.info("%s %s", ctx.route, ctx.status, extra={
            "request_id": ctx.request_id, "protocol": ctx.protocol, "route": ctx.route, "model": ctx.model,
            "version": ctx.version, "status": ctx.status, "error": ctx.error, "items": ctx.items or None,
            "queue_ms": t.get("queue"), "inference_ms": t.get("inference"),
            "total_ms": round(ctx.elapsed_s * 1000, 3), "caller": ctx.caller})
