"""Keep secrets out of everything people and machines read: redaction by value.

Every secret the configuration holds (secret-typed fields, values read from variables
named like credentials, `${file:...}` contents) is registered here once; logs, CLI output,
notifications, API responses, the status page and Sentry events pass through `redact`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import threading
import typing
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

if TYPE_CHECKING:
    from pydantic import BaseModel, SecretStr

SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASS|DSN|WEBHOOK", re.IGNORECASE)
MASK = "**********"
MIN_LENGTH = 4  # shorter values would blank out ordinary words


class _NotImported:
    """Stands for a pydantic class whose module is not imported: nothing is an instance."""


def _secret_str() -> type:
    """pydantic's SecretStr, if imported: a secret can only be one once it is, and a probe
    worker that never validates a config does without pydantic."""
    return getattr(sys.modules.get("pydantic.types"), "SecretStr", _NotImported)


def _base_model() -> type:
    """pydantic's BaseModel, if imported (see `_secret_str`)."""
    return getattr(sys.modules.get("pydantic.main"), "BaseModel", _NotImported)


def secret_value(value: Any) -> str:
    """Return the plain text of a secret setting ('' when unset)."""
    if isinstance(value, _secret_str()):
        value = value.get_secret_value()
    return (value or "").strip() if isinstance(value, str) else ""


def is_secret_name(name: str) -> bool:
    """Return True when an environment variable's name says it holds a credential."""
    return bool(SECRET_NAME.search(name))


