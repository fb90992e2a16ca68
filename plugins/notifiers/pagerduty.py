"""The `pagerduty` notifier: Events API v2, one event per alert, paired by dedup_key."""

from __future__ import annotations

import json
from typing import Any, Literal

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

PagerDutySeverity = Literal["critical", "error", "warning", "info"]
DEFAULTS = {"summary": messages.ALERT_SUMMARY}
SUMMARY_LIMIT = 1024
DEDUP_PREFIX = "watchkeeper-"
CLIENT = "watchkeeper"


class PagerDutyOptions(NotifierOptions):
    """Trigger and resolve PagerDuty incidents."""

    template_names = ("summary",)
    routing_key: Secret = Field(description="Integration (routing) key of the service.")
    url: str = Field("https://events.pagerduty.com/v2/enqueue", description="Events API URL.")
    webhook_secret: Secret | None = Field(
        None,
        description="Secret of the service's V3 webhook subscription: acknowledgements and "
        "resolutions sent to /api/integrations/pagerduty are verified with it.",
    )
    severity_map: dict[str, PagerDutySeverity] = Field(
        default_factory=lambda: {
            "critical": "critical",
            "high": "error",
            "medium": "warning",
            "warning": "warning",
            "low": "info",
            "info": "info",
        },
        description="watchkeeper severity -> PagerDuty severity.",
    )


def dedup_key(alert: NoticeAlert) -> str:
    """Return the incident key of an alert: trigger and resolve pair up, a resend is idempotent."""
    return DEDUP_PREFIX + alert.id


def event_action(alert: NoticeAlert) -> str:
    """Return trigger, acknowledge or resolve for an alert's state."""
    if alert.status == "resolved":
        return "resolve"
    return "acknowledge" if alert.acknowledged else "trigger"


def _summary(notice: Notice, options: PagerDutyOptions, alert: NoticeAlert | None) -> str:
    text = render("summary", notice, options, DEFAULTS, alert=alert, **messages.helpers(notice))
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def alert_event(
    notice: Notice, alert: NoticeAlert, options: PagerDutyOptions, action: str | None = None
) -> dict[str, Any]:
    """Return the Events API v2 body for one alert (without the routing key)."""
    action = action or event_action(alert)
    body: dict[str, Any] = {
        "event_action": action,
        "dedup_key": dedup_key(alert),
        "client": CLIENT,
    }
    if action != "trigger":
        return body  # PagerDuty ignores a payload on acknowledge and resolve
    details: dict[str, Any] = {
        "summary": alert.headline,
        "detail": alert.detail,
        "check": alert.check,
        "environment": alert.environment,
        "rule": alert.rule,
        "alert_id": alert.id,
        "runbook": alert.runbook,
        "labels": alert.labels,
        "started_at": alert.started_at,
    }
    if alert.metric:
        details |= {
            "metric": alert.metric,
            "value": alert.value_text or alert.value,
            "threshold": alert.threshold_text or alert.threshold,
            "direction": alert.direction,
        }
    if alert.locations:
        details["locations"] = alert.locations
    if alert.escalation:
        details["escalation"] = notice.escalation_level or alert.escalation
    if alert.flapping:
        details["flapping"] = True
    if alert.actions:
        details["actions"] = alert.actions
    if notice.kind == "test":
        details["test"] = "sent by `watchkeeper notify test`; resolved right away"
    body["payload"] = {
        "summary": _summary(notice, options, alert),
        "source": messages.instance(alert),
        "severity": options.severity_map.get(alert.severity, "error"),
        "component": alert.check,
        "group": alert.environment or "default",
        "class": alert.rule,
        "custom_details": {k: v for k, v in details.items() if v not in (None, {}, [])},
    }
    if alert.started_at:
        body["payload"]["timestamp"] = alert.started_at
    if alert.runbook and alert.runbook.startswith(("https://", "http://")):
        body["links"] = [{"href": alert.runbook, "text": "Runbook"}]
    return body


def change_event(notice: Notice, options: PagerDutyOptions) -> dict[str, Any]:
    """Return a Change Events body for a deploy, task or announcement (informational)."""
    details: dict[str, Any] = dict(notice.event or {})
    if notice.checklist:
        details["checklist"] = notice.checklist
    if notice.text:
        details["text"] = notice.text
    payload: dict[str, Any] = {
        "summary": _summary(notice, options, None),
        "source": CLIENT,
        "custom_details": details,
    }
    return {"payload": payload}


def change_url(url: str) -> str:
    """Return the Change Events endpoint next to an Events API URL."""
    base, _, _ = url.rstrip("/").rpartition("/enqueue")
    return (base or url.rstrip("/")) + "/change/enqueue"


class PagerDutyNotifier(Notifier):
    type = "pagerduty"
    Options = PagerDutyOptions
    groups = False

    def preview(self, notice: Notice, options: PagerDutyOptions) -> str:
        """Return the events this notice would send (without the routing key)."""
        if not notice.alerts:
            events = [change_event(notice, options)]
        else:
            events = [alert_event(notice, alert, options) for alert in notice.alerts]
        return json.dumps(REDACTOR.redact_obj(events), indent=2, ensure_ascii=False)

    async def send(self, notice: Notice, options: PagerDutyOptions, ctx: NotifyContext) -> None:
        if not notice.alerts:
            # nothing to page about: record it on the service's change timeline instead
            await self._post(change_event(notice, options), change_url(options.url), options, ctx)
            return
        # the engine sends one alert per notice to receivers with `groups = False`;
        # more would still each get their own event
        for alert in notice.alerts:
            await self._post(alert_event(notice, alert, options), options.url, options, ctx)
            if notice.kind == "test" and alert.status == "firing":
                # a test must not leave an incident open (nor keep someone's phone ringing)
                resolve = alert_event(notice, alert, options, action="resolve")
                await self._post(resolve, options.url, options, ctx)

    async def _post(
        self, body: dict[str, Any], url: str, options: PagerDutyOptions, ctx: NotifyContext
    ) -> None:
        key = options.routing_key.get_secret_value()
        # mask secrets in what we say, then add the one secret PagerDuty needs
        content = json_bytes({"routing_key": key, **REDACTOR.redact_obj(body)})
        await send_http(
            f"pagerduty `{ctx.name}`",
            "POST",
            url,
            content=content,
            headers={"Content-Type": "application/json"},
            timeout=ctx.timeout,
            secrets=[key],
        )


@hookimpl
def watchkeeper_notifiers():
    return [PagerDutyNotifier]
