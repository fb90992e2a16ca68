"""Message templates: jinja2 in a sandbox, defaults per notifier, overrides in monitor.yaml.

A notifier declares its template names and defaults; `notifiers.X.templates` replaces any
of them. Templates see the notice (`notice`, `alerts`, `firing`, `resolved`, `title`,
`event`, `checklist`, `text`) and filters `duration` (90 -> 1m30s) and `when` (ISO time ->
`2026-11-26 20:44 UTC`). Rendered text has secrets masked like every other output.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Any

from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.engine.observe.redaction import REDACTOR

log = logging.getLogger("watchkeeper.templates")


def _duration(seconds: float | None) -> str:
    from watchkeeper.schema.units import format_duration

    return "" if seconds is None else format_duration(seconds)


def _when(value: str | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float):
        from datetime import UTC

        moment = datetime.fromtimestamp(value, UTC)
    else:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@functools.cache
def environment():
    """Return the shared sandboxed jinja2 environment."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )
    env.filters["duration"] = _duration
    env.filters["when"] = _when
    return env


@functools.lru_cache(maxsize=512)
def _compile(source: str):
    return environment().from_string(source)


@functools.lru_cache(maxsize=64)
def _compile_html(source: str):
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(environment().filters)
    return env.from_string(source)


def context(notice: Notice, **extra: Any) -> dict[str, Any]:
    """Return what templates see for a notice."""
    return {
        "notice": notice,
        "alerts": notice.alerts,
        "firing": notice.firing,
        "resolved": notice.resolved,
        "title": notice.title,
        "event": notice.event,
        "checklist": notice.checklist,
        "text": notice.text,
        "kind": notice.kind,
        "status": notice.status,
        "severity": notice.severity,
        **extra,
    }


def render(
    name: str,
    notice: Notice,
    options: Any,
    defaults: dict[str, str],
    *,
    html: bool = False,
    **extra: Any,
) -> str:
    """Render template `name` of a notifier: its override if set, else its default."""
    override = (getattr(options, "templates", None) or {}).get(name)
    values = context(notice, **extra)
    if override:
        try:
            template = _compile_html(override) if html else _compile(override)
            return REDACTOR.redact(template.render(values).strip())
        except Exception as exc:
            # a broken override must not cost the notice: fall back to the default
            log.error(
                "template failed; the default was used",
                extra={"template": name, "error": f"{type(exc).__name__}: {exc}"},
            )
    template = _compile_html(defaults[name]) if html else _compile(defaults[name])
    return REDACTOR.redact(template.render(values).strip())
