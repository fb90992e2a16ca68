"""`POST /api/v2/alerts`, Alertmanager's v2 intake, against a running daemon: payloads
posted as Prometheus posts them (firing, resent, ended, no longer sent, acknowledged,
silenced, refused), an alert that outlives a restart, and a real Prometheus server whose
always-firing rule reaches a webhook route once, is acknowledged and resolves when the
rule stops."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, free_port, wait_until
from tests.receivers import HttpRecorder

pytestmark = pytest.mark.slow

INTAKE_TOKEN = "intake-T0ken-for-tests-4b7e"
ENV = {"ADMIN_TOKEN": ADMIN_TOKEN, "INTAKE_TOKEN": INTAKE_TOKEN}
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def config(receiver: HttpRecorder, **server) -> dict:
    return {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "engine": {"workers": 0},
        "server": {
            "admin_token": "${ADMIN_TOKEN}",
            "intake_token": "${INTAKE_TOKEN}",
            "status_page": "public",
            **server,
        },
        "checks": {
            "job": {"probe": "heartbeat", "expect_every": {"every": "1h"}},
        },
        "notifiers": {
            "hook": {"type": "webhook", "url": receiver.url("/hook"), "retry_initial": "200ms"},
            "page": {"type": "webhook", "url": receiver.url("/page"), "retry_initial": "200ms"},
        },
        "routes": [
            {
                "match": {"labels": {"team": "ops"}},
                "notify": ["hook"],
                "escalate": "oncall",
                "group_by": ["labels.alertname"],
                "group_wait": "0s",
                "group_interval": "1s",
            }
        ],
        "escalation": {"oncall": [{"after": "3s", "notify": ["page"]}]},
    }


def iso(delta: float = 0.0) -> str:
    at = datetime.now(UTC) + timedelta(seconds=delta)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert(name: str, *, ends: float | None = 3600.0, **labels) -> dict:
    """One `postableAlert` as Prometheus sends it; `ends` seconds from now (None: none)."""
    item = {
        "labels": {"alertname": name, "team": "ops", "severity": "critical", **labels},
        "annotations": {
            "summary": f"{name} is firing",
            "description": "Requests fail.\nSee the dashboard.",
            "runbook_url": "https://runbooks.example.com/" + name,
        },
        "startsAt": iso(-30),
        "generatorURL": "http://prometheus.example.com/graph?g0.expr=vector%281%29",
    }
    if ends is not None:
        item["endsAt"] = iso(ends)
    return item


def post(live, alerts, token: str | None = INTAKE_TOKEN, **kwargs) -> httpx.Response:
    return live.post("/api/v2/alerts", token=token, json=alerts, **kwargs)


def about(receiver: HttpRecorder, rule: str, path: str = "/hook") -> list[dict]:
    """Return the notices a notifier received that tell of this rule's alerts."""
    found = []
    for request in list(receiver.requests):
        if request.path != path:
            continue
        payload = request.json()
        if any(a.get("rule") == rule for a in payload.get("alerts", [])):
            found.append(payload)
    return found


def firing(receiver: HttpRecorder, rule: str, path: str = "/hook") -> list[dict]:
    return [p for p in about(receiver, rule, path) if p["status"] == "firing"]


def resolved(receiver: HttpRecorder, rule: str, path: str = "/hook") -> list[dict]:
    return [p for p in about(receiver, rule, path) if p["status"] == "resolved"]


def open_alert(live, rule: str) -> dict | None:
    found = [a for a in live.get("/api/alerts").json() if a["rule"] == rule]
    assert len(found) <= 1, found
    return found[0] if found else None


@pytest.fixture(scope="module")
def receiver():
    with HttpRecorder() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def live(tmp_path_factory, receiver):
    directory = tmp_path_factory.mktemp("intake")
    with LiveDaemon(directory, config(receiver, intake_resolve_timeout="2s"), ENV) as daemon:
        yield daemon


# -- posting payloads ------------------------------------------------------------------


