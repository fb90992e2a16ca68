"""The `apprise` notifier: the 100+ services of the apprise library (optional extra)."""

from __future__ import annotations

import logging
from collections import OrderedDict

from pydantic import Field

from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.engine.alerting.notifier import DeliveryError, Notifier, NotifyContext
from watchkeeper.engine.alerting.templates import render
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import RedactingFilter
from watchkeeper.plugins.notifiers import messages
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret

DEFAULTS = {"title": messages.HEADLINE, "text": messages.TEXT}
INSTALL = "pip install 'watchkeeper[apprise]'"
REMEMBERED = 1000
"""Notices whose partly successful delivery is remembered, so a retry skips what worked."""


class AppriseOptions(NotifierOptions):
    """Notify through apprise URLs (install watchkeeper[apprise])."""

    template_names = ("title", "text")
    urls: list[Secret] = Field(
        min_length=1,
        description="apprise service URLs, e.g. tgram://token/chat, discord://id/token.",
    )


def notify_type(notice: Notice) -> str:
    """Return apprise's notify type: failure/warning while firing, success once resolved."""
    if notice.kind in ("event", "task", "announcement", "test"):
        return "info"
    if not notice.firing:
        return "success"
    return "failure" if notice.severity in ("critical", "high") else "warning"


def _message(notice: Notice, options: AppriseOptions, name: str) -> tuple[str, str]:
    extra = {**messages.helpers(notice), "notifier": name}
    title = render("title", notice, options, DEFAULTS, **extra)
    return title, render("text", notice, options, DEFAULTS, **{**extra, "headline": title})


def _quiet_apprise() -> None:
    # apprise logs service URLs (tokens included) when a service fails: mask them
    logger = logging.getLogger("apprise")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())


class AppriseNotifier(Notifier):
    type = "apprise"
    Options = AppriseOptions

    def __init__(self) -> None:
        self._delivered: OrderedDict[tuple[str, str], set[int]] = OrderedDict()

    def preview(self, notice: Notice, options: AppriseOptions) -> str:
        """Return the title and body each apprise URL would get."""
        title, body = _message(notice, options, "preview")
        return f"[{notify_type(notice)}] {title}\n\n{body}"

    async def send(self, notice: Notice, options: AppriseOptions, ctx: NotifyContext) -> None:
        label = f"apprise `{ctx.name}`"
        try:
            import apprise
        except ImportError:
            raise DeliveryError(
                f"{label}: the apprise library is not installed ({INSTALL})", retryable=False
            ) from None
        _quiet_apprise()
        title, body = _message(notice, options, ctx.name)
        key = (ctx.name, notice.id)
        delivered = self._delivered.pop(key, set())
        failed: list[str] = []
        for number, url in enumerate(options.urls, 1):
            if number in delivered:
                continue  # accepted on an earlier attempt of this notice
            # one Apprise object per URL, so a failure names which service failed
            service = apprise.Apprise()
            if not service.add(url.get_secret_value()):
                raise DeliveryError(
                    f"{label}: URL #{number} is not a URL apprise understands", retryable=False
                )
            ok = await service.async_notify(body=body, title=title, notify_type=notify_type(notice))
            if ok:
                delivered.add(number)
            else:
                failed.append(f"#{number}")
        if failed:
            # the next attempt sends only to the services that failed (in this process;
            # after a restart every URL hears the notice once more)
            self._delivered[key] = delivered
            while len(self._delivered) > REMEMBERED:
                self._delivered.popitem(last=False)
            raise DeliveryError(
                f"{label}: URL {', '.join(failed)} of {len(options.urls)} failed", retryable=True
            )


@hookimpl
def watchkeeper_notifiers():
    return [AppriseNotifier]
