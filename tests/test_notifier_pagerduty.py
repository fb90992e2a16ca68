"""The `pagerduty` notifier: Events API v2 bodies posted to a real HTTP receiver."""

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
from watchkeeper.engine.cli.notify_cmd import sample_notice
from watchkeeper.plugins.notifiers.pagerduty import PagerDutyNotifier, change_url

pytestmark = pytest.mark.anyio

ROUTING_KEY = "R0UTINGKEYsecret0123456789abcdef"
ACCEPTED = Reply(202, json.dumps({"status": "success", "message": "Event processed"}))


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def receiver():
    with HttpRecorder(ACCEPTED) as recorder:
        yield recorder


def options(receiver: HttpRecorder, **extra):
    return {"routing_key": ROUTING_KEY, "url": receiver.url("/v2/enqueue"), **extra}


def test_one_event_per_alert():
    assert PagerDutyNotifier.groups is False


async def test_trigger(receiver):
    await deliver(PagerDutyNotifier, options(receiver), notice_of())
    (request,) = receiver.requests
    assert request.path == "/v2/enqueue"
    body = request.json()
    assert body["routing_key"] == ROUTING_KEY
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "watchkeeper-al-7f3a9c"
    payload = body["payload"]
    assert payload["summary"] == "api-health@production: response_time 5.2s above 5s (high)"
    assert payload["source"] == "api-health@production"
    assert payload["severity"] == "error"  # high -> error by the default severity_map
    assert payload["component"] == "api-health"
    assert payload["group"] == "production"
    assert payload["class"] == "slow"
    assert payload["timestamp"] == "2026-11-26T20:44:08Z"
    details = payload["custom_details"]
    assert details["summary"] == payload["summary"]
    assert details["metric"] == "response_time"
    assert details["value"] == "5.2s"
    assert details["threshold"] == "5s"
    assert details["runbook"] == "https://wiki.example.com/runbooks/api-health"
    assert details["labels"] == {"team": "web"}
    assert body["links"] == [
        {"href": "https://wiki.example.com/runbooks/api-health", "text": "Runbook"}
    ]


async def test_trigger_and_resolve_pair_up_and_a_resend_is_the_same_event(receiver):
    firing = notice_of()
    await deliver(PagerDutyNotifier, options(receiver), firing)
    await deliver(PagerDutyNotifier, options(receiver), firing)  # a resend after a crash
    await deliver(PagerDutyNotifier, options(receiver), notice_of(resolved_of(), id="wk-res"))
    trigger, again, resolve = (r.json() for r in receiver.requests)
    assert trigger == again
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == trigger["dedup_key"]
    assert "payload" not in resolve


async def test_acknowledged_alert_acknowledges(receiver):
    await deliver(PagerDutyNotifier, options(receiver), notice_of(alert_of(acknowledged=True)))
    assert receiver.requests[0].json()["event_action"] == "acknowledge"


async def test_severity_map_and_summary_limit_and_text_runbook(receiver):
    alert = alert_of(severity="sev1", runbook="call the on-call DBA")
    longer = "{% for i in range(300) %}xxxxxxxx{% endfor %}"
    await deliver(
        PagerDutyNotifier,
        options(receiver, severity_map={"sev1": "critical"}, templates={"summary": longer}),
        notice_of(alert),
    )
    body = receiver.requests[0].json()
    assert body["payload"]["severity"] == "critical"
    assert len(body["payload"]["summary"]) == 1024
    assert "links" not in body
    assert body["payload"]["custom_details"]["runbook"] == "call the on-call DBA"


async def test_summary_template_override(receiver):
    await deliver(
        PagerDutyNotifier,
        options(receiver, templates={"summary": "{{ alert.check }} is unwell"}),
        notice_of(),
    )
    assert receiver.requests[0].json()["payload"]["summary"] == "api-health is unwell"


async def test_deploy_goes_to_the_change_events_api(receiver):
    notice = Notice(
        id="wk-ev",
        kind="event",
        status="info",
        title="deploy v2 to production",
        event={"event": "deploy", "version": "v2", "environment": "production"},
    )
    await deliver(PagerDutyNotifier, options(receiver), notice)
    (request,) = receiver.requests
    assert request.path == "/v2/change/enqueue"
    body = request.json()
    assert body["routing_key"] == ROUTING_KEY
    assert body["payload"]["summary"] == "deploy v2 to production"
    assert body["payload"]["custom_details"]["version"] == "v2"


def test_change_url():
    assert change_url("https://events.pagerduty.com/v2/enqueue") == (
        "https://events.pagerduty.com/v2/change/enqueue"
    )
    assert change_url("https://events.eu.pagerduty.com/v2/enqueue/") == (
        "https://events.eu.pagerduty.com/v2/change/enqueue"
    )


async def test_a_test_notice_triggers_then_resolves(receiver):
    await deliver(PagerDutyNotifier, options(receiver), sample_notice("infra", ["high", "low"]))
    trigger, resolve = (r.json() for r in receiver.requests)
    assert trigger["event_action"] == "trigger"
    assert trigger["payload"]["summary"] == (
        "[TEST] watchkeeper-test: response_time 2.5s above 2s (low)"
    )
    assert trigger["payload"]["severity"] == "info"
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == trigger["dedup_key"]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
    ],
)
async def test_refusals(receiver, status, retryable):
    # PagerDuty's answer may quote what it got: the routing key must still not show
    echo = json.dumps({"status": "invalid event", "errors": [f"bad key {ROUTING_KEY}"]})
    receiver.always(Reply(status, echo))
    with LogCapture() as logs, pytest.raises(DeliveryError) as caught:
        await deliver(PagerDutyNotifier, options(receiver), notice_of(), name="infra")
    assert caught.value.retryable is retryable
    assert str(caught.value).startswith(f"pagerduty `infra`: HTTP {status}")
    assert ROUTING_KEY not in str(caught.value)
    assert ROUTING_KEY not in logs.text


async def test_the_summary_is_the_headline_and_the_body_excerpt_a_detail(receiver):
    said = "HTTP 503 from https://app.example.com/api/health (expected 200): " + "{}" * 400
    alert = alert_of(rule="up", metric=None, summary=said, severity="critical")
    await deliver(PagerDutyNotifier, options(receiver), notice_of(alert))
    payload = receiver.requests[0].json()["payload"]
    assert payload["summary"] == "api-health@production is down: HTTP 503 (critical)"
    assert payload["custom_details"]["detail"].startswith("HTTP 503 from https://app.example")
    assert len(payload["custom_details"]["detail"]) == 300
