"""Structured logging that carries identifiers and never message contents.

Log calls pass ids through ``extra={...}``. Only keys in ``ALLOWED_FIELDS`` are
written, so a payload handed to a logger by mistake never reaches the log.

Libraries are not trusted to do the same: a record from any logger outside
``medstream`` keeps its message template and drops the arguments (which is where a
library puts the header bytes, the record or the exception it is reporting), and a
message built without a template is withheld. Exceptions are written as their class
alone, uncaught ones too (``sys.excepthook``, threads), and warnings go through the
same path.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

ALLOWED_FIELDS = frozenset(
    {
        "event_id",
        "event_type",
        "correlation_id",
        "causation_id",
        "message_id",
        "patient_pseudonym",
        "topic",
        "partition",
        "offset",
        "error_code",
        "error_class",
        "stage",
        "consumer_group",
        "count",
        "duration_ms",
        "attempt",
        "service",
        "component",
        "state",
        "port",
        "pid",
        "path",
        "model",
        "version",
        "checksum",
        "device",
        "runtime",
        "max_batch",
        "max_wait_ms",
        "warm_up_seconds",
    }
)

_STANDARD = frozenset(vars(logging.makeLogRecord({})))
WITHHELD = "(text withheld: a library's log message may quote message contents)"


def safe_message(record: logging.LogRecord) -> str:
    """The record's text if MedStream wrote it, else only a library's template."""
    if record.name == "medstream" or record.name.startswith("medstream."):
        return record.getMessage()
    if record.args and isinstance(record.msg, str):
        return record.msg
    return WITHHELD


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the allowed ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": safe_message(record),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key in ALLOWED_FIELDS:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The class name only: exception texts can quote the input that caused them.
            entry["exception_class"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


class ConsoleFormatter(JsonFormatter):
    """A human-readable line with the same redaction as the JSON form."""

    def format(self, record: logging.LogRecord) -> str:
        entry = json.loads(super().format(record))
        head = f"{entry.pop('time')[11:23]} {entry.pop('level'):<7} {entry.pop('logger')}: "
        head += entry.pop("message")
        tail = " ".join(f"{k}={v}" for k, v in entry.items())
        return f"{head} {tail}".rstrip()


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Send every logger's records to stderr through the redacting formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(_ServiceFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = lambda args: _log_uncaught(
        args.exc_type, args.exc_value, args.exc_traceback
    )
    # aiokafka logs message reprs at DEBUG; keep third-party loggers quiet.
    for noisy in ("aiokafka", "kafka", "sqlalchemy", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _log_uncaught(
    kind: type[BaseException], error: BaseException | None, trace: TracebackType | None
) -> None:
    """An uncaught exception, as its class: Python's own hook would print its text."""
    logging.getLogger("medstream.uncaught").critical(
        "uncaught exception", extra={"error_class": kind.__name__}
    )


class _ServiceFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        return True
