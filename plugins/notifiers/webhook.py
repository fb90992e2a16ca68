"""The `webhook` notifier: a JSON POST of the alerts in a group."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.notifier import Notifier
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret


class WebhookOptions(NotifierOptions):
    """POST `{"status", "alerts": [...]}` with an Idempotency-Key header."""

    url: Secret = Field(description="Receiver URL.")
    method: Literal["POST", "PUT"] = Field("POST", description="HTTP method.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    signing_secret: Secret | None = Field(
        None, description="Sign the body with HMAC-SHA256 in the X-Watchkeeper-Signature header."
    )
    verify: bool = Field(True, description="Verify the receiver's TLS certificate.")


class WebhookNotifier(Notifier):
    type = "webhook"
    Options = WebhookOptions


@hookimpl
def watchkeeper_notifiers():
    return [WebhookNotifier]
