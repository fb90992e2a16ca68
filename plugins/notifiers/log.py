"""The `log` notifier: notices written to the daemon's log."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field

from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.engine.alerting.notifier import Notifier, NotifyContext
from watchkeeper.engine.alerting.templates import render
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.plugins.notifiers import messages
from watchkeeper.schema.alerting import NotifierOptions

LOGGER = "watchkeeper.notify"
DEFAULTS = {"text": messages.LOG_LINE}


class LogOptions(NotifierOptions):
    """Write each notice as one log line."""

    template_names = ("text",)
    level: Literal["info", "warning", "error"] = Field(
        "warning", description="Log level of firing notices (resolved: info)."
    )


class LogNotifier(Notifier):
    type = "log"
    Options = LogOptions

    def preview(self, notice: Notice, options: LogOptions) -> str:
        """Return the line this notice would be logged as."""
        text = render("text", notice, options, DEFAULTS, **messages.helpers(notice))
        # one line per notice, whatever an overriding template produced
        return " | ".join(part.strip() for part in text.splitlines() if part.strip())

    async def send(self, notice: Notice, options: LogOptions, ctx: NotifyContext) -> None:
        line = self.preview(notice, options)
        level = logging.getLevelName(options.level.upper()) if notice.firing else logging.INFO
        status = "firing" if notice.firing else ("resolved" if notice.alerts else notice.status)
        logging.getLogger(LOGGER).log(
            level,
            line,
            extra={
                "notifier": ctx.name,
                "notice_id": notice.id,
                "kind": notice.kind,
                "status": status,
                "alerts": len(notice.alerts),
                **({"severity": notice.severity} if notice.severity else {}),
            },
        )


@hookimpl
def watchkeeper_notifiers():
    return [LogNotifier]