def test_a_firing_alert_is_told_once_with_its_labels_and_links(live, receiver):
    answer = post(live, [alert("DiskFull", instance="db1:9100")])
    assert (answer.status_code, answer.content) == (200, b"")
    wait_until(lambda: firing(receiver, "DiskFull"), 10, what="the firing notice")
    [notice] = firing(receiver, "DiskFull")
    [item] = notice["alerts"]
    assert item["check"] == "external"
    assert item["severity"] == "critical"
    assert item["labels"] == {
        "alertname": "DiskFull",
        "team": "ops",
        "severity": "critical",
        "instance": "db1:9100",
    }
    assert item["runbook"] == "https://runbooks.example.com/DiskFull"
    assert item["source_url"].startswith("http://prometheus.example.com/graph")
    assert "DiskFull is firing" in item["summary"]
    shown = open_alert(live, "DiskFull")
    assert shown["source"] == "external"
    assert shown["status"] == "firing"
    assert shown["annotations"]["description"] == "Requests fail.\nSee the dashboard."
    assert len(shown["fingerprint"]) == 16
    status = live.get("/api/status").json()
    assert any(a["id"] == shown["id"] for a in status["alerts"])


def test_a_resent_alert_is_not_told_again_and_an_end_resolves_it(live, receiver):
    first = alert("QueueBacklog")
    assert post(live, [first]).status_code == 200
    wait_until(lambda: firing(receiver, "QueueBacklog"), 10, what="the firing notice")
    # Prometheus sends it again every resend_delay, labels in whatever order
    again = {**first, "labels": dict(reversed(list(first["labels"].items())))}
    for _ in range(3):
        assert post(live, [again]).status_code == 200
        time.sleep(0.7)
    assert len(firing(receiver, "QueueBacklog")) == 1
    assert len([a for a in live.get("/api/alerts").json() if a["rule"] == "QueueBacklog"]) == 1
    ended = {**first, "endsAt": iso(-1)}
    assert post(live, [ended]).status_code == 200
    wait_until(lambda: resolved(receiver, "QueueBacklog"), 10, what="the resolved notice")
    assert open_alert(live, "QueueBacklog") is None
    [done] = resolved(receiver, "QueueBacklog")
    assert done["alerts"][0]["status"] == "resolved"
    assert len(firing(receiver, "QueueBacklog")) == 1


def test_an_alert_not_sent_again_within_the_resolve_timeout_resolves(live, receiver):
    assert post(live, [alert("NodeDown", ends=None)]).status_code == 200
    wait_until(lambda: firing(receiver, "NodeDown"), 10, what="the firing notice")
    wait_until(lambda: resolved(receiver, "NodeDown"), 10, what="resolution by timeout")
    [done] = resolved(receiver, "NodeDown")
    assert "not sent again" in done["alerts"][0]["reason"]
    assert open_alert(live, "NodeDown") is None


def test_an_end_in_the_future_outlasts_the_resolve_timeout(live, receiver):
    assert post(live, [alert("CertSoon", ends=3600)]).status_code == 200
    wait_until(lambda: firing(receiver, "CertSoon"), 10, what="the firing notice")
    time.sleep(3.5)  # past the 2s resolve timeout: endsAt, given, is what counts
    assert open_alert(live, "CertSoon")["status"] == "firing"
    assert not resolved(receiver, "CertSoon")


