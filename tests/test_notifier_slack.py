"""The `slack` notifier: Block Kit messages posted to a real HTTP receiver."""

from __future__ import annotations

import pytest

from tests.receivers import HttpRecorder, Reply, alert_of, deliver, notice_of, resolved_of
from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.engine.alerting.notifier import DeliveryError
from watchkeeper.plugins.notifiers.messages import RESOLVED_COLOR, SEVERITY_COLORS
from watchkeeper.plugins.notifiers.slack import SlackNotifier

pytestmark = pytest.mark.anyio

TOKEN = "T0000/B0000/XXXXslacksecretXXXX"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def receiver():
    with HttpRecorder(Reply(200, "ok")) as recorder:
        yield recorder


def options(receiver: HttpRecorder, **extra):
    return {"webhook_url": receiver.url(f"/services/{TOKEN}"), **extra}


def texts(blocks) -> str:
    """Every text of a block list, joined (what a person would read)."""
    found = []
    for block in blocks:
        for key in ("text",):
            if isinstance(block.get(key), dict):
                found.append(block[key]["text"])
        for item in block.get("fields", []) + block.get("elements", []):
            found.append(item["text"])
    return "\n".join(found)


async def test_firing_alert_message(receiver):
    notice = notice_of(
        alert_of(
            escalation="development",
            actions=[{"name": "restart-app", "ok": False, "message": "exited 1", "at": 1.0}],
        )
    )
    await deliver(
        SlackNotifier,
        options(
            receiver,
            channel="#alerts",
            username="watchkeeper",
            icon_emoji=":rotating_light:",
            mention="<!here>",
        ),
        notice,
    )
    body = receiver.requests[0].json()
    assert body["channel"] == "#alerts"
    assert body["username"] == "watchkeeper"
    assert body["icon_emoji"] == ":rotating_light:"
    assert body["text"] == "<!here> api-health@production: response_time 5.2s above 5s (high)"
    header = body["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "api-health@production: response_time 5.2s above 5s (high)"
    assert body["blocks"][1]["text"]["text"].startswith("<!here> ")
    (attachment,) = body["attachments"]
    assert attachment["color"] == SEVERITY_COLORS["high"]
    shown = texts(body["blocks"]) + texts(attachment["blocks"])
    for fact in (
        "5.2s",  # the value that crossed
        "above 5s",  # and its threshold
        "https://wiki.example.com/runbooks/api-health",
        "*Severity*\nhigh",
        "*Environment*\nproduction",
        "*Escalation*\ndevelopment",
        "restart-app",
        "watchkeeper alerts ack al-7f3a9c",
    ):
        assert fact in shown, fact


async def test_resolved_says_how_long_and_is_green_without_mention(receiver):
    await deliver(SlackNotifier, options(receiver, mention="<!here>"), notice_of(resolved_of()))
    body = receiver.requests[0].json()
    assert not body["text"].startswith("<!here>")
    assert body["blocks"][0]["text"]["text"] == (
        "api-health@production recovered after 16m (was: response_time 5.2s above 5s)"
    )
    assert body["attachments"][0]["color"] == RESOLVED_COLOR
    shown = texts(body["blocks"]) + texts(body["attachments"][0]["blocks"])
    assert "*Lasted*\n16m" in shown
    assert "Runbook" not in shown  # nothing left to do


async def test_flapping_and_stable_wording(receiver):
    await deliver(
        SlackNotifier, options(receiver), notice_of(alert_of(change="flapping", flapping=True))
    )
    await deliver(SlackNotifier, options(receiver), notice_of(resolved_of(change="stable")))
    flapping, stable = (r.json() for r in receiver.requests)
    assert flapping["blocks"][0]["text"]["text"].startswith("api-health@production is flapping")
    assert "you will hear once more when it is stable" in texts(flapping["blocks"])
    assert "stopped flapping and recovered" in stable["blocks"][0]["text"]["text"]


async def test_mrkdwn_is_escaped(receiver):
    said = "cache answers <90%> & falling: " + "x" * 100
    notice = notice_of(alert_of(rule="up", metric=None, summary=said), alert_of(id="al-2"))
    await deliver(SlackNotifier, options(receiver), notice)
    shown = texts(receiver.requests[0].json()["blocks"])
    assert "cache answers &lt;90%&gt; &amp; falling" in shown  # the second alert's headline
    assert "```cache answers &lt;90%&gt; &amp; falling: xxx" in shown  # its detail


async def test_the_header_is_the_headline_and_the_body_excerpt_stays_below(receiver):
    said = "HTTP 503 from https://app.example.com/api/health (expected 200): " + "{}" * 300
    alert = alert_of(rule="up", metric=None, summary=said, severity="critical")
    await deliver(SlackNotifier, options(receiver), notice_of(alert))
    body = receiver.requests[0].json()
    header = body["blocks"][0]["text"]["text"]
    assert header == "api-health@production is down: HTTP 503 (critical)"
    assert body["text"] == header
    section = body["blocks"][1]["text"]["text"]
    assert section.startswith("```HTTP 503 from https://app.example.com/api/health")
    assert len(section) <= 300 + 6


async def test_many_alerts_are_capped(receiver):
    alerts = [alert_of(id=f"al-{i}", rule=f"r{i}") for i in range(15)]
    await deliver(SlackNotifier, options(receiver), notice_of(*alerts))
    body = receiver.requests[0].json()
    blocks = body["attachments"][0]["blocks"]
    assert len(body["blocks"]) + len(blocks) <= 50
    assert "…and 5 more alert(s)" in texts(blocks)


async def test_deploy_event(receiver):
    notice = Notice(
        id="wk-ev1",
        kind="event",
        status="info",
        title="deploy v1.4.2 to production",
        event={"event": "deploy", "version": "v1.4.2", "environment": "production", "by": "ci"},
    )
    await deliver(SlackNotifier, options(receiver, channel="#deployments"), notice)
    body = receiver.requests[0].json()
    assert body["blocks"][0]["text"]["text"] == "deploy v1.4.2 to production"
    shown = texts(body["blocks"])
    assert "*version:* v1.4.2" in shown
    assert "*by:* ci" in shown


async def test_task_checklist_and_announcement(receiver):
    task = Notice(
        id="wk-t1",
        kind="task",
        status="info",
        title="daily-review",
        text="Morning review",
        checklist=["Check Sentry for new errors", "Verify backup completion"],
    )
    announcement = Notice(
        id="wk-a1",
        kind="announcement",
        status="info",
        title="Maintenance database-maintenance starts in 24h",
        text="Sunday 02:00–04:00 UTC: database alerts are muted.",
    )
    await deliver(SlackNotifier, options(receiver), task)
    await deliver(SlackNotifier, options(receiver), announcement)
    task_body, ann_body = (r.json() for r in receiver.requests)
    assert "☐ Check Sentry for new errors" in texts(task_body["blocks"])
    assert ann_body["blocks"][0]["text"]["text"].startswith("Maintenance database-maintenance")
    assert "database alerts are muted" in texts(ann_body["blocks"])


async def test_template_override_changes_the_text(receiver):
    await deliver(
        SlackNotifier,
        options(
            receiver,
            templates={
                "title": "{{ alerts | length }} problem(s) on {{ alerts[0].check }}",
                "text": "see {{ alerts[0].runbook }}",
            },
        ),
        notice_of(),
    )
    body = receiver.requests[0].json()
    assert body["blocks"][0]["text"]["text"] == "1 problem(s) on api-health"
    assert body["blocks"][1]["text"]["text"] == "see https://wiki.example.com/runbooks/api-health"


async def test_a_broken_override_falls_back_to_the_default(receiver):
    await deliver(
        SlackNotifier, options(receiver, templates={"title": "{{ nope.nothing }"}), notice_of()
    )
    assert receiver.requests[0].json()["blocks"][0]["text"]["text"] == (
        "api-health@production: response_time 5.2s above 5s (high)"
    )


@pytest.mark.parametrize(
    ("reply", "retryable", "said"),
    [
        (Reply(404, "no_service"), False, "HTTP 404 (no_service)"),
        (Reply(400, "invalid_payload"), False, "HTTP 400 (invalid_payload)"),
        (Reply(403, "action_prohibited"), False, "HTTP 403"),
        (Reply(429, "rate_limited", {"Retry-After": "30"}), True, "HTTP 429"),
        (Reply(500, "rollup_error"), True, "HTTP 500"),
        (Reply(201, "created?"), False, "HTTP 201"),
    ],
)
async def test_refusals(receiver, reply, retryable, said):
    receiver.always(reply)
    with pytest.raises(DeliveryError) as caught:
        await deliver(SlackNotifier, options(receiver), notice_of(), name="alerts")
    assert caught.value.retryable is retryable
    assert str(caught.value).startswith(f"slack `alerts`: {said}")
    assert TOKEN not in str(caught.value)
    if reply.status == 429:
        assert caught.value.retry_after == 30.0
