"""Alerting end to end: a real daemon, a real target, a real receiver (DESIGN.md Semantics ►
Notification, Outbox, Escalation, Maintenance)."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tests.conftest import run_cli
from tests.daemon_harness import Daemon, Recorder, Target

pytestmark = pytest.mark.slow


def write(tmp_path, config: dict) -> None:
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def base(target: Target, receiver: Recorder, **changes) -> dict:
    """A config: `api` checked every second, everything notified to the receiver's /hook."""
    config = {
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
            "hook": {
                "type": "webhook",
                "url": f"{receiver.url}/hook",
                "retry_initial": "200ms",
                "retry_max": "1s",
            }
        },
        "routes": [{"match": {}, "notify": ["hook"], "group_wait": "0s", "group_interval": "1s"}],
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


def http_check(target: Target, path: str, **extra) -> dict:
    return {
        "probe": "http",
        "url": f"{target.url}{path}",
        "schedule": {"every": "1s"},
        "timeout": "2s",
        **extra,
    }


def statuses(receiver: Recorder) -> list[tuple[str, list[tuple[str, str]]]]:
    return [
        (b["status"], [(a["check"], a["status"]) for a in b["alerts"]])
        for b in receiver.json("/hook")
    ]


def test_one_firing_and_one_resolved_notice_per_incident(tmp_path, target, receiver):
    write(tmp_path, base(target, receiver))
    with Daemon(tmp_path) as daemon:
        time.sleep(2)
        target.status = 503
        daemon.wait_log("alert firing")
        receiver.wait_for(1, "/hook")
        time.sleep(3)  # still failing: no second notice
        target.status = 200
        daemon.wait_log("alert resolved")
        receiver.wait_for(2, "/hook")
        time.sleep(2)
    assert statuses(receiver) == [
        ("firing", [("api", "firing")]),
        ("resolved", [("api", "resolved")]),
    ]
    first, second = receiver.json("/hook")
    assert first["alerts"][0]["id"] == second["alerts"][0]["id"]
    assert first["alerts"][0]["resolved_at"] is None
    assert second["alerts"][0]["resolved_at"]