def test_acknowledging_stops_escalation_while_the_unacknowledged_one_escalates(live, receiver):
    assert post(live, [alert("ApiErrors"), alert("ApiLatency")]).status_code == 200
    wait_until(lambda: firing(receiver, "ApiErrors"), 10, what="ApiErrors told")
    wait_until(lambda: firing(receiver, "ApiLatency"), 10, what="ApiLatency told")
    acked = open_alert(live, "ApiErrors")
    answer = live.post(f"/api/alerts/{acked['id']}/ack", json={"by": "alice"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "acknowledged"
    # the level after 3s pages for the one nobody acknowledged, not for the other
    wait_until(lambda: about(receiver, "ApiLatency", "/page"), 10, what="ApiLatency paged")
    time.sleep(1.0)
    assert about(receiver, "ApiErrors", "/page") == []
    assert open_alert(live, "ApiErrors")["acknowledged"] is True


def test_a_silence_on_a_label_holds_it(live, receiver):
    answer = live.post(
        "/api/alerts/silences",
        json={"matchers": ["label:service=batch"], "duration": "1h", "reason": "batch rework"},
    )
    assert answer.status_code == 201, answer.text
    assert post(live, [alert("BatchLate", service="batch")]).status_code == 200
    wait_until(lambda: (open_alert(live, "BatchLate") or {}).get("held"), 10, what="held")
    assert open_alert(live, "BatchLate")["held"].startswith("silenced")
    # a twin without the silenced label goes out: the silence is what holds the other
    assert post(live, [alert("BatchLate", service="web")]).status_code == 200
    wait_until(lambda: firing(receiver, "BatchLate"), 10, what="the unsilenced twin")
    time.sleep(1.5)
    told = [a["labels"].get("service") for p in firing(receiver, "BatchLate") for a in p["alerts"]]
    assert told == ["web"]


def test_a_wrong_or_missing_token_is_refused(live):
    for token in (None, "not-the-token", ADMIN_TOKEN[:-1]):
        answer = post(live, [alert("Sneaky")], token=token)
        assert answer.status_code == 401, token
    assert open_alert(live, "Sneaky") is None
    # the admin token is taken too
    assert post(live, [alert("ByAdmin", ends=-1)], token=ADMIN_TOKEN).status_code == 200


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not valid JSON"),
        (b'{"labels": {"alertname": "x"}}', "JSON list"),
        (b'[{"annotations": {}}]', "labels"),
        (b'[{"labels": {}}]', "at least one label"),
        (b'[{"labels": {"alertname": 3}}]', "must be a string"),
        (b'[{"labels": {"a": "b"}, "startsAt": "yesterday"}]', "RFC 3339"),
        (
            b'[{"labels": {"a": "b"}, "startsAt": "2026-01-02T00:00:00Z",'
            b' "endsAt": "2026-01-01T00:00:00Z"}]',
            "before",
        ),
        (b'["an alert"]', "object"),
    ],
)
def test_a_malformed_payload_is_a_400_that_says_why(live, body, says):
    answer = post(live, None, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert says in answer.json()["error"]


def test_a_post_larger_than_a_mib_is_refused(live):
    big = [alert("Huge", note="x" * 4000) for _ in range(300)]
    assert post(live, big).status_code == 413


def test_the_valid_alerts_of_a_mixed_post_are_taken(live, receiver):
    answer = post(live, [{"labels": {}}, alert("MixedGood")])
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("alert 0:")
    wait_until(lambda: firing(receiver, "MixedGood"), 10, what="the valid alert told")


def test_the_status_page_shows_external_alerts_and_never_a_secret(live):
    leaky = alert("LeakyRule", host="web3")
    leaky["annotations"]["summary"] = f"token is {INTAKE_TOKEN}"
    assert post(live, [leaky]).status_code == 200
    wait_until(lambda: open_alert(live, "LeakyRule"), 10, what="the alert")
    public = httpx.get(live.url + "/", timeout=10).text
    assert "External alerts" in public
    assert "LeakyRule" in public
    assert "host=web3" in public
    detailed = live.get("/").text
    assert "LeakyRule" in detailed
    assert "token is" in detailed
    for text in (public, detailed, live.get("/api/alerts").text):
        assert INTAKE_TOKEN not in text
        assert ADMIN_TOKEN not in text


def test_an_external_alert_outlives_a_restart(tmp_path):
    with HttpRecorder() as receiver:
        first = LiveDaemon(tmp_path, config(receiver), ENV)
        with first:
            assert post(first, [alert("Persisting")]).status_code == 200
            wait_until(lambda: firing(receiver, "Persisting"), 10, what="the firing notice")
            before = open_alert(first, "Persisting")
            first.flush()
        with LiveDaemon(tmp_path, config(receiver), ENV) as second:
            after = open_alert(second, "Persisting")
            assert after is not None
            assert after["id"] == before["id"]
            assert post(second, [alert("Persisting")]).status_code == 200
            time.sleep(1.5)
            assert len(firing(receiver, "Persisting")) == 1  # resent: not a new incident
            assert post(second, [alert("Persisting", ends=-1)]).status_code == 200
            wait_until(lambda: resolved(receiver, "Persisting"), 10, what="resolved")


# -- a real Prometheus -----------------------------------------------------------------

RULES_FIRING = {
    "groups": [
        {
            "name": "watchkeeper-test",
            "interval": "1s",
            "rules": [
                {
                    "alert": "AlwaysFiring",
                    "expr": "vector(1)",
                    "labels": {"severity": "critical", "team": "ops"},
                    "annotations": {"summary": "the rule always fires"},
                }
            ],
        }
    ]
}


def rules_stopped() -> dict:
    rules = yaml.safe_load(yaml.safe_dump(RULES_FIRING))
    rules["groups"][0]["rules"][0]["expr"] = "vector(1) > 2"  # an empty result: not firing
    return rules


def prometheus_runs() -> str | None:
    """Return why Prometheus cannot run here, or None."""
    if not os.path.exists(PROMETHEUS):
        return f"{PROMETHEUS} is not installed (apt-get install prometheus)"
    try:
        done = subprocess.run([PROMETHEUS, "--version"], capture_output=True, timeout=30)
    except OSError as exc:
        return f"{PROMETHEUS} cannot run: {exc}"
    return None if done.returncode == 0 else f"{PROMETHEUS} --version failed"


@pytest.fixture
def prometheus_setup(tmp_path):
    why = prometheus_runs()
    if why:
        pytest.skip(why)
    return tmp_path


def sent_by(port: int) -> float:
    """Return how many alerts Prometheus says it has sent (its own metric)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_notifications_sent_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_real_prometheus_alert_is_told_once_acknowledged_and_resolved(prometheus_setup):
    folder = prometheus_setup
    with HttpRecorder() as receiver:
        daemon_dir = folder / "daemon"
        daemon_dir.mkdir()
        with LiveDaemon(daemon_dir, config(receiver), ENV) as live:
            port = free_port()
            rules = folder / "rules.yml"
            rules.write_text(yaml.safe_dump(RULES_FIRING))
            prometheus_yml = folder / "prometheus.yml"
            prometheus_yml.write_text(
                yaml.safe_dump(
                    {
                        "global": {"evaluation_interval": "1s", "scrape_interval": "1h"},
                        "rule_files": [str(rules)],
                        "alerting": {
                            "alertmanagers": [
                                {
                                    "api_version": "v2",
                                    "static_configs": [{"targets": [f"127.0.0.1:{live.port}"]}],
                                    "authorization": {"credentials": INTAKE_TOKEN},
                                }
                            ]
                        },
                    }
                )
            )
            log = (folder / "prometheus.log").open("wb")
            server = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={prometheus_yml}",
                    f"--storage.tsdb.path={folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--web.enable-lifecycle",
                    # resent every 2s rather than every minute: resends are part of the test
                    "--rules.alert.resend-delay=2s",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                _drive_prometheus(live, receiver, server, port, rules, folder)
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(20)
                except subprocess.TimeoutExpired:
                    server.kill()
                log.close()


def _drive_prometheus(live, receiver, server, port, rules: Path, folder: Path) -> None:
    def told() -> list[dict]:
        if server.poll() is not None:
            raise AssertionError((folder / "prometheus.log").read_text()[-3000:])
        return firing(receiver, "AlwaysFiring")

    wait_until(told, 60, what="Prometheus's alert at the webhook route")
    # acknowledged before the 3s escalation level: nobody is paged, however long it fires
    shown = open_alert(live, "AlwaysFiring")
    answer = live.post(f"/api/alerts/{shown['id']}/ack", json={"by": "prometheus-test"})
    assert answer.json()["status"] == "acknowledged"
    # several resends later, still one notice
    wait_until(lambda: sent_by(port) >= 4, 30, what="Prometheus resending")
    time.sleep(1.5)
    [notice] = firing(receiver, "AlwaysFiring")
    [item] = notice["alerts"]
    assert item["labels"] == {"alertname": "AlwaysFiring", "severity": "critical", "team": "ops"}
    assert item["severity"] == "critical"
    assert item["source_url"].startswith("http://")
    assert "graph" in item["source_url"]
    assert about(receiver, "AlwaysFiring", "/page") == []
    assert open_alert(live, "AlwaysFiring")["acknowledged"] is True
    rules.write_text(yaml.safe_dump(rules_stopped()))
    reloaded = httpx.post(f"http://127.0.0.1:{port}/-/reload", timeout=10)
    assert reloaded.status_code == 200, reloaded.text
    wait_until(lambda: resolved(receiver, "AlwaysFiring"), 30, what="the resolved notice")
    assert open_alert(live, "AlwaysFiring") is None
    assert len(firing(receiver, "AlwaysFiring")) == 1
