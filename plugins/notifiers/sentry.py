"""The `sentry` notifier: each alert becomes a Sentry event with tags."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.notifier import Notifier
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret


class SentryNotifierOptions(NotifierOptions):
    """Send alerts to a Sentry project as events."""

    template_names = ("message",)
    dsn: Secret = Field(description="DSN of the project receiving alert events.")
    environment: str | None = Field(None, description="Sentry environment of the events.")


class SentryNotifier(Notifier):
    type = "sentry"
    Options = SentryNotifierOptions
    groups = False


@hookimpl
def watchkeeper_notifiers():
    return [SentryNotifier]