def test_crossing_a_tier_is_a_severity_change_of_one_alert(tmp_path, target, receiver):
    write(
        tmp_path,
        base(
            target,
            receiver,
            checks={
                "api": http_check(
                    target,
                    "/health",
                    thresholds=[
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
                )
            },
        ),
    )
    with Daemon(tmp_path) as daemon:
        target.hang = 0.5
        receiver.wait_for(1, "/hook")
        target.hang = 1.5
        daemon.wait_log("severity=high")
        receiver.wait_for(2, "/hook")
        target.hang = 0
        receiver.wait_for(3, "/hook")
    bodies = receiver.json("/hook")
    ids = {b["alerts"][0]["id"] for b in bodies}
    assert len(ids) == 1
    assert [b["alerts"][0]["severity"] for b in bodies] == ["warning", "high", "high"]
    assert [b["status"] for b in bodies] == ["firing", "firing", "resolved"]


def test_a_refusing_receiver_gets_the_notice_once_and_survives_a_restart(
    tmp_path, target, receiver
):
    receiver.responses = [503, 503, 503]
    config = base(target, receiver)
    config["notifiers"]["hook"].update(retry_initial="1s", retry_max="2s")
    write(tmp_path, config)
    target.status = 500
    daemon = Daemon(tmp_path).start()
    try:
        deadline = time.monotonic() + 20
        while len(receiver.attempts) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        daemon.kill()  # in the middle of the retries
    finally:
        daemon.kill()
    assert not receiver.requests
    with Daemon(tmp_path):
        receiver.wait_for(1, "/hook", timeout=30)
        time.sleep(3)
    accepted = receiver.json("/hook")
    assert len(accepted) == 1
    keys = {a["headers"].get("Idempotency-Key") for a in receiver.attempts}
    assert len(keys) == 1  # every attempt of the notice carried the same key


def test_alerts_are_grouped_by_route(tmp_path, target, receiver):
    write(
        tmp_path,
        base(
            target,
            receiver,
            checks={"web": http_check(target, "/web")},
            routes=[
                {
                    "match": {},
                    "notify": ["hook"],
                    "group_by": [],
                    "group_wait": "3s",
                    "group_interval": "1s",
                }
            ],
        ),
    )
    with Daemon(tmp_path):
        time.sleep(1.5)
        target.status = 500
        receiver.wait_for(1, "/hook")
        time.sleep(1)
    first = receiver.json("/hook")[0]
    assert first["status"] == "firing"
    assert sorted(a["check"] for a in first["alerts"]) == ["api", "web"]


def test_an_alert_resolving_before_its_group_is_sent_sends_nothing(tmp_path, target, receiver):
    write(
        tmp_path,
        base(target, receiver, routes=[{"match": {}, "notify": ["hook"], "group_wait": "4s"}]),
    )
    with Daemon(tmp_path) as daemon:
        target.status = 500
        daemon.wait_log("alert firing")
        target.status = 200
        daemon.wait_log("alert resolved")
        time.sleep(5)
    assert receiver.json("/hook") == []


def test_depends_on_holds_the_child_while_the_parent_is_down(tmp_path, target, receiver):
    # group_wait gives the parent's check the moment it needs to fail too
    write(
        tmp_path,
        base(
            target,
            receiver,
            checks={
                "api": http_check(target, "/health", depends_on=["gateway"]),
                "gateway": http_check(target, "/gateway"),
            },
            routes=[{"match": {}, "notify": ["hook"], "group_wait": "2s", "group_interval": "1s"}],
        ),
    )
    with Daemon(tmp_path) as daemon:
        target.status = 500  # both fail: only the parent is notified
        receiver.wait_for(1, "/hook")
        daemon.wait_log("alert firing", count=2)
        time.sleep(3)
        assert [b["alerts"][0]["check"] for b in receiver.json("/hook")] == ["gateway"]
        target.status = 200
        receiver.wait_for(2, "/hook")
        time.sleep(2)
    bodies = receiver.json("/hook")
    assert [(b["alerts"][0]["check"], b["status"]) for b in bodies] == [
        ("gateway", "firing"),
        ("gateway", "resolved"),
    ]


def test_a_window_under_way_at_start_up_mutes_and_alerts_still_firing_go_out_at_its_end(
    tmp_path, target, receiver
):
    start = datetime.now(UTC) - timedelta(minutes=5)
    end = datetime.now(UTC) + timedelta(seconds=8)
    write(
        tmp_path,
        base(
            target,
            receiver,
            maintenance=[{"name": "upgrade", "start": start.isoformat(), "end": end.isoformat()}],
        ),
    )
    target.status = 500
    with Daemon(tmp_path) as daemon:
        daemon.wait_log("alert firing")
        time.sleep(2)
        assert receiver.json("/hook") == []  # muted
        receiver.wait_for(1, "/hook", timeout=20)  # the window ends: it goes out then
    assert statuses(receiver)[0] == ("firing", [("api", "firing")])


def test_ack_stops_escalation_while_an_unacknowledged_sibling_escalates(tmp_path, target, receiver):
    write(
        tmp_path,
        base(
            target,
            receiver,
            checks={"web": http_check(target, "/web")},
            notifiers={"oncall": {"type": "webhook", "url": f"{receiver.url}/oncall"}},
            routes=[{"match": {}, "notify": ["hook"], "escalate": "standard", "group_wait": "0s"}],
            escalation={"standard": [{"after": "4s", "name": "development", "notify": ["oncall"]}]},
        ),
    )
    with Daemon(tmp_path) as daemon:
        target.status = 500
        receiver.wait_for(2, "/hook")
        alerts = {b["alerts"][0]["check"]: b["alerts"][0]["id"] for b in receiver.json("/hook")}
        result = run_cli("alerts", "ack", alerts["api"], "--author", "ops@example", cwd=tmp_path)
        assert result.code == 0, result.output
        daemon.wait_log("escalated", timeout=15)
        escalated = receiver.wait_for(1, "/oncall", timeout=15)
        time.sleep(3)
    escalated = receiver.json("/oncall")
    assert [b["alerts"][0]["check"] for b in escalated] == ["web"]


def test_a_secret_in_a_notifier_url_appears_nowhere(tmp_path, target, receiver):
    secret = "s3cr3t-hook-token-0451"
    config = base(target, receiver)
    config["notifiers"]["hook"]["url"] = f"{receiver.url}/hook?token=${{HOOK_TOKEN}}"
    write(tmp_path, config)
    env = {"HOOK_TOKEN": secret}
    receiver.responses = [500]
    target.status = 500
    with Daemon(tmp_path, env=env) as daemon:
        receiver.wait_for(1, timeout=20)
        time.sleep(1)
    assert secret not in daemon.log
    for request in receiver.requests:
        assert secret not in request["body"].decode()
    for args in (
        ("validate",),
        ("alerts", "list"),
        ("status",),
        ("route", "--severity", "critical"),
    ):
        result = run_cli(*args, cwd=tmp_path, env=env)
        assert secret not in result.output, args
    assert json.loads(receiver.requests[0]["body"])["status"] == "firing"


def test_reload_with_an_invalid_file_keeps_the_running_config(tmp_path, target, receiver):
    write(tmp_path, base(target, receiver))
    with Daemon(tmp_path) as daemon:
        (tmp_path / "monitor.yaml").write_text("version: 1\nchecks: {x: {probe: nope}}\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("reload rejected")
        target.status = 500
        receiver.wait_for(1, "/hook")


def test_an_event_reaches_its_route_and_a_refused_one_is_retried_by_the_daemon(
    tmp_path, target, receiver
):
    config = base(
        target,
        receiver,
        environments={"production": {}},
        notifiers={
            "deployments": {
                "type": "webhook",
                "url": f"{receiver.url}/deployments",
                "retry_initial": "300ms",
            }
        },
        routes=[
            {"match": {"event": "deploy"}, "notify": ["deployments"]},
            {"match": {}, "notify": ["hook"], "group_wait": "0s"},
        ],
    )
    write(tmp_path, config)
    result = run_cli("event", "deploy", "--version", "1.4.2", "--env", "production", cwd=tmp_path)
    assert result.code == 0, result.output
    (first,) = receiver.json("/deployments")
    assert first["kind"] == "event"
    assert first["event"]["version"] == "1.4.2"
    assert first["event"]["environment"] == "production"
    receiver.default = 503
    result = run_cli("event", "deploy", "--version", "1.4.3", cwd=tmp_path)
    assert result.code == 1
    assert "the daemon retries it" in result.output
    receiver.default = 200
    with Daemon(tmp_path):
        receiver.wait_for(2, "/deployments", timeout=20)
    assert [e["event"]["version"] for e in receiver.json("/deployments")] == ["1.4.2", "1.4.3"]


def test_after_sigkill_a_firing_alert_is_still_firing_and_not_announced_again(
    tmp_path, target, receiver
):
    write(tmp_path, base(target, receiver))
    target.status = 500
    daemon = Daemon(tmp_path).start()
    try:
        receiver.wait_for(1, "/hook")
        time.sleep(1)
    finally:
        daemon.kill()
    with Daemon(tmp_path) as again:
        time.sleep(3)  # still failing after the restart: nothing new to say
        assert len(receiver.json("/hook")) == 1
        target.status = 200
        again.wait_log("alert resolved")
        receiver.wait_for(2, "/hook")
    first, second = receiver.json("/hook")
    assert (first["status"], second["status"]) == ("firing", "resolved")
    assert first["alerts"][0]["id"] == second["alerts"][0]["id"]


def forget_what_groups_sent(directory) -> None:
    """Rewrite the stored groups as a crash before their record reached the store leaves
    them: due, with every member unsent."""
    import anyio

    from watchkeeper.plugins.stores.sqlite import SqliteStore

    async def forget() -> None:
        store = SqliteStore(SqliteStore.Options(), base_dir=directory)
        await store.open()
        try:
            groups = await store.get_all("groups")
            assert groups
            for key, doc in groups.items():
                doc["members"] = {
                    alert: {"status": None, "severity": None, "flapping": False}
                    for alert in doc["members"]
                }
                doc.update(first_sent_at=None, last_sent_at=None, due_at=doc["created_at"])
                await store.put("groups", {key: doc})
        finally:
            await store.close()

    anyio.run(forget)


@pytest.mark.parametrize("group_record", ["stored", "lost"])
def test_a_crash_between_acceptance_and_marking_resends_the_notice_once_with_its_key(
    tmp_path, target, receiver, group_record
):
    """Semantics ► Outbox: such a crash may cause one resend, with the same idempotency key;
    never more, even when the crash also lost the group's record of what it had sent."""
    receiver.hold = 5.0  # the notice is recorded at once and answered 5s later
    write(tmp_path, base(target, receiver))
    target.status = 500
    daemon = Daemon(tmp_path).start()
    try:
        receiver.wait_for(1, "/hook", timeout=30)
    finally:
        daemon.kill()  # while the daemon waits for the answer: accepted, not marked sent
    receiver.hold = 0.0
    if group_record == "lost":
        forget_what_groups_sent(tmp_path)
    with Daemon(tmp_path):
        receiver.wait_for(2, "/hook", timeout=30)
        time.sleep(3)  # still failing: nothing more to say
    sent = [
        (r["headers"]["Idempotency-Key"], json.loads(r["body"])["status"])
        for r in receiver.requests
        if r["path"] == "/hook"
    ]
    assert len(sent) == 2, sent
    first, again = (r for r in receiver.requests if r["path"] == "/hook")
    assert first["headers"]["Idempotency-Key"] == again["headers"]["Idempotency-Key"]
    assert json.loads(first["body"]) == json.loads(again["body"])
    assert json.loads(first["body"])["status"] == "firing"


def test_a_check_removed_by_a_reload_stops_and_its_alert_resolves_with_the_reason(
    tmp_path, target, receiver
):
    config = base(target, receiver, checks={"web": http_check(target, "/web")})
    write(tmp_path, config)
    target.status = 500
    with Daemon(tmp_path) as daemon:
        receiver.wait_for(2, "/hook")
        del config["checks"]["web"]
        write(tmp_path, config)
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("config reloaded")
        receiver.wait_for(3, "/hook")
        hits = target.hits
        time.sleep(2)
    resolved = [b for b in receiver.json("/hook") if b["status"] == "resolved"]
    assert [a["check"] for b in resolved for a in b["alerts"]] == ["web"]
    assert target.hits - hits <= 4  # only `api` still runs (about twice in 2 s)
    result = run_cli("alerts", "list", "--all", "--format", "json", cwd=tmp_path)
    web = [a for a in json.loads(result.stdout) if a["check"] == "web"]
    assert web
    assert web[0]["status"] == "resolved"


def test_level_one_runs_an_action_within_its_limit_and_later_notices_carry_its_result(
    tmp_path, target, receiver
):
    marker = tmp_path / "healed.log"
    config = base(
        target,
        receiver,
        notifiers={"oncall": {"type": "webhook", "url": f"{receiver.url}/oncall"}},
        actions={
            "restart-app": {
                "type": "command",
                "argv": ["sh", "-c", f"echo healed >> {marker}"],
                "limit": {"runs": 1, "within": "1h"},
            }
        },
        routes=[
            {
                "match": {},
                "notify": ["hook"],
                "escalate": "standard",
                "group_wait": "0s",
                "group_interval": "1s",
            }
        ],
        escalation={
            "standard": [
                {"after": "0s", "name": "automated", "actions": ["restart-app"]},
                {"after": "2s", "name": "development", "notify": ["oncall"]},
            ]
        },
    )
    write(tmp_path, config)
    with Daemon(tmp_path) as daemon:
        target.status = 500
        receiver.wait_for(1, "/oncall", timeout=20)
        target.status = 200
        try:
            receiver.wait_for(2, "/hook")
        except AssertionError:
            print(daemon.log)
            raise
        target.status = 500  # a second incident within the hour: the limit holds
        daemon.wait_log("alert escalated", count=3, timeout=20)
        time.sleep(1)
    assert marker.read_text().splitlines() == ["healed"]
    first_page = next(r for r in receiver.requests if r["path"] == "/oncall")
    assert b"restart-app" in first_page["body"]


def test_a_task_posts_its_checklist_on_schedule(tmp_path, target, receiver):
    write(
        tmp_path,
        base(
            target,
            receiver,
            tasks={
                "daily-review": {
                    "schedule": {"every": "2s"},
                    "notify": ["hook"],
                    "checklist": ["Check Sentry for new errors", "Verify backups"],
                }
            },
        ),
    )
    with Daemon(tmp_path):
        receiver.wait_for(2, "/hook", timeout=20)
    tasks = [b for b in receiver.json("/hook") if b["kind"] == "task"]
    assert tasks
    assert tasks[0]["checklist"] == ["Check Sentry for new errors", "Verify backups"]


def test_a_resolution_waiting_for_its_group_survives_a_restart(tmp_path, target, receiver):
    write(
        tmp_path,
        base(
            target,
            receiver,
            routes=[{"match": {}, "notify": ["hook"], "group_wait": "0s", "group_interval": "6s"}],
        ),
    )
    target.status = 500
    daemon = Daemon(tmp_path).start()
    try:
        receiver.wait_for(1, "/hook")
        target.status = 200
        daemon.wait_log("alert resolved")
        time.sleep(0.5)  # resolved, but the group may only speak again 6 s after its first
    finally:
        daemon.kill()
    assert len(receiver.json("/hook")) == 1
    with Daemon(tmp_path):
        receiver.wait_for(2, "/hook", timeout=20)
    assert [b["status"] for b in receiver.json("/hook")] == ["firing", "resolved"]


def test_a_notifier_paged_by_an_escalation_level_hears_the_resolution(tmp_path, target, receiver):
    write(
        tmp_path,
        base(
            target,
            receiver,
            notifiers={"infra": {"type": "webhook", "url": f"{receiver.url}/infra"}},
            routes=[{"match": {}, "notify": ["hook"], "escalate": "standard", "group_wait": "0s"}],
            escalation={
                "standard": [{"after": "1s", "name": "infrastructure", "notify": ["infra"]}]
            },
        ),
    )
    with Daemon(tmp_path):
        target.status = 500
        receiver.wait_for(1, "/infra", timeout=20)
        target.status = 200
        receiver.wait_for(2, "/infra", timeout=20)
    assert [b["status"] for b in receiver.json("/infra")] == ["firing", "resolved"]
