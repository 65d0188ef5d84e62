"""JSON logs, one object a line, with the request id on every line of a request.

Both structlog loggers and the standard library's (ours and aiohttp's) go
through one formatter; the request id is bound in a context variable by the
HTTP middleware, so every line logged while serving a request carries it.
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["ACCESS_FIELDS", "configure_logging"]

#: The fields of an access-log line (`entrypoints.http.middleware`): no header among them.
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "request_id")


def configure_logging(level: str = "info") -> None:
    """Send every log line to stderr as JSON."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # The access log's fields (passed as extra=), and no other library's.
        structlog.stdlib.ExtraAdder(allow=ACCESS_FIELDS),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
