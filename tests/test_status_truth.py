"""Things that must not look wrong when nothing is: a composite whose members are all up is
up ("3 of 3 up") everywhere it is shown, backup jobs are listed before their first run, and
the Sentry probe names the new issues it counts.

A real daemon serves its API on a real port, monitoring a real HTTP server; the CLI runs as
a separate process, as people run it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, wait_until
from tests.conftest import run_cli
from tests.daemon_harness import Target
from tests.test_probe_sentry import FakeSentry, issue

pytestmark = pytest.mark.slow


def config(target: Target) -> dict:
    member = {"probe": "http", "url": f"{target.url}/health", "schedule": {"every": "1s"}}
    return {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "engine": {"workers": 0},
        "server": {"admin_token": "${ADMIN_TOKEN}"},
        "checks": {
            "api": member,
            "home": member,
            "auth": member,
            "endpoints-down": {
                "probe": "composite",
                "of": ["api", "home", "auth"],
                "failing": {"at_least": 2},
                "severity": "high",
            },
        },
        "notifiers": {"console": {"type": "log"}},
        "routes": [{"match": {}, "notify": ["console"]}],
        "backups": {
            "destinations": {"local": {"type": "local", "path": "backups"}},
            "jobs": {
                "config": {
                    "source": {"type": "files", "paths": ["monitor.yaml"]},
                    "schedule": {"cron": "0 2 * * *", "timezone": "UTC"},
                    "to": ["local"],
                }
            },
        },
    }


@pytest.fixture
def live(tmp_path, target):
    with LiveDaemon(tmp_path, config(target), {"ADMIN_TOKEN": ADMIN_TOKEN}) as daemon:
        for name in ("api", "home", "auth"):
            daemon.wait_status(name, "up")
        yield daemon


def row(rows: list[dict], name: str) -> dict:
    [found] = [r for r in rows if r["check"] == name]
    return found


def test_a_composite_whose_members_are_up_is_up_everywhere(live, tmp_path):
    status = live.get("/api/status").json()
    composite = row(status["checks"], "endpoints-down")
    assert composite["status"] == "up", composite
    assert composite["message"] == "3 of 3 up"
    assert composite["last_run"] is not None
    assert status["status"] == "ok"

    health = live.get("/health", token=None).json()
    assert row(health["checks"], "endpoints-down")["status"] == "up"

    live.flush()
    result = run_cli("status", "--format", "json", cwd=tmp_path)
    assert result.code == 0, result.output
    shown = row(result.json()["checks"], "endpoints-down")
    assert (shown["status"], shown["message"]) == ("up", "3 of 3 up")


def test_a_healthy_composite_has_results_of_its_own(live):
    # judged by the engine at its members' first results, not only derived for display:
    # Prometheus sees it up and its history has runs
    metrics = live.get("/metrics", token=None).text
    assert 'watchkeeper_check_up{check="endpoints-down",environment=""} 1.0' in metrics
    report = live.get("/api/status").json()
    composite = row(report["checks"], "endpoints-down")
    assert composite["ok"] is True


def test_a_composite_goes_down_with_its_members_and_up_again(live, target):
    def composite() -> dict:
        return row(live.get("/api/status").json()["checks"], "endpoints-down")

    with target.lock:
        target.status = 500  # every member is the same server: all go down together
    wait_until(lambda: composite()["status"] == "down", 20, what="the composite down")
    assert re.match(r"[01] of 3 up; down: ", composite()["message"])
    with target.lock:
        target.status = 200
    # up again once fewer than two are down, saying which one still is; then all three
    wait_until(
        lambda: (composite()["status"], composite()["message"]) == ("up", "3 of 3 up"),
        20,
        what="the composite up again",
    )


def test_backup_jobs_are_listed_before_their_first_run(live):
    jobs = live.get("/api/status").json()["backups"]["jobs"]
    assert list(jobs) == ["config"]
    job = jobs["config"]
    assert job["last_run"] is None
    assert job["last"] is None
    assert job["last_good"] is None
    assert job["configured"] is True
    following = datetime.fromisoformat(job["next_run"].replace("Z", "+00:00"))
    assert following > datetime.now(UTC)
    assert (following.hour, following.minute) == (2, 0)


def sentry_check(options: dict) -> str:
    """The `checks:` section of a config watching the fake Sentry for new issues."""
    return (
        "checks:\n"
        "  sentry-new-errors:\n"
        "    probe: sentry\n"
        f"    organization: {options['organization']}\n"
        f"    project: {options['project']}\n"
        f"    auth_token: {options['auth_token']}\n"
        f"    api_url: {options['api_url']}\n"
        "    window: 1h\n"
        "    thresholds: [{metric: new_issues, above: 0, severity: warning}]\n"
    )


def test_the_sentry_check_names_the_new_issues(tmp_path):
    titles = [f"Error{n}: something broke in handler {n}" for n in range(1, 8)]
    server = FakeSentry([[issue(n, title) for n, title in enumerate(titles, 1)]]).start()
    try:
        options = server.options(window="1h")
        (tmp_path / "monitor.yaml").write_text("version: 1\n" + sentry_check(options))
        result = run_cli("check", "sentry-new-errors", "--format", "json", cwd=tmp_path)
    finally:
        server.stop()
    assert result.code == 0, result.output
    [found] = result.json()
    message = found["message"]
    assert found["metrics"]["new_issues"] == 7
    for n in range(1, 6):  # the first five, each with its count and link
        assert f"WEB-{n} {titles[n - 1]} (12 events) https://acme.sentry.io/issues/{4500 + n}/" in (
            message
        )
    assert "WEB-6" not in message
    assert message.endswith("; and 2 more")
    assert options["auth_token"] not in result.output
    assert re.match(r"acme/web: 7 new issues in the last 1h, 17 events: WEB-1 ", message)


def test_the_sentry_alerts_notice_names_the_new_issues(tmp_path):
    from tests.receivers import HttpRecorder

    titles = [f"Error{n}: something broke in handler {n}" for n in range(1, 4)]
    server = FakeSentry([[issue(n, title) for n, title in enumerate(titles, 1)]]).start()
    try:
        with HttpRecorder() as receiver:
            options = server.options(window="1h")
            (tmp_path / "monitor.yaml").write_text(
                "version: 1\n"
                "state: {type: sqlite, path: state.db}\n" + sentry_check(options) + "notifiers:\n"
                f"  hook: {{type: webhook, url: '{receiver.url('/hook')}'}}\n"
                "routes:\n"
                "  - {match: {}, notify: [hook]}\n"
            )
            result = run_cli("run", "--once", cwd=tmp_path)
            receiver.wait_for(1)
            [alert] = receiver.requests[0].json()["alerts"]
    finally:
        server.stop()
    assert result.code == 0, result.output
    assert alert["summary"] == "sentry-new-errors: new_issues 3 above 0 (warning)"
    # the value says what crossed; the probe's own words say which issues
    for n, title in enumerate(titles, 1):
        assert f"WEB-{n} {title}" in alert["detail"]
