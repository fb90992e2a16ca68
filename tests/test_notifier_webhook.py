"""The `webhook` notifier against a real HTTP receiver, and the HTTP delivery rules it shares."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import time

import pytest

from tests.receivers import HttpRecorder, LogCapture, Reply, alert_of, deliver, notice_of
from watchkeeper.engine.alerting.notifier import DeliveryError
from watchkeeper.plugins.notifiers.delivery import parse_retry_after
from watchkeeper.plugins.notifiers.webhook import WebhookNotifier

pytestmark = pytest.mark.anyio

TOKEN = "s3cr3t-hook-token-4242"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def receiver():
    with HttpRecorder() as recorder:
        yield recorder


def options(receiver: HttpRecorder, **extra):
    return {"url": receiver.url(f"/hooks/{TOKEN}"), **extra}


async def test_posts_the_design_shape_with_an_idempotency_key(receiver):
    notice = notice_of(alert_of(), alert_of(id="al-2", rule="up", severity="critical"))
    await deliver(WebhookNotifier, options(receiver), notice)
    (request,) = receiver.requests
    assert request.method == "POST"
    assert request.path == f"/hooks/{TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == notice.id
    body = request.json()
    assert body == notice.webhook_payload()
    assert body["status"] == "firing"
    assert [a["id"] for a in body["alerts"]] == ["al-7f3a9c", "al-2"]
    # DESIGN.md's keys come first, in order; further context only when there is some
    assert list(body["alerts"][0])[:9] == [
        "id",
        "check",
        "environment",
        "rule",
        "severity",
        "status",
        "summary",
        "started_at",
        "resolved_at",
    ]


async def test_same_idempotency_key_on_every_attempt_of_a_notice(receiver):
    receiver.answer(503)
    notice = notice_of()
    with pytest.raises(DeliveryError):
        await deliver(WebhookNotifier, options(receiver), notice)
    await deliver(WebhookNotifier, options(receiver), notice)
    first, second = receiver.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == notice.id
    assert first.body == second.body


async def test_put_custom_headers_and_signature(receiver):
    secret = "signing-secret-xyz"
    await deliver(
        WebhookNotifier,
        options(
            receiver,
            method="PUT",
            headers={"Authorization": "Bearer abc123", "X-Team": "web"},
            signing_secret=secret,
        ),
        notice_of(),
    )
    (request,) = receiver.requests
    assert request.method == "PUT"
    assert request.headers["authorization"] == "Bearer abc123"
    assert request.headers["x-team"] == "web"
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-watchkeeper-signature"] == f"sha256={expected}"


async def test_resolved_group_reports_resolved(receiver):
    notice = notice_of(alert_of(status="resolved", resolved_at="2026-11-26T21:00:08Z"))
    await deliver(WebhookNotifier, options(receiver), notice)
    body = receiver.requests[0].json()
    assert body["status"] == "resolved"
    assert body["alerts"][0]["resolved_at"] == "2026-11-26T21:00:08Z"


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (408, True),
        (429, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (410, False),
        (422, False),
        (301, False),
    ],
)
async def test_status_classification(receiver, status, retryable):
    receiver.always(Reply(status, body="nope"))
    with pytest.raises(DeliveryError) as caught:
        await deliver(WebhookNotifier, options(receiver), notice_of(), name="hook")
    assert caught.value.retryable is retryable
    assert caught.value.status == status
    assert str(caught.value).startswith(f"webhook `hook`: HTTP {status}")


async def test_2xx_other_than_200_is_accepted(receiver):
    receiver.answer(202, 204)
    await deliver(WebhookNotifier, options(receiver), notice_of())
    await deliver(WebhookNotifier, options(receiver), notice_of())
    assert len(receiver.requests) == 2


async def test_retry_after_seconds_travel_on_the_error(receiver):
    receiver.answer(Reply(429, headers={"Retry-After": "17"}))
    with pytest.raises(DeliveryError) as caught:
        await deliver(WebhookNotifier, options(receiver), notice_of())
    assert caught.value.retryable
    assert caught.value.retry_after == 17.0
    assert "retry after 17s" in str(caught.value)


async def test_retry_after_as_http_date(receiver):
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    receiver.answer(Reply(503, headers={"Retry-After": later}))
    with pytest.raises(DeliveryError) as caught:
        await deliver(WebhookNotifier, options(receiver), notice_of())
    assert 100 < caught.value.retry_after <= 120


def test_parse_retry_after():
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("3.5") == 3.5
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert parse_retry_after(past) == 0.0


async def test_connection_refused_is_retryable_and_quotes_no_url():
    with HttpRecorder() as gone:
        url = gone.url(f"/hooks/{TOKEN}")
    with pytest.raises(DeliveryError) as caught:
        await deliver(WebhookNotifier, {"url": url}, notice_of(), name="hook")
    assert caught.value.retryable
    message = str(caught.value)
    assert message.startswith("webhook `hook`: cannot connect")
    assert TOKEN not in message
    assert "127.0.0.1" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_timeout_is_retryable(receiver):
    receiver.answer(Reply(200, delay=1.5))
    with pytest.raises(DeliveryError) as caught:
        await deliver(WebhookNotifier, options(receiver), notice_of(), timeout=0.5)
    assert caught.value.retryable
    assert "no answer within" in str(caught.value)


async def test_secret_url_is_in_no_error_or_log_even_when_the_receiver_echoes_it(receiver):
    # a receiver that quotes the request path back (many 404 pages do)
    receiver.always(Reply(404, body=json.dumps({"error": f"no route /hooks/{TOKEN}"})))
    with LogCapture() as logs, pytest.raises(DeliveryError) as caught:
        await deliver(WebhookNotifier, options(receiver), notice_of(), name="hook")
    assert TOKEN not in str(caught.value)
    assert "HTTP 404" in str(caught.value)
    assert TOKEN not in logs.text


async def test_notice_secrets_are_masked_in_the_body(receiver):
    from watchkeeper.engine.observe.redaction import REDACTOR

    REDACTOR.add("hunter2-db-password")
    try:
        notice = notice_of(alert_of(summary="login failed for postgres://u:hunter2-db-password@db"))
        await deliver(WebhookNotifier, options(receiver), notice)
    finally:
        REDACTOR.clear()
    assert b"hunter2-db-password" not in receiver.requests[0].body
