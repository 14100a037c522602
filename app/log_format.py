"""How worker log lines look: text for people, one JSON object per line for collectors.

``ONEPIPE_LOG_FORMAT=json`` makes every line one JSON object with ``time`` (UTC,
ISO-8601), ``level``, ``logger`` and ``message``; whatever a log call passes in ``extra``
becomes fields of its own, so a collector can filter on ``topic``, ``partition`` and
``offset`` without parsing messages (the agents pass them where a line is about a
position); a traceback is the ``exception`` field, not extra lines that would break the
one-object-per-line contract.

Faust (mode) sets up logging itself when the worker starts and replaces whatever was
there: :func:`worker_logging_config` is the ``logging_config`` it applies instead of its
own colored handler. Faust's worker also redirects ``print`` output into the log, so
everything the worker writes goes through the formatter.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

__all__ = ["TEXT_FORMAT", "JsonFormatter", "configure_logging", "worker_logging_config"]

#: The text lines of the commands (Faust's worker has its own, colored on a terminal).
TEXT_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that is no JSON type (a TopicPartition, a Path) is shown as
        # its text rather than losing the line.
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, log_format: Literal["text", "json"]) -> None:
    """Logging of the ``onepipe`` commands (to stderr; the worker's is set up by Faust)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def worker_logging_config(level: str, log_format: Literal["text", "json"]
                          ) -> dict[str, Any] | None:
    """The ``logging_config`` Faust's worker applies; None keeps Faust's own (text)."""
    if log_format == "text":
        return None
    return {
        "version": 1,
        # Loggers made before the worker starts (every onepipe module's) keep logging.
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json",
                                 "stream": "ext://sys.stdout"}},
        "root": {"level": level, "handlers": ["default"]},
    }
