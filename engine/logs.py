"""Structured logging: one line per event, as text or JSON, with secrets masked."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from watchkeeper.engine.redaction import REDACTOR, RedactingFilter

LOGGER_NAME = "watchkeeper"
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def get_logger(name: str = "") -> logging.Logger:
    """Return the project's logger, or a child of it."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the structured fields passed with `extra={...}`."""
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """`2026-11-26T20:44:08Z warning check.failed check=api-health message="..."`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        parts = [stamp, record.levelname.lower(), record.getMessage()]
        for key, value in fields(record).items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            if not text or any(ch in text for ch in ' "='):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return REDACTOR.redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event, logger and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
            **fields(record),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return REDACTOR.redact(json.dumps(payload, default=str))


def setup(level: str = "info", fmt: str = "text", stream=None) -> None:
    """Send the project's logs to stderr (or `stream`) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger(LOGGER_NAME)
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
