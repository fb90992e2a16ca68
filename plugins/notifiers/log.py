"""The `log` notifier: notices written to the daemon's log."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.notifier import Notifier
from watchkeeper.schema.alerting import NotifierOptions


class LogOptions(NotifierOptions):
    """Write each notice as one log line."""

    template_names = ("text",)
    level: Literal["info", "warning", "error"] = Field(
        "warning", description="Log level of firing notices (resolved: info)."
    )


class LogNotifier(Notifier):
    type = "log"
    Options = LogOptions


@hookimpl
def watchkeeper_notifiers():
    return [LogNotifier]