class Redactor:
    """A set of secret values and one compiled pattern replacing them by a mask."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._forms: set[str] = set()  # the values and their escaped forms: what is masked
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.generation = 0  # changes with what is masked: text masked before may be stale

    def add(self, value: str | SecretStr | None) -> None:
        """Register a secret value (and the password inside it, when it is a URL)."""
        if isinstance(value, _secret_str()):
            value = value.get_secret_value()
        if not value or not isinstance(value, str):
            return
        found = _url_password(value)
        if not _credential_free_dsn(value):
            found.add(value.strip())
        found = {v for v in found if len(v) >= MIN_LENGTH} - self._values
        if not found:
            return
        forms = {form for v in found for form in shown_forms(v)}
        with self._lock:
            self._values |= found
            if forms - self._forms:
                self._forms |= forms
                self._pattern = re.compile(_trie_pattern(self._forms))
                self.generation += 1

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
        if isinstance(obj, dict):
            return {self.redact_obj(k): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.redact_obj(v) for v in obj]
        if isinstance(obj, _secret_str()):
            return MASK
        return obj

    def __contains__(self, value: str) -> bool:
        return value in self._forms

    def values(self) -> list[str]:
        """Return the registered secret values, sorted (for another process to mask).

        Only the values: the other process's `add` derives their escaped forms again.
        """
        with self._lock:
            return sorted(self._values)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._forms.clear()
            self._pattern = None
            self.generation += 1


def _trie_pattern(words: set[str]) -> str:
    """Return a regular expression matching any of the words, the longest where several do.

    The words are merged into a prefix tree: at each position the engine follows one
    branch instead of trying every word, which keeps `redact` (run on every log line) fast
    however many escaped forms are registered. A greedy optional tail prefers the longer
    word, so a URL is masked whole before the password inside it is.
    """
    root: dict[str, dict] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}
    return _branch(root)


def _branch(node: dict[str, dict]) -> str:
    alternatives = []
    for ch, child in sorted(node.items()):
        if not ch:
            continue
        run = [ch]
        # a run of single-child nodes becomes a literal: recursion only where words part
        while len(child) == 1 and "" not in child:
            ((next_ch, child),) = child.items()
            run.append(next_ch)
        alternatives.append(re.escape("".join(run)) + _branch(child))
    if not alternatives:
        return ""
    body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
    return f"(?:{body})?" if "" in node else body


def shown_forms(value: str) -> set[str]:
    """Return a secret and every form output may show it in, each long enough to mask.

    Output escapes what it quotes after it was (or was not) masked: Python repr in
    validate's messages, JSON with and without ASCII escapes in logs and API answers,
    percent-encoding in URLs, HTML on the status page, blanks folded in a one-line excerpt
    of a response; a table or a one-line log shows the lines of a multi-line secret apart.
    Masking every form by value keeps each output path right whatever order it escapes in.
    """
    forms = _escaped(value)
    lines = value.splitlines()
    if len(lines) > 1:
        for line in lines:
            # a line alone is masked where it is long enough not to blank out ordinary words
            if len(line.strip()) >= MIN_LENGTH:
                forms |= _escaped(line.strip())
    return {form for form in forms if len(form.strip()) >= MIN_LENGTH}


def _escaped(value: str) -> set[str]:
    forms = {value, " ".join(value.split())}
    if value.isascii() and value.isalnum():
        return forms  # the common token: every escaping leaves it as it is
    # with both quotes in the string, repr picks single quotes and escapes the single ones
    single = repr(value + "'\"")[1:-4]
    forms |= {
        single,
        single.replace("\\'", "'").replace('"', '\\"'),  # the double-quoted repr
        ascii(value + "'\"")[1:-4],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        _html(value, "&#39;", "&#34;"),  # markupsafe, as jinja2 autoescapes
        _html(value, "&#x27;", "&quot;"),  # html.escape
    }
    return forms


def _html(value: str, apostrophe: str, quotation: str) -> str:
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace("'", apostrophe).replace('"', quotation)


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


_PLAIN = frozenset({str, int, float, bool, type(None), bytes})


def _secrets_in(obj: Any) -> list[SecretStr]:
    found: list[SecretStr] = []
    seen: set[int] = set()  # checks share objects (a schedule, an empty map): walked once
    secret_str, base_model = _secret_str(), _base_model()
    stack = [obj]
    while stack:
        obj = stack.pop()
        if type(obj) in _PLAIN:
            continue
        if isinstance(obj, secret_str):
            found.append(obj)
            continue
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, base_model):
            # only the fields whose type can hold a secret: a large config is mostly
            # checks, thresholds and schedules, which never do
            stack.extend(getattr(obj, name, None) for name in _secret_fields(type(obj)))
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple):
            stack.extend(obj)
    return found


@functools.cache
def _secret_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """Return the fields of a model whose declared type can hold a SecretStr."""
    _IN_PROGRESS.add(model)
    try:
        return tuple(
            name for name, field in model.model_fields.items() if _may_hold_secret(field.annotation)
        )
    finally:
        _IN_PROGRESS.discard(model)


_IN_PROGRESS: set[type] = set()


def _may_hold_secret(annotation: Any) -> bool:
    if annotation is Any or annotation is object:
        return True  # could be anything: walk it
    if isinstance(annotation, type):
        if issubclass(annotation, _secret_str()):
            return True
        if issubclass(annotation, _base_model()):
            # a model being looked at already (a recursive type): its other fields decide
            return annotation not in _IN_PROGRESS and bool(_secret_fields(annotation))
        if annotation.__module__ == "builtins":
            return False  # str, int, float, bool, None...
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return False
    if origin is typing.Annotated:
        return _may_hold_secret(args[0])  # the rest is metadata (constraints, descriptions)
    if args:
        return any(_may_hold_secret(arg) for arg in args)
    # an unknown kind of annotation (a TypeVar, a forward reference...): walk it
    return not isinstance(annotation, type)


REDACTOR = Redactor()
"""The process-wide registry every output path uses."""


def redact(text: str) -> str:
    """Mask every registered secret in text."""
    return REDACTOR.redact(text)


_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


class RedactingFilter(logging.Filter):
    """A logging filter masking secrets in the message, its arguments and every field."""

    def filter(self, record: logging.LogRecord) -> bool:
        if REDACTOR._pattern is None:
            return True
        message = record.getMessage()
        record.msg = REDACTOR.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = REDACTOR.redact(record.exc_text)
        # every `extra={...}` field, before any formatter or handler escapes it
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRIBUTES and isinstance(value, str | dict | list | tuple):
                setattr(record, key, REDACTOR.redact_obj(value))
        return True
