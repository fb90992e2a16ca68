"""The `sentry` notifier: alert events posted to a local endpoint posing as the DSN's host."""

from __future__ import annotations

import json

import pytest

from tests.receivers import (
    HttpRecorder,
    LogCapture,
    Reply,
    alert_of,
    deliver,
    notice_of,
    resolved_of,
)
from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.engine.alerting.notifier import DeliveryError
from watchkeeper.plugins.notifiers.sentry import SentryNotifier

pytestmark = pytest.mark.anyio

PUBLIC_KEY = "f00dfacepublickey0123456789abcdef"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def receiver():
    with HttpRecorder(Reply(200, '{"id":"accepted"}')) as recorder:
        yield recorder


def dsn(receiver: HttpRecorder) -> str:
    return f"http://{PUBLIC_KEY}@127.0.0.1:{receiver.port}/42"


def envelope(body: bytes) -> tuple[dict, list[tuple[dict, dict]]]:
    """Split a Sentry envelope into its header and (item header, item payload) pairs."""
    lines = body.split(b"\n")
    header = json.loads(lines[0])
    items = []
    index = 1
    while index < len(lines) and lines[index].strip():
        item_header = json.loads(lines[index])
        payload = json.loads(lines[index + 1])
        items.append((item_header, payload))
        index += 2
    return header, items


def event_of(request) -> dict:
    _header, items = envelope(request.body)
    (item_header, event), *_ = items
    assert item_header["type"] == "event"
    return event


async def test_alert_arrives_as_an_event_with_tags(receiver):
    await deliver(SentryNotifier, {"dsn": dsn(receiver)}, notice_of(), name="sentry-alerts")
    (request,) = receiver.requests
    assert request.method == "POST"
    assert request.path == "/api/42/envelope/"
    assert request.headers["content-type"] == "application/x-sentry-envelope"
    assert f"sentry_key={PUBLIC_KEY}" in request.headers["x-sentry-auth"]
    event = event_of(request)
    assert event["tags"] == {
        "check": "api-health",
        "environment": "production",
        "rule": "slow",
        "severity": "high",
        "alert_id": "al-7f3a9c",
        "notice_kind": "alert",
        "notifier": "sentry-alerts",
    }
    assert event["fingerprint"] == ["api-health", "production", "slow"]
    assert event["level"] == "error"
    assert event["environment"] == "production"
    assert event["message"] == "api-health@production: response_time 5.2s above 5s (high)"
    context = event["contexts"]["alert"]
    assert context["value"] == "5.2s"
    assert context["threshold"] == "5s"
    assert context["runbook"] == "https://wiki.example.com/runbooks/api-health"
    assert "release" not in event
    assert event["breadcrumbs"]["values"] == []


async def test_a_resend_is_the_same_event(receiver):
    notice = notice_of()
    await deliver(SentryNotifier, {"dsn": dsn(receiver)}, notice)
    await deliver(SentryNotifier, {"dsn": dsn(receiver)}, notice)
    first, second = (event_of(r) for r in receiver.requests)
    assert first["event_id"] == second["event_id"]
    other = notice_of(id="wk-another")
    await deliver(SentryNotifier, {"dsn": dsn(receiver)}, other)
    assert event_of(receiver.requests[2])["event_id"] != first["event_id"]


async def test_levels_and_configured_environment(receiver):
    plugin = SentryNotifier()
    opts = {"dsn": dsn(receiver), "environment": "alerts"}
    await deliver(plugin, opts, notice_of(alert_of(severity="critical")))
    await deliver(plugin, opts, notice_of(alert_of(severity="low")))
    critical, low = (event_of(r) for r in receiver.requests)
    assert critical["level"] == "fatal"
    assert low["level"] == "info"
    assert critical["environment"] == "alerts"


async def test_resolved_alerts_send_nothing(receiver):
    await deliver(SentryNotifier, {"dsn": dsn(receiver)}, notice_of(resolved_of()))
    assert receiver.requests == []


