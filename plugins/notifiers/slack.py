"""The `slack` notifier: Block Kit messages through an incoming webhook, or as a Slack app
(a bot token: `chat.postMessage`, with Acknowledge and Silence buttons on firing alerts
whose clicks reach `POST /api/integrations/slack/actions`)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, model_validator

from watchkeeper.engine.alerting.notice import Notice, NoticeAlert
from watchkeeper.engine.alerting.notifier import Notifier, NotifyContext
from watchkeeper.engine.alerting.templates import render
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.plugins.notifiers import messages
from watchkeeper.plugins.notifiers.delivery import ReceiverError, json_bytes, scrub, send_http
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret
from watchkeeper.schema.units import format_duration

DEFAULTS = {"title": messages.HEADLINE, "text": messages.MRKDWN}
MAX_ALERTS = 10
"""Alerts shown with their own fields; Slack allows 50 blocks in a message."""
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
BUTTON_LIMIT = 75
ACK_ACTION = "watchkeeper_ack"
SILENCE_ACTION = "watchkeeper_silence_1h"
"""The buttons' `action_id`s; their `value` is the alert's id (docs/notifiers.md ► slack)."""
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
"""Slack Web API `error`s worth another attempt; every other one is final."""


class SlackOptions(NotifierOptions):
    """Post to a Slack channel through an incoming webhook, or as a Slack app (bot token)."""

    template_names = ("title", "text")
    webhook_url: Secret | None = Field(
        None, description="Incoming webhook URL (give this or `bot_token`)."
    )
    bot_token: Secret | None = Field(
        None,
        description="Bot User OAuth Token (xoxb-…) of a Slack app: messages go through "
        "chat.postMessage and firing alerts carry Acknowledge and Silence buttons.",
    )
    signing_secret: Secret | None = Field(
        None,
        description="The app's Signing Secret: button clicks sent to "
        "/api/integrations/slack/actions are verified with it (no buttons without it).",
    )
    api_url: str = Field(
        "https://slack.com/api", description="Slack Web API base URL (for a proxy or tests)."
    )
    channel: str | None = Field(
        None,
        description="Channel, e.g. #alerts or C0123ABCD: required with `bot_token` "
        "(webhooks created for one channel ignore it).",
    )
    username: str | None = Field(None, description="Name shown as the sender.")
    icon_emoji: str | None = Field(None, description="Emoji shown as the sender's icon.")
    mention: str | None = Field(None, description="Prefix for firing messages, e.g. <!here>.")

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackOptions:
        if (self.webhook_url is None) == (self.bot_token is None):
            raise ValueError("give one of `webhook_url` (incoming webhook) or `bot_token` (app)")
        if self.bot_token is not None and not self.channel:
            raise ValueError("`bot_token` needs `channel`: the app posts to it")
        if self.signing_secret is not None and self.bot_token is None:
            raise ValueError(
                "`signing_secret` needs `bot_token`: incoming webhooks cannot carry buttons"
            )
        return self

    @property
    def interactive(self) -> bool:
        """True when firing messages carry buttons (an app that can verify their clicks)."""
        return self.bot_token is not None and self.signing_secret is not None


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
    if alert.locations:
        where = messages.locations_text(alert.locations)
        fields.append(_mrkdwn(f"*Locations*\n{escape(where)}"))
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


def button_blocks(alert: NoticeAlert, alone: bool) -> dict[str, Any]:
    """Return the actions block of a firing alert: Acknowledge and Silence 1 h, each
    carrying the alert's id (`alone`: the only alert of its message, so no name needed)."""
    what = "" if alone else f" {messages.instance(alert)}"
    return {
        "type": "actions",
        "block_id": f"watchkeeper|{alert.id}",
        "elements": [
            {
                "type": "button",
                "action_id": ACK_ACTION,
                "text": {"type": "plain_text", "text": _cut("Acknowledge" + what, BUTTON_LIMIT)},
                "style": "primary",
                "value": alert.id,
            },
            {
                "type": "button",
                "action_id": SILENCE_ACTION,
                "text": {"type": "plain_text", "text": _cut("Silence 1 h" + what, BUTTON_LIMIT)},
                "value": alert.id,
            },
        ],
    }


def payload(
    notice: Notice, options: SlackOptions, name: str, *, buttons: bool = False
) -> dict[str, Any]:
    """Return the message JSON for a notice (an incoming webhook's body, or chat.postMessage's
    without the channel); `buttons`: firing, unacknowledged alerts get an actions block."""
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
    if buttons:
        shown = notice.alerts[:MAX_ALERTS]
        for alert in shown:
            if alert.status == "firing" and not alert.acknowledged:
                blocks.append(button_blocks(alert, len(shown) == 1))
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
        body = payload(notice, options, "preview", buttons=options.interactive)
        return json.dumps(body, indent=2, ensure_ascii=False)

    async def send(self, notice: Notice, options: SlackOptions, ctx: NotifyContext) -> None:
        if options.bot_token is not None:
            body = payload(notice, options, ctx.name, buttons=options.interactive)
            await web_api(options, "chat.postMessage", body, ctx.timeout, f"slack `{ctx.name}`")
            return
        assert options.webhook_url is not None  # the options' validator saw to it
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


async def web_api(
    options: SlackOptions, method: str, body: dict[str, Any], timeout: float, label: str
) -> dict[str, Any]:
    """Call a Slack Web API method with the bot token; return its answer when `ok`, raise
    ReceiverError (retryable for rate limits and Slack's own failures) when not."""
    assert options.bot_token is not None
    token = options.bot_token.get_secret_value()
    response = await send_http(
        label,
        "POST",
        f"{options.api_url.rstrip('/')}/{method}",
        content=json_bytes(body),
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {token}",
        },
        timeout=timeout,
        secrets=[token],
    )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ReceiverError(f"{label}: {method} answered without JSON", retryable=True)
    if answer.get("ok") is not True:
        said = str(answer.get("error") or "no error given")[:100]
        raise ReceiverError(
            f"{label}: {method} refused ({scrub(said, [token])})",
            retryable=said in RETRYABLE_ERRORS,
        )
    return answer


@hookimpl
def watchkeeper_notifiers():
    return [SlackNotifier]
