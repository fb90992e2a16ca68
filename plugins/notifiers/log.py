"""The `log` notifier: notices written to the daemon's log."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from watchkeeper.engine.alerting.notifier import Notifier, NotifyContext
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.alerting import NotifierOptions

if TYPE_CHECKING:
    from watchkeeper.engine.alerting.notice import Notice

LOGGER = "watchkeeper.notify"


def __getattr__(name: str) -> Any:
    # `DEFAULTS` comes from the messages module, which loads the notice model and its
    # helpers: `watchkeeper validate` reads only LogOptions and loads neither
    if name == "DEFAULTS":
        from watchkeeper.plugins.notifiers import messages

        return {"text": messages.LOG_LINE}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        from watchkeeper.engine.alerting.templates import render
        from watchkeeper.plugins.notifiers import messages

        text = render("text", notice, options, __getattr__("DEFAULTS"), **messages.helpers(notice))
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
