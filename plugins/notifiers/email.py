"""The `email` notifier: plain-text and HTML mail over SMTP."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.notifier import Notifier
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret


class EmailOptions(NotifierOptions):
    """Send mail through an SMTP server (STARTTLS on smtp://, TLS on smtps://)."""

    template_names = ("subject", "text", "html")
    to: list[str] = Field(min_length=1, description="Recipients.")
    from_: str = Field("watchkeeper@localhost", alias="from", description="Sender address.")
    smtp_url: Secret = Field(
        description="smtp://user:pass@host:587 (STARTTLS when offered) or smtps://host:465 (TLS)."
    )
    starttls: bool | None = Field(
        None, description="Force STARTTLS on or off (default: use it when the server offers it)."
    )
    verify: bool = Field(True, description="Verify the server's TLS certificate.")
    subject_prefix: str = Field("[watchkeeper]", description="Put before every subject.")


class EmailNotifier(Notifier):
    type = "email"
    Options = EmailOptions


@hookimpl
def watchkeeper_notifiers():
    return [EmailNotifier]