async def test_other_notices_are_info_messages(receiver):
    notice = Notice(
        id="wk-ev",
        kind="event",
        status="info",
        title="deploy v3 to production",
        event={"event": "deploy", "version": "v3"},
    )
    await deliver(SentryNotifier, {"dsn": dsn(receiver)}, notice)
    event = event_of(receiver.requests[0])
    assert event["level"] == "info"
    assert event["message"] == "deploy v3 to production"
    assert event["contexts"]["notice"]["version"] == "v3"


async def test_the_daemons_own_sentry_client_and_scopes_are_untouched(receiver):
    import sentry_sdk

    with HttpRecorder(Reply(200, "{}")) as daemons_project:
        daemon_dsn = f"http://daemonkey@127.0.0.1:{daemons_project.port}/1"
        sentry_sdk.init(daemon_dsn, default_integrations=False, auto_enabling_integrations=False)
        daemon_client = sentry_sdk.get_client()
        try:
            sentry_sdk.get_isolation_scope().set_tag("daemon-only", "yes")
            sentry_sdk.add_breadcrumb(message="daemon breadcrumb")
            await deliver(SentryNotifier, {"dsn": dsn(receiver)}, notice_of())
            assert sentry_sdk.get_client() is daemon_client
            daemon_client.flush(timeout=2)
            assert daemons_project.requests == []  # the alert went to its own project only
            event = event_of(receiver.requests[0])
            assert "daemon-only" not in event["tags"]
            assert event["breadcrumbs"]["values"] == []
            assert event["sdk"]["name"] == "sentry.python"
        finally:
            sentry_sdk.get_isolation_scope().remove_tag("daemon-only")
            sentry_sdk.get_isolation_scope().clear_breadcrumbs()
            daemon_client.close(timeout=1)
            sentry_sdk.get_global_scope().set_client(None)


async def test_message_template_override(receiver):
    opts = {"dsn": dsn(receiver), "templates": {"message": "{{ alert.check }}: {{ alert.rule }}"}}
    await deliver(SentryNotifier, opts, notice_of())
    assert event_of(receiver.requests[0])["message"] == "api-health: slow"


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [
        (Reply(429, "", {"Retry-After": "60"}), True),
        (Reply(429, "", {"X-Sentry-Rate-Limits": "120:error:organization"}), True),
        (Reply(503, "unavailable"), True),
        (Reply(401, '{"detail":"bad key"}'), False),
        (Reply(403, '{"detail":"project disabled"}'), False),
        (Reply(413, "too large"), False),
    ],
)
async def test_refusals(receiver, reply, retryable):
    receiver.always(reply)
    with LogCapture() as logs, pytest.raises(DeliveryError) as caught:
        await deliver(SentryNotifier, {"dsn": dsn(receiver)}, notice_of(), name="sentry-alerts")
    assert caught.value.retryable is retryable
    assert str(caught.value).startswith(f"sentry `sentry-alerts`: HTTP {reply.status}")
    if reply.status == 429:
        assert caught.value.retry_after in (60.0, 120.0)
    assert PUBLIC_KEY not in str(caught.value)
    assert PUBLIC_KEY not in logs.text


async def test_unreachable_ingest_is_retryable():
    with HttpRecorder() as gone:
        url = f"http://{PUBLIC_KEY}@127.0.0.1:{gone.port}/42"
    with pytest.raises(DeliveryError) as caught:
        await deliver(SentryNotifier, {"dsn": url}, notice_of(), name="s")
    assert caught.value.retryable
    assert PUBLIC_KEY not in str(caught.value)


async def test_invalid_dsn_is_final_and_not_quoted():
    with pytest.raises(DeliveryError) as caught:
        await deliver(SentryNotifier, {"dsn": "not-a-dsn-secretvalue"}, notice_of(), name="s")
    assert not caught.value.retryable
    assert "secretvalue" not in str(caught.value)
