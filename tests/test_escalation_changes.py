"""Escalation when an alert is acknowledged or changes severity: a real daemon, a real
target whose response time decides the severity, real receivers (webhook, Slack and a
PagerDuty Events v2 stand-in). See docs/alerting.md ► Escalation, Acknowledging."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.conftest import run_cli
from tests.daemon_harness import Daemon, Recorder, Target

pytestmark = pytest.mark.slow

DEDUP_PREFIX = "watchkeeper-"


def write(tmp_path, config: dict) -> None:
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def webhook(receiver: Recorder, path: str) -> dict:
    return {"type": "webhook", "url": f"{receiver.url}{path}", "retry_initial": "200ms"}


def config_of(target: Target, receiver: Recorder, **sections) -> dict:
    """`api` checked every second; its `slow` alert is warning above 300ms, high above 1.2s."""
    return {
        "version": 1,
        "engine": {"workers": 0},
        "server": {"listen": "127.0.0.1:0"},
        "checks": {
            "api": {
                "probe": "http",
                "url": f"{target.url}/health",
                "schedule": {"every": "1s"},
                "timeout": "3s",
                "thresholds": [
                    {
                        "name": "slow",
                        "metric": "response_time",
                        "above": "300ms",
                        "severity": "warning",
                    },
                    {
                        "name": "slow",
                        "metric": "response_time",
                        "above": "1200ms",
                        "severity": "high",
                    },
                ],
            }
        },
        **sections,
    }


def tiered_routes(policy: str) -> list[dict]:
    """High alerts to #alerts with an escalation policy; warnings to #monitoring, none."""
    return [
        {
            "match": {"severity": "high"},
            "notify": ["alerts"],
            "escalate": policy,
            "group_wait": "1s",
            "group_interval": "1s",
        },
        {
            "match": {"severity": "warning"},
            "notify": ["monitoring"],
            "group_wait": "0s",
            "group_interval": "1s",
        },
    ]


def seen(receiver: Recorder, path: str) -> list[tuple[str, str]]:
    """(status, severity) of the one alert in each notice a webhook path got."""
    return [(b["alerts"][0]["status"], b["alerts"][0]["severity"]) for b in receiver.json(path)]


def wait_quietly(seconds_since: float, until: float) -> None:
    time.sleep(max(0.0, until - (time.monotonic() - seconds_since)))


def test_a_pagerduty_level_hears_the_ack_and_the_resolution_a_level_never_run_nothing(
    tmp_path, target, receiver
):
    write(
        tmp_path,
        {
            "version": 1,
            "engine": {"workers": 0},
            "server": {"listen": "127.0.0.1:0"},
            "checks": {
                "api": {
                    "probe": "http",
                    "url": f"{target.url}/health",
                    "schedule": {"every": "1s"},
                    "timeout": "2s",
                }
            },
            "notifiers": {
                "chat": {"type": "slack", "webhook_url": f"{receiver.url}/slack"},
                "pager": {
                    "type": "pagerduty",
                    "routing_key": "R0UTE-1",
                    "url": f"{receiver.url}/pd",
                },
                "pager2": {
                    "type": "pagerduty",
                    "routing_key": "R0UTE-2",
                    "url": f"{receiver.url}/pd2",
                },
            },
            "routes": [
                {
                    "match": {},
                    "notify": ["chat"],
                    "escalate": "oncall",
                    "group_wait": "0s",
                    "group_interval": "1s",
                }
            ],
            "escalation": {
                "oncall": [
                    {"after": "1s", "name": "primary", "notify": ["pager"]},
                    {"after": "12s", "name": "secondary", "notify": ["pager2"]},
                ]
            },
        },
    )
    with Daemon(tmp_path) as daemon:
        target.status = 503
        receiver.wait_for(1, "/slack")
        first_notice = time.monotonic()
        (trigger,) = receiver.wait_for(1, "/pd")
        assert trigger["event_action"] == "trigger"
        alert_id = trigger["dedup_key"].removeprefix(DEDUP_PREFIX)
        result = run_cli("alerts", "ack", alert_id, "--author", "ops@example", cwd=tmp_path)
        assert result.code == 0, result.output
        ack = receiver.wait_for(2, "/pd", timeout=15)[1]
        assert ack["event_action"] == "acknowledge"
        assert ack["dedup_key"] == trigger["dedup_key"]
        wait_quietly(first_notice, 14)  # the secondary level was due at 12 s: it stays quiet
        target.status = 200
        daemon.wait_log("alert resolved")
        events = receiver.wait_for(3, "/pd")
        receiver.wait_for(2, "/slack")
        time.sleep(1.5)
    assert [e["event_action"] for e in receiver.json("/pd")] == [
        "trigger",
        "acknowledge",
        "resolve",
    ]
    assert {e["dedup_key"] for e in events} == {trigger["dedup_key"]}
    assert receiver.json("/pd2") == []  # its level never ran: it hears neither
    assert daemon.log.count("alert escalated") == 1
    assert len(receiver.json("/slack")) == 2  # firing, resolved: chat had no ack notice before


