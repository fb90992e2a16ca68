"""The default messages every notifier shares, and each notifier's dry-run preview."""

from __future__ import annotations

import pytest

from tests.receivers import alert_of, notice_of, resolved_of
from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.engine.alerting.templates import render
from watchkeeper.engine.cli.notify_cmd import sample_notice
from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.engine.plugins import registry
from watchkeeper.plugins.notifiers import messages

BUILTIN = ("log", "webhook", "slack", "email", "pagerduty", "sentry", "apprise")
OPTIONS = {
    "log": {},
    "webhook": {"url": "https://hooks.example.com/secret-path-0001"},
    "slack": {"webhook_url": "https://hooks.slack.com/services/T1/B1/secret0001"},
    "email": {"to": ["dev@example.com"], "smtp_url": "smtp://u:secret0001@mail.example.com"},
    "pagerduty": {"routing_key": "secret0001routingkey"},
    "sentry": {"dsn": "https://secret0001@o1.ingest.sentry.io/1"},
    "apprise": {"urls": ["tgram://secret0001/chat"]},
}


class NoOverrides:
    templates: dict[str, str] = {}


def text(notice: Notice) -> str:
    return render(
        "text",
        notice,
        NoOverrides(),
        {"text": messages.TEXT},
        **{**messages.helpers(notice), "headline": "HEADLINE"},
    )


def headline(notice: Notice) -> str:
    return render("h", notice, NoOverrides(), {"h": messages.HEADLINE}, **messages.helpers(notice))


HTTP_503 = (
    "HTTP 503 from https://app.example.com/api/health (expected 200): "
    '{"status":"unhealthy","checks":{"database":{"status":"unhealthy"}}}'
)


def down(**fields):
    """Return an `up` alert: the probe failed."""
    return alert_of(**{"rule": "up", "metric": None, "summary": HTTP_503, **fields})


def test_headlines_say_where_what_and_how_bad_once():
    assert headline(notice_of()) == "api-health@production: response_time 5.2s above 5s (high)"
    assert headline(notice_of(down(severity="critical"))) == (
        "api-health@production is down: HTTP 503 (critical)"
    )
    two = notice_of(alert_of(), down(id="al-2"))
    assert headline(two) == (
        "api-health@production: 2 alerts firing (high): response_time 5.2s above 5s; down: HTTP 503"
    )
    assert headline(notice_of(resolved_of())) == (
        "api-health@production recovered after 16m (was: response_time 5.2s above 5s)"
    )
    assert headline(notice_of(down(status="resolved", duration=720.0))) == (
        "api-health@production recovered after 12m (was: HTTP 503)"
    )
    gone = down(status="resolved", duration=60.0, reason="check removed from monitor.yaml")
    assert headline(notice_of(gone)) == (
        "api-health@production resolved after 1m: check removed from monitor.yaml (was: HTTP 503)"
    )
    assert headline(notice_of(alert_of(change="flapping"))) == (
        "api-health@production is flapping: response_time 5.2s above 5s (high)"
    )
    assert headline(notice_of(down(change="flapping"))).startswith(
        "api-health@production keeps going down: HTTP 503"
    )
    assert "stopped flapping" in headline(notice_of(resolved_of(change="stable")))
    changed = alert_of(change="severity", previous_severity="warning")
    assert headline(notice_of(changed)).endswith("(high, was warning)")
    assert headline(notice_of(down(change="repeat"))).startswith(
        "api-health@production is still down: HTTP 503"
    )
    escalated = notice_of(escalation="development")
    assert headline(escalated) == (
        "api-health@production: response_time 5.2s above 5s (high) · escalated to development"
    )
    level = notice_of(escalation="development", escalation_level="level 2 of standard: dev")
    assert headline(level).endswith("· escalated to level 2 of standard: dev")
    acked = notice_of(alert_of(acknowledged=True))
    assert headline(acked).endswith("· acknowledged")
    # once recovered, how it was escalated or acknowledged is history
    over = notice_of(resolved_of(acknowledged=True), escalation="standard")
    assert headline(over) == (
        "api-health@production recovered after 16m (was: response_time 5.2s above 5s)"
    )
    assert headline(sample_notice("x", ["info"])).startswith("[TEST] Test notification")


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        (HTTP_503, "HTTP 503"),
        (
            "HTTP 200 from https://x.example.com/: header X-Frame-Options is missing",
            "HTTP 200: header X-Frame-Options is missing",
        ),
        (
            "timed out after 30s waiting for the response from https://x.example.com/api/health",
            "timed out after 30s waiting for the response",
        ),
        (
            "cannot connect to db.example.com:5432: connection refused",
            "cannot connect to db.example.com:5432: connection refused",
        ),
        ("cannot run deploy: " + "x" * 200, "cannot run deploy"),
        ("y" * 200, "y" * 79 + "…"),
    ],
)
def test_reason_is_a_few_words_of_what_the_probe_said(said, reason):
    from watchkeeper.engine.alerting.notice import reason_of

    assert reason_of(said) == reason


