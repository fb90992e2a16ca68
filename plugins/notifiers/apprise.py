"""The `apprise` notifier: the 100+ services of the apprise library (optional extra)."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.notifier import Notifier
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret


class AppriseOptions(NotifierOptions):
    """Notify through apprise URLs (install watchkeeper[apprise])."""

    template_names = ("title", "text")
    urls: list[Secret] = Field(
        min_length=1,
        description="apprise service URLs, e.g. tgram://token/chat, discord://id/token.",
    )


class AppriseNotifier(Notifier):
    type = "apprise"
    Options = AppriseOptions


@hookimpl
def watchkeeper_notifiers():
    return [AppriseNotifier]
