"""Log set-up for ``taggram serve``: the request id on every line, as text or as JSON.

The middleware puts each request's id in :data:`REQUEST_ID` (a context variable, so it follows
the request into its tasks and ``asyncio.to_thread`` workers); a filter on the one root handler
copies it onto every record, the service's and uvicorn's (access log included) alike. Lines
outside any request carry ``-``.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

from taggram.service.settings import LogFormat, LogLevel

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (the current request's, or ``-``) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the current request's id (``-`` outside a request) to the record."""
        record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, request_id, message."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object per line: time, level, logger, request id, message (and exception)."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: LogLevel, log_format: LogFormat) -> None:
    """One stderr handler on the root logger; uvicorn's loggers propagate to it."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
