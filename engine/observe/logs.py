"""Structured logging: one line per event, as text, JSON or journald lines, secrets masked."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import IO, Any

from watchkeeper.engine.observe.redaction import REDACTOR, RedactingFilter

LOGGER_NAME = "watchkeeper"
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def get_logger(name: str = "") -> logging.Logger:
    """Return the project's logger, or a child of it."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the structured fields passed with `extra={...}`."""
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


def _masked(value: Any) -> Any:
    """Return a field's value with secrets masked, before a format escapes it."""
    # each format escapes again (JSON writes `\\uXXXX`, text quotes values with blanks):
    # the redactor knows a secret escaped once, not a repr of it escaped a second time
    if isinstance(value, str | dict | list | tuple):
        return REDACTOR.redact_obj(value)
    return value


class TextFormatter(logging.Formatter):
    """`2026-11-26T20:44:08Z warning check.failed check=api-health message="..."`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        return REDACTOR.redact(f"{stamp} {self.line(record)}")

    def line(self, record: logging.LogRecord) -> str:
        """Return the event without its time stamp: level, message, fields, traceback."""
        parts = [record.levelname.lower(), REDACTOR.redact(record.getMessage())]
        for key, value in fields(record).items():
            value = _masked(value)
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            if not text or any(ch in text for ch in ' "='):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + REDACTOR.redact(self.formatException(record.exc_info))
        return line


def syslog_priority(levelno: int) -> int:
    """Return the syslog priority of a logging level (3 error, 4 warning, 6 info, 7 debug)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(TextFormatter):
    """`<4>warning check.failed check=api-health ...`: text lines for systemd-journald.

    The journal stamps every entry itself, so the time is left out, and it reads a leading
    `<N>` as the entry's syslog priority (`journalctl -p warning` filters on it). It stores
    each line as an entry of its own: every line of a traceback carries the prefix too.
    """

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        lines = REDACTOR.redact(self.line(record)).splitlines() or [""]
        return "\n".join(prefix + line for line in lines)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event, logger and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": REDACTOR.redact(record.getMessage()),
            "logger": record.name,
            **{key: _masked(value) for key, value in fields(record).items()},
        }
        if record.exc_info:
            payload["exception"] = REDACTOR.redact(self.formatException(record.exc_info))
        # and once more after escaping: what the fields above did not hold
        return REDACTOR.redact(json.dumps(payload, default=str))


FORMATTERS: dict[str, type[logging.Formatter]] = {
    "text": TextFormatter,
    "json": JsonFormatter,
    "journal": JournalFormatter,
}


def is_journal(stream: IO[str]) -> bool:
    """Return whether `stream` is the journal connection systemd gave this service.

    systemd sets JOURNAL_STREAM to `device:inode` of the stderr it connected to journald;
    a stream that is no longer that file (redirected by a wrapper script) does not count.
    """
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(stream.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):  # unset, malformed, or not a real file
        return False


def setup(level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Send the project's logs to stderr (or `stream`) in the chosen format.

    `text` becomes `journal` when the stream is systemd's journal connection: the journal
    adds its own time stamps and wants the priority as a `<N>` prefix.
    """
    stream = stream or sys.stderr
    if fmt == "text" and is_journal(stream):
        fmt = "journal"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(FORMATTERS.get(fmt, TextFormatter)())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger(LOGGER_NAME)
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