def test_a_warning_that_becomes_high_escalates_on_the_high_routes_schedule(
    tmp_path, target, receiver
):
    write(
        tmp_path,
        config_of(
            target,
            receiver,
            notifiers={
                "alerts": webhook(receiver, "/alerts"),
                "monitoring": webhook(receiver, "/monitoring"),
                "oncall": webhook(receiver, "/oncall"),
            },
            routes=tiered_routes("urgent"),
            escalation={"urgent": [{"after": "2s", "name": "on-call", "notify": ["oncall"]}]},
        ),
    )
    with Daemon(tmp_path) as daemon:
        target.hang = 0.5
        receiver.wait_for(1, "/monitoring")
        time.sleep(1)
        assert receiver.json("/alerts") == []
        target.hang = 1.5
        daemon.wait_log("severity=high")
        receiver.wait_for(1, "/alerts")
        told_high = time.monotonic()
        receiver.wait_for(1, "/oncall", timeout=20)
        paged_after = time.monotonic() - told_high
        receiver.wait_for(2, "/monitoring")  # #monitoring sees its alert become high
        target.hang = 0
        daemon.wait_log("alert resolved")
        receiver.wait_for(2, "/alerts")
        receiver.wait_for(3, "/monitoring")
        receiver.wait_for(2, "/oncall")
        time.sleep(1.5)
    assert paged_after >= 1.5  # the clock started when #alerts was told, not at the change
    assert seen(receiver, "/monitoring") == [
        ("firing", "warning"),
        ("firing", "high"),
        ("resolved", "high"),
    ]
    assert seen(receiver, "/alerts") == [("firing", "high"), ("resolved", "high")]
    assert seen(receiver, "/oncall") == [("firing", "high"), ("resolved", "high")]
    assert receiver.json("/oncall")[0]["alerts"][0]["escalation"] == "on-call"
    assert daemon.log.count("alert escalated") == 1


def test_a_notifier_both_routes_share_hears_the_upgrade_and_the_resolution_once(
    tmp_path, target, receiver
):
    # as in the seed's example: warnings to #monitoring; high to #alerts and #monitoring
    routes = tiered_routes("urgent")
    routes[0]["notify"] = ["alerts", "monitoring"]
    write(
        tmp_path,
        config_of(
            target,
            receiver,
            notifiers={
                "alerts": webhook(receiver, "/alerts"),
                "monitoring": webhook(receiver, "/monitoring"),
                "oncall": webhook(receiver, "/oncall"),
            },
            routes=routes,
            escalation={"urgent": [{"after": "1s", "name": "on-call", "notify": ["oncall"]}]},
        ),
    )
    with Daemon(tmp_path) as daemon:
        target.hang = 0.5
        receiver.wait_for(1, "/monitoring")
        target.hang = 1.5
        receiver.wait_for(1, "/alerts")
        receiver.wait_for(2, "/monitoring")
        receiver.wait_for(1, "/oncall", timeout=20)
        target.hang = 0
        daemon.wait_log("alert resolved")
        receiver.wait_for(2, "/alerts")
        receiver.wait_for(3, "/monitoring")
        time.sleep(3)  # anything said twice would have arrived by now
    assert seen(receiver, "/monitoring") == [
        ("firing", "warning"),
        ("firing", "high"),
        ("resolved", "high"),
    ]
    assert seen(receiver, "/alerts") == [("firing", "high"), ("resolved", "high")]


def test_a_high_alert_that_drops_to_warning_keeps_what_ran_and_stops_further_levels(
    tmp_path, target, receiver
):
    write(
        tmp_path,
        config_of(
            target,
            receiver,
            notifiers={
                "alerts": webhook(receiver, "/alerts"),
                "monitoring": webhook(receiver, "/monitoring"),
                "oncall": webhook(receiver, "/oncall"),
                "infra": webhook(receiver, "/infra"),
            },
            routes=tiered_routes("urgent"),
            escalation={
                "urgent": [
                    {"after": "1s", "name": "on-call", "notify": ["oncall"]},
                    {"after": "9s", "name": "infrastructure", "notify": ["infra"]},
                ]
            },
        ),
    )
    target.hang = 1.5
    with Daemon(tmp_path) as daemon:
        receiver.wait_for(1, "/alerts")
        told_high = time.monotonic()
        receiver.wait_for(1, "/oncall", timeout=15)
        target.hang = 0.5
        daemon.wait_log("severity=warning")
        receiver.wait_for(1, "/monitoring")  # a new group on the warning route
        receiver.wait_for(2, "/alerts")  # #alerts sees its alert drop to warning
        daemon.wait_log("escalation stopped")
        wait_quietly(told_high, 11)  # the infrastructure level was due at 9 s
        assert receiver.json("/infra") == []
        target.hang = 0
        daemon.wait_log("alert resolved")
        receiver.wait_for(3, "/alerts")
        receiver.wait_for(2, "/monitoring")
        receiver.wait_for(2, "/oncall")
        time.sleep(1.5)
    assert seen(receiver, "/alerts") == [
        ("firing", "high"),
        ("firing", "warning"),
        ("resolved", "warning"),
    ]
    assert seen(receiver, "/monitoring") == [("firing", "warning"), ("resolved", "warning")]
    assert seen(receiver, "/oncall") == [("firing", "high"), ("resolved", "warning")]
    assert receiver.json("/infra") == []  # its level never ran: it hears nothing
    assert daemon.log.count("alert escalated") == 1
