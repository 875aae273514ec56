"""Log setup: human-readable lines by default, JSON lines with ``--log-format json``.

Every handler carries a :class:`~bridge.redact.RedactingFilter`, so the API key cannot reach a
log line even through a library's exception message.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Literal

import orjson

from bridge.redact import RedactingFilter

LogFormat = Literal["text", "json"]

CONTEXT_FIELDS = ("business", "connection", "code", "reason", "retry_in_seconds", "topic", "gap_seconds")
"""Context a log call may attach with ``extra=``; JSON lines carry them as fields of their own."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_text:
            entry["exception"] = record.exc_text
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    """``2026-11-24T14:00:00.123Z INFO  bridge.feed  message``, in UTC like the data."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """UTC ISO-8601 with milliseconds."""
        stamp = datetime.fromtimestamp(record.created, UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def configure_logging(log_format: LogFormat = "text", level: str = "INFO", secrets: tuple[str, ...] = ()) -> None:
    """Send logs to stderr in the chosen format, with secrets scrubbed; replaces earlier setup."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s  %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiokafka and websockets are chatty at INFO about things our own lines already say.
    for noisy in ("aiokafka", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


# Library loggers whose DEBUG output can carry a secret: aiokafka.conn prints every request,
# the SASL PLAIN login (user and password) included.
LIBRARY_LOGGERS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.client",
    "aiokafka.producer.sender",
    "websockets",
    "httpx",
    "httpcore",
)


class StartupNoiseFilter(logging.Filter):
    """aiokafka logs "GroupCoordinatorNotAvailableError" at ERROR while a new cluster creates its
    offsets topic, then retries and succeeds: the exactly-once position read meets it on every
    first start. Shown as DEBUG (when enabled), it no longer looks like a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote the transient coordinator error; pass everything else."""
        if "GroupCoordinatorNotAvailable" not in record.getMessage():
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("bridge").isEnabledFor(logging.DEBUG)


def guard_library_loggers(secrets: tuple[str, ...]) -> None:
    """Scrub ``secrets`` from the library loggers themselves, whatever handlers the host installs.

    A filter on a logger sees its records before any handler does, so this holds even when the
    bridge runs as a library under someone else's logging set to DEBUG.
    """
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for existing in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
            logger.removeFilter(existing)
        logger.addFilter(RedactingFilter(secrets))
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    if not any(isinstance(f, StartupNoiseFilter) for f in coordinator.filters):
        coordinator.addFilter(StartupNoiseFilter())