def test_firing_text_carries_what_a_person_needs():
    body = text(
        notice_of(
            alert_of(
                escalation="infrastructure",
                description="the public API",
                actions=[{"name": "restart-app", "ok": False, "message": "exited 1"}],
            )
        )
    )
    assert body.startswith("HEADLINE\n")
    for line in (
        "Metric:     response_time is 5.2s, above the threshold 5s",
        "Since:      2026-11-26 20:44 UTC",
        "Runbook:    https://wiki.example.com/runbooks/api-health",
        "About:      the public API",
        "Escalation: infrastructure",
        "Labels:     team=web",
        "Action:     restart-app FAILED: exited 1",
        "Alert:      al-7f3a9c (rule slow, high)",
        "Acknowledge: watchkeeper alerts ack al-7f3a9c",
    ):
        assert line in body, line


def test_the_probes_detail_is_in_the_body_cut_and_never_once_resolved():
    long = HTTP_503 + " " + "z" * 400
    body = text(notice_of(down(summary=long)))
    (line,) = [x for x in body.splitlines() if x.startswith("  Detail:")]
    assert len(line.removeprefix("  Detail:     ")) == 300
    resolved = text(notice_of(down(summary=long, status="resolved", duration=60.0)))
    assert "Detail" not in resolved
    assert "unhealthy" not in resolved


def test_resolved_text_says_how_long_it_lasted():
    body = text(notice_of(resolved_of()))
    assert "Lasted:     16m (since 2026-11-26 20:44 UTC, resolved 2026-11-26 21:00 UTC)" in body
    assert "Acknowledge" not in body
    assert "Metric" not in body  # the headline says what it was


def test_missing_runbook_is_called_out_and_flapping_is_explained():
    body = text(notice_of(alert_of(runbook=None, change="flapping", flapping=True)))
    assert "Runbook:    none (add `runbook:` to this check)" in body
    assert "you will hear once more when it is stable" in body


def test_event_task_announcement_text():
    deploy = Notice(
        id="wk-1",
        kind="event",
        status="info",
        title="deploy v9",
        event={"event": "deploy", "version": "v9", "environment": "production"},
    )
    assert "version: v9" in text(deploy)
    task = Notice(
        id="wk-2",
        kind="task",
        status="info",
        title="daily-review",
        text="Morning",
        checklist=["Check Sentry"],
    )
    assert "[ ] Check Sentry" in text(task)
    collapsed = notice_of(resolved_of(), collapsed=True)
    assert "resolved before the firing notice could be delivered" in text(collapsed)


def test_colours():
    assert messages.color(notice_of()) == messages.SEVERITY_COLORS["high"]
    assert messages.color(notice_of(resolved_of())) == messages.RESOLVED_COLOR
    assert messages.color(notice_of(alert_of(severity="sev0"), severity="sev0")) == (
        messages.OTHER_COLOR
    )


def test_every_builtin_declares_its_templates_and_defaults():
    from importlib import import_module

    types = registry().kind("notifier")
    for name in BUILTIN:
        cls = types[name]
        module = import_module(cls.__module__)
        defaults = getattr(module, "DEFAULTS", {})
        assert set(cls.Options.template_names) == set(defaults), name


@pytest.mark.parametrize("name", BUILTIN)
def test_preview_of_every_builtin_shows_the_alert_and_no_secret(name):
    cls = registry().get("notifier", name)
    options = cls.Options.model_validate(OPTIONS[name])
    REDACTOR.add_from(options)
    try:
        shown = cls().preview(notice_of(), options)
    finally:
        REDACTOR.clear()
    assert "api-health" in shown
    assert "secret0001" not in shown
