"""The `slack` notifier: Block Kit messages through an incoming webhook."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from watchkeeper.engine.alerting.notice import Notice, NoticeAlert
from watchkeeper.engine.alerting.notifier import Notifier, NotifyContext
from watchkeeper.engine.alerting.templates import render
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.plugins.notifiers import messages
from watchkeeper.plugins.notifiers.delivery import json_bytes, send_http
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret
from watchkeeper.schema.units import format_duration

DEFAULTS = {"title": messages.HEADLINE, "text": messages.MRKDWN}
MAX_ALERTS = 10
"""Alerts shown with their own fields; Slack allows 50 blocks in a message."""
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000


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


def escape(text: Any) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _cut(text, FIELD_LIMIT)}


def _link(url: str, label: str) -> str:
    if url.startswith(("https://", "http://")):
        return f"<{escape(url)}|{escape(label)}>"
    return escape(url)


def _date(iso: str) -> str:
    """Return a Slack date token: each reader sees the time in their own timezone."""
    from datetime import datetime

    try:
        stamp = int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return escape(iso)
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{escape(iso)}>"


def alert_blocks(alert: NoticeAlert, escalation: str | None = None) -> list[dict[str, Any]]:
    """Return the blocks showing one alert's facts: runbook and fields, a context line
    (`escalation`: the notice's escalation step in words, when it has one)."""
    fields = [
        _mrkdwn(f"*Severity*\n{escape(alert.severity)}"),
        _mrkdwn(f"*Check*\n{escape(alert.check)}"),
        _mrkdwn(f"*Environment*\n{escape(alert.environment or '—')}"),
    ]
    if alert.metric and alert.status == "firing":  # once resolved the headline says "was"
        value = alert.value_text or alert.value
        threshold = alert.threshold_text or alert.threshold
        fields.append(
            _mrkdwn(
                f"*{escape(alert.metric)}*\n{escape(value)} "
                f"({escape(alert.direction or 'vs')} {escape(threshold)})"
            )
        )
    else:
        fields.append(_mrkdwn(f"*Rule*\n{escape(alert.rule)}"))
    if alert.status == "resolved":
        lasted = format_duration(alert.duration) if alert.duration is not None else "unknown"
        fields.append(_mrkdwn(f"*Lasted*\n{lasted}"))
    if alert.escalation:
        fields.append(_mrkdwn(f"*Escalation*\n{escape(escalation or alert.escalation)}"))
    section: dict[str, Any] = {"type": "section", "fields": fields}
    if alert.status == "firing":
        runbook = (
            _link(alert.runbook.strip(), alert.runbook.strip())
            if alert.runbook
            else "none (add `runbook:` to the check)"
        )
        section["text"] = _mrkdwn(f"*Runbook:* {runbook}")
    blocks: list[dict[str, Any]] = [section]
    context = [f"alert `{escape(alert.id)}`", f"rule `{escape(alert.rule)}`"]
    if alert.change == "severity" and alert.previous_severity:
        context.append(f"was {escape(alert.previous_severity)}")
    if alert.started_at:
        context.append(f"since {_date(alert.started_at)}")
    if alert.acknowledged:
        context.append("acknowledged")
    elif alert.status == "firing":
        context.append(f"ack: `watchkeeper alerts ack {escape(alert.id)}`")
    blocks.append({"type": "context", "elements": [_mrkdwn(" · ".join(context))]})
    return blocks


def payload(notice: Notice, options: SlackOptions, name: str) -> dict[str, Any]:
    """Return the incoming-webhook JSON for a notice."""
    extra = {**messages.helpers(notice), "esc": escape, "notifier": name}
    # Slack refuses an empty header: an override rendering nothing falls back to the title
    title = render("title", notice, options, DEFAULTS, **extra) or notice.title or notice.kind
    text = render("text", notice, options, DEFAULTS, **{**extra, "headline": title})
    mention = f"{options.mention} " if options.mention and notice.firing else ""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, HEADER_LIMIT)}}
    ]
    if mention or text:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _cut(mention + text, SECTION_LIMIT)},
            }
        )
    detail: list[dict[str, Any]] = []
    for alert in notice.alerts[:MAX_ALERTS]:
        detail += alert_blocks(alert, notice.escalation_level)
    if len(notice.alerts) > MAX_ALERTS:
        more = len(notice.alerts) - MAX_ALERTS
        detail.append({"type": "context", "elements": [_mrkdwn(f"…and {more} more alert(s)")]})
    if not notice.alerts:
        detail.append(
            {"type": "context", "elements": [_mrkdwn(f"{notice.kind} · notice `{notice.id}`")]}
        )
    body: dict[str, Any] = {
        # the notification's text (and what clients without Block Kit show)
        "text": _cut(mention + title, SECTION_LIMIT),
        "blocks": blocks,
        "attachments": [{"color": messages.color(notice), "blocks": detail}],
    }
    for key in ("channel", "username", "icon_emoji"):
        value = getattr(options, key)
        if value:
            body[key] = value
    return REDACTOR.redact_obj(body)


class SlackNotifier(Notifier):
    type = "slack"
    Options = SlackOptions

    def preview(self, notice: Notice, options: SlackOptions) -> str:
        """Return the JSON this notice would be posted as."""
        return json.dumps(payload(notice, options, "preview"), indent=2, ensure_ascii=False)

    async def send(self, notice: Notice, options: SlackOptions, ctx: NotifyContext) -> None:
        await send_http(
            f"slack `{ctx.name}`",
            "POST",
            options.webhook_url.get_secret_value(),
            content=json_bytes(payload(notice, options, ctx.name)),
            headers={"Content-Type": "application/json"},
            timeout=ctx.timeout,
            # Slack answers 200 "ok"; anything else is a refusal
            accept=lambda response: response.status_code == 200,
        )


@hookimpl
def watchkeeper_notifiers():
    return [SlackNotifier]
