"""Keep secrets out of everything people and machines read: redaction by value.

Every secret the configuration holds (secret-typed fields, values read from variables
named like credentials, `${file:...}` contents) is registered here once; logs, CLI output,
notifications, API responses, the status page and Sentry events pass through `redact`.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr

SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASS|DSN|WEBHOOK", re.IGNORECASE)
MASK = "**********"
MIN_LENGTH = 4  # shorter values would blank out ordinary words


def is_secret_name(name: str) -> bool:
    """Return True when an environment variable's name says it holds a credential."""
    return bool(SECRET_NAME.search(name))


class Redactor:
    """A set of secret values and one compiled pattern replacing them by a mask."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str | SecretStr | None) -> None:
        """Register a secret value (and the password inside it, when it is a URL)."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not value or not isinstance(value, str):
            return
        found = _url_password(value)
        if not _credential_free_dsn(value):
            found.add(value.strip())
        found = {v for v in found if len(v) >= MIN_LENGTH}
        with self._lock:
            if found - self._values:
                self._values |= found
                # longest first, so a URL is masked whole before its password is
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def add_from(self, obj: Any) -> None:
        """Register every SecretStr found in a model, mapping or list."""
        for secret in _secrets_in(obj):
            self.add(secret)

    def redact(self, text: str) -> str:
        """Return text with every registered secret replaced by the mask."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def redact_obj(self, obj: Any) -> Any:
        """Return a copy of JSON-like data with secrets masked in every string."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, SecretStr):
            return MASK
        if isinstance(obj, dict):
            return {self.redact_obj(k): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.redact_obj(v) for v in obj]
        return obj

    def __contains__(self, value: str) -> bool:
        return value in self._values

    def values(self) -> list[str]:
        """Return the registered secret values, sorted (for another process to mask)."""
        with self._lock:
            return sorted(self._values)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None


DSN_SCHEMES = (
    "postgres",
    "postgresql",
    "redis",
    "rediss",
    "smtp",
    "smtps",
    "mysql",
    "amqp",
    "amqps",
    "mongodb",
)


def _credential_free_dsn(value: str) -> bool:
    """True for a database or mail server URL that carries no password (its address is
    not a secret; masking it would hide where a failing check points)."""
    scheme, sep, _rest = value.strip().partition("://")
    if not sep or scheme.lower() not in DSN_SCHEMES:
        return False
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    query = parts.query.lower()
    return not parts.password and "password" not in query and "token" not in query


def _url_password(value: str) -> set[str]:
    if "://" not in value or "@" not in value:
        return set()
    try:
        password = urlsplit(value.strip()).password
    except ValueError:
        return set()
    return {password, unquote(password)} if password else set()


def _secrets_in(obj: Any):
    if isinstance(obj, SecretStr):
        yield obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _secrets_in(getattr(obj, name, None))
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _secrets_in(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _secrets_in(v)


REDACTOR = Redactor()
"""The process-wide registry every output path uses."""


def redact(text: str) -> str:
    """Mask every registered secret in text."""
    return REDACTOR.redact(text)


class RedactingFilter(logging.Filter):
    """A logging filter masking secrets in the message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if REDACTOR._pattern is None:
            return True
        message = record.getMessage()
        record.msg = REDACTOR.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = REDACTOR.redact(record.exc_text)
        for key, value in list(vars(record).items()):
            if key.startswith("wk_") and isinstance(value, str | dict | list):
                setattr(record, key, REDACTOR.redact_obj(value))
        return True
