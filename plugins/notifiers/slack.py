"""The `slack` notifier: Block Kit messages through an incoming webhook."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.notifier import Notifier
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret


class SlackOptions(NotifierOptions):
    """Post to a Slack channel through an incoming webhook."""

    template_names = ("title", "text")
    webhook_url: Secret = Field(description="Incoming webhook URL.")
    channel: str | None = Field(
        None, description="Channel, e.g. #alerts (webhooks created for one channel ignore it)."
    )
    username: str | None = Field(None, description="Name shown as the sender.")
    icon_emoji: str | None = Field(None, description="Emoji shown as the sender's icon.")
    mention: str | None = Field(None, description="Prefix for firing messages, e.g. <!here>.")


class SlackNotifier(Notifier):
    type = "slack"
    Options = SlackOptions


@hookimpl
def watchkeeper_notifiers():
    return [SlackNotifier]
