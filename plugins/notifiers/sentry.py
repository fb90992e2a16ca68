"""The `sentry` notifier: each alert becomes a Sentry event with tags.

sentry-sdk builds the event (a private `Client` and a fresh `Scope`: the daemon's own
global client, its scopes and breadcrumbs are never touched or merged in), but does not
send it: the SDK's transport delivers from a background thread and reports nothing back,
so an outbox could never know whether Sentry accepted the notice. A capturing transport
takes the envelope instead and we POST it to the DSN's envelope endpoint ourselves,
classifying the answer like any HTTP receiver (429 and 5xx retryable, honouring
Retry-After / X-Sentry-Rate-Limits). The event id derives from the notice and alert ids,
so a resend after a crash is the same event, which Sentry drops as a duplicate.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from pydantic import Field

from watchkeeper.engine.alerting.notice import Notice, NoticeAlert
from watchkeeper.engine.alerting.notifier import DeliveryError, Notifier, NotifyContext
from watchkeeper.engine.alerting.templates import render
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.plugins.notifiers import messages
from watchkeeper.plugins.notifiers.delivery import secret_parts, send_http
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret

DEFAULTS = {"message": messages.ALERT_SUMMARY}
LEVELS = {
    "critical": "fatal",
    "high": "error",
    "medium": "warning",
    "warning": "warning",
    "low": "info",
    "info": "info",
}
EVENT_NAMESPACE = uuid.UUID("5b0c4a5e-7f4e-4d4f-9a57-77617463686b")


class SentryNotifierOptions(NotifierOptions):
    """Send alerts to a Sentry project as events."""

    template_names = ("message",)
    dsn: Secret = Field(description="DSN of the project receiving alert events.")
    environment: str | None = Field(None, description="Sentry environment of the events.")


def level(severity: str | None) -> str:
    """Return the Sentry level of a severity (a severity of the user's naming: error)."""
    return LEVELS.get(severity or "info", "error")


def event_id(notice: Notice, alert: NoticeAlert | None) -> str:
    """Return the event id of a notice (and alert): the same on every attempt."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{notice.id}/{alert.id if alert else ''}").hex


def fingerprint(alert: NoticeAlert) -> list[str]:
    """Return the grouping of an alert's events: one Sentry issue per check, env and rule."""
    return [alert.check, alert.environment or "default", alert.rule]


class _Captured:
    """Envelopes the SDK hands its transport, kept for us to send."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.lock = threading.Lock()

    def take(self) -> list[Any]:
        with self.lock:
            taken, self.envelopes = self.envelopes, []
        return taken


def _transport_class(store: _Captured) -> type:
    from sentry_sdk.transport import Transport

    class CapturingTransport(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            with store.lock:
                store.envelopes.append(envelope)

    return CapturingTransport


def _before_send(event: dict[str, Any], hint: Any) -> dict[str, Any]:
    # the release would be this daemon's checkout, not the monitored system's
    event.pop("release", None)
    event.pop("dist", None)
    return REDACTOR.redact_obj(event)


class _Project:
    """A private sentry-sdk client for one DSN and the envelopes it produced."""

    def __init__(self, dsn: str):
        import sentry_sdk
        from sentry_sdk import client as sdk_client

        self.captured = _Captured()
        self.capturing = threading.Lock()
        # Client() renames the SDK process-wide after its integrations; keep the
        # daemon's own client's name as it was
        sdk_info = dict(sdk_client.SDK_INFO)
        try:
            self.client = sentry_sdk.Client(
                dsn,
                transport=_transport_class(self.captured),
                default_integrations=False,
                auto_enabling_integrations=False,
                integrations=[],
                enable_backpressure_handling=False,
                send_client_reports=False,
                max_breadcrumbs=0,
                attach_stacktrace=False,
                spotlight=False,
                release="",  # not None: that would run `git` to guess one
                before_send=_before_send,
            )
        finally:
            sdk_client.SDK_INFO.clear()
            sdk_client.SDK_INFO.update(sdk_info)
        auth = self.client.transport.parsed_dsn.to_auth(f"watchkeeper/{_version()}")
        self.url = auth.get_api_url()
        self.auth_header = auth.to_header()
        self.public_key = self.client.transport.parsed_dsn.public_key

    def envelope(self, event: dict[str, Any], scope: Any) -> bytes | None:
        """Return the serialized envelope of one event, or None if the SDK dropped it."""
        with self.capturing:
            self.captured.take()
            self.client.capture_event(event, scope=scope)
            taken = self.captured.take()
        return taken[0].serialize() if taken else None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("watchkeeper")
    except PackageNotFoundError:
        return "0"


def describe(
    notice: Notice, alert: NoticeAlert | None, options: SentryNotifierOptions, name: str
) -> dict[str, Any]:
    """Return what the event of a notice (and alert) carries, as plain data."""
    message = render("message", notice, options, DEFAULTS, alert=alert, **messages.helpers(notice))
    tags = {"notice_kind": notice.kind, "notifier": name}
    if alert is None:
        details: dict[str, Any] = {
            "title": notice.title,
            "text": notice.text,
            "checklist": notice.checklist,
            **(notice.event or {}),
        }
        return {
            "message": message,
            "level": "info",
            "fingerprint": ["watchkeeper", notice.kind, notice.title],
            "tags": tags,
            "context_name": "notice",
            "context": {k: v for k, v in details.items() if v},
            "environment": options.environment,
        }
    tags |= {
        "check": alert.check,
        "rule": alert.rule,
        "severity": alert.severity,
        "alert_id": alert.id,
    }
    if alert.environment:
        tags["environment"] = alert.environment
    if alert.escalation:
        tags["escalation"] = alert.escalation
    details = {
        "summary": alert.headline,
        "detail": alert.detail,
        "status": alert.status,
        "started_at": alert.started_at,
        "metric": alert.metric,
        "value": alert.value_text or alert.value,
        "threshold": alert.threshold_text or alert.threshold,
        "direction": alert.direction,
        "escalation": notice.escalation_level,
        "runbook": alert.runbook,
        "flapping": alert.flapping or None,
        "labels": alert.labels or None,
        "actions": alert.actions or None,
        "notice_id": notice.id,
    }
    return {
        "message": message,
        "level": level(alert.severity),
        "fingerprint": fingerprint(alert),
        "tags": tags,
        "context_name": "alert",
        "context": {k: v for k, v in details.items() if v is not None},
        "environment": options.environment or alert.environment,
    }


class SentryNotifier(Notifier):
    type = "sentry"
    Options = SentryNotifierOptions
    groups = False

    def __init__(self) -> None:
        self._projects: dict[str, _Project] = {}
        self._lock = threading.Lock()

    def _project(self, dsn: str) -> _Project:
        with self._lock:
            project = self._projects.get(dsn)
            if project is None:
                project = self._projects[dsn] = _Project(dsn)
            return project

    def preview(self, notice: Notice, options: SentryNotifierOptions) -> str:
        """Return the message, level, tags and fingerprint of each event this notice makes."""
        lines = []
        for alert in notice.alerts or [None]:
            if alert is not None and alert.status == "resolved":
                lines.append(f"(resolved {alert.id}: no event)")
                continue
            spec = describe(notice, alert, options, "preview")
            tags = " ".join(f"{k}={v}" for k, v in spec["tags"].items())
            lines.append(
                f"[{spec['level']}] {spec['message']}\n  tags: {tags}\n"
                f"  fingerprint: {spec['fingerprint']}"
            )
        return "\n".join(lines)

    async def send(
        self, notice: Notice, options: SentryNotifierOptions, ctx: NotifyContext
    ) -> None:
        dsn = options.dsn.get_secret_value()
        label = f"sentry `{ctx.name}`"
        try:
            project = self._project(dsn)
        except Exception as exc:  # BadDsn and friends: their text may quote the DSN
            raise DeliveryError(
                f"{label}: the DSN is not valid ({type(exc).__name__})", retryable=False
            ) from None
        if not notice.alerts:
            await self._deliver(
                project, self._event(notice, None, options, ctx.name), label, ctx, dsn
            )
            return
        for alert in notice.alerts:
            if alert.status == "resolved":
                # an event cannot resolve a Sentry issue; sending one would count as a
                # new occurrence of the incident that just ended
                ctx.log.debug(
                    "sentry notifier skips resolved alerts",
                    extra={"notifier": ctx.name, "alert_id": alert.id},
                )
                continue
            await self._deliver(
                project, self._event(notice, alert, options, ctx.name), label, ctx, dsn
            )

    def _event(
        self,
        notice: Notice,
        alert: NoticeAlert | None,
        options: SentryNotifierOptions,
        name: str,
    ) -> tuple[dict[str, Any], Any]:
        """Return the event and a fresh scope carrying its level, tags and fingerprint."""
        import sentry_sdk

        spec = describe(notice, alert, options, name)
        scope = sentry_sdk.Scope()
        scope.set_level(spec["level"])
        scope.fingerprint = spec["fingerprint"]
        for key, value in spec["tags"].items():
            scope.set_tag(key, value)
        scope.set_context(spec["context_name"], spec["context"])
        event: dict[str, Any] = {
            "event_id": event_id(notice, alert),
            "message": spec["message"],
            "logger": "watchkeeper",
        }
        if spec["environment"]:
            event["environment"] = spec["environment"]
        return event, scope

    async def _deliver(
        self,
        project: _Project,
        built: tuple[dict[str, Any], Any],
        label: str,
        ctx: NotifyContext,
        dsn: str,
    ) -> None:
        event, scope = built
        body = project.envelope(event, scope)
        if body is None:
            raise DeliveryError(f"{label}: sentry-sdk dropped the event", retryable=False)
        await send_http(
            label,
            "POST",
            project.url,
            content=body,
            headers={
                "Content-Type": "application/x-sentry-envelope",
                "X-Sentry-Auth": project.auth_header,
            },
            timeout=ctx.timeout,
            secrets=[*secret_parts(dsn), project.public_key],
        )


@hookimpl
def watchkeeper_notifiers():
    return [SentryNotifier]
