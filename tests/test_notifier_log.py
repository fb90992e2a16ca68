"""The `log` notifier: one structured line per notice in the daemon's log."""

from __future__ import annotations

import logging

import pytest

from tests.receivers import LogCapture, alert_of, deliver, notice_of, resolved_of
from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.plugins.notifiers.log import LogNotifier

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_firing_notice_is_one_line_at_the_configured_level():
    notice = notice_of(
        alert_of(), alert_of(id="al-2", rule="up", summary="connection refused", metric=None)
    )
    with LogCapture() as logs:
        await deliver(LogNotifier, {"level": "error"}, notice, name="console")
    (record,) = logs.records
    assert record.name == "watchkeeper.notify"
    assert record.levelno == logging.ERROR
    assert "\n" not in record.getMessage()
    message = record.getMessage()
    assert message.startswith(
        "api-health@production: 2 alerts firing (high): response_time 5.2s above 5s; "
        "down: connection refused"
    )
    assert "runbook https://wiki.example.com/runbooks/api-health" in message
    assert "connection refused" in message
    assert record.notifier == "console"
    assert record.notice_id == notice.id
    assert record.status == "firing"
    assert record.alerts == 2
    assert "notifier=console" in logs.lines[0]
    assert "alerts=2" in logs.lines[0]


async def test_default_level_is_warning_and_resolved_is_info():
    with LogCapture() as logs:
        await deliver(LogNotifier, {}, notice_of())
        await deliver(LogNotifier, {}, notice_of(resolved_of()))
    firing, resolved = logs.records
    assert firing.levelno == logging.WARNING
    assert resolved.levelno == logging.INFO
    assert resolved.status == "resolved"
    assert "recovered after 16m" in resolved.getMessage()


async def test_task_is_info_with_its_checklist():
    notice = Notice(
        id="wk-t",
        kind="task",
        status="info",
        title="daily-review",
        checklist=["Check Sentry", "Verify backups"],
    )
    with LogCapture() as logs:
        await deliver(LogNotifier, {"level": "error"}, notice)
    (record,) = logs.records
    assert record.levelno == logging.INFO
    assert record.getMessage() == "daily-review | Check Sentry; Verify backups"


async def test_multi_line_override_still_logs_one_line():
    template = "{{ title }}\n{% for a in alerts %}{{ a.rule }}\n{% endfor %}"
    with LogCapture() as logs:
        await deliver(LogNotifier, {"templates": {"text": template}}, notice_of())
    assert logs.records[0].getMessage() == "api-health@production | slow"


async def test_secrets_in_a_notice_are_masked_in_the_line():
    from watchkeeper.engine.observe.redaction import REDACTOR

    REDACTOR.add("tok-abcdef-secret")
    try:
        with LogCapture() as logs:
            await deliver(LogNotifier, {}, notice_of(alert_of(summary="401 for tok-abcdef-secret")))
    finally:
        REDACTOR.clear()
    assert "tok-abcdef-secret" not in logs.text
