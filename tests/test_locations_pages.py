"""A check run from several locations, as its readers see it: the status page, the check's
page, /api/status, and the Slack, PagerDuty and mail messages of its alert.

One real `watchkeeper run --location eu` on SQLite, with `locations: {from: [eu, us],
quorum: 1}`: it runs `api/eu` only, so `us` is unknown ("no replica in us") and one
failing location is enough to fire. The scene is played once (up, down, up again) and
what each reader got at each moment is kept for the tests to read.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import yaml

from tests.api_harness import ADMIN_TOKEN, wait_until
from tests.daemon_harness import Daemon, Recorder, Target, free_port
from tests.receivers import SmtpRecorder

pytestmark = pytest.mark.slow

URL_PASSWORD = "pa55-Wq7-url-secret"
ROUTING_KEY = "R0UT1NGkey0000000000000000000042"
SLACK_PATH = "/services/T000/B000/XXXXslacksecretXXXX"


def config(port: int, target: Target, hooks: Recorder, smtp: SmtpRecorder) -> dict:
    host = target.url.removeprefix("http://")
    return {
        "version": 1,
        "engine": {"workers": 0},
        "server": {"listen": f"127.0.0.1:{port}", "admin_token": "${ADMIN_TOKEN}"},
        "state": {"type": "sqlite", "path": "state.db"},
        "checks": {
            "api": {
                "probe": "http",
                "url": f"http://monitor:{URL_PASSWORD}@{host}/health",
                "schedule": {"every": "1s"},
                "timeout": "2s",
                "locations": {"from": ["eu", "us"], "quorum": 1},
            },
        },
        "notifiers": {
            "chat": {"type": "slack", "webhook_url": hooks.url + SLACK_PATH},
            "pager": {
                "type": "pagerduty",
                "routing_key": ROUTING_KEY,
                "url": hooks.url + "/v2/enqueue",
            },
            "mail": {
                "type": "email",
                "to": ["oncall@example.com"],
                "smtp_url": f"smtp://127.0.0.1:{smtp.port}",
            },
        },
        "routes": [
            {
                "match": {"check": "api"},
                "notify": ["chat", "pager", "mail"],
                "group_wait": "0s",
                "group_interval": "1s",
            }
        ],
    }


@dataclass
class Moment:
    """What the readers saw at one moment: pages as the public and the admin get them."""

    home: str = ""
    check: str = ""
    check_admin: str = ""
    status: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scene:
    up: Moment
    down: Moment
    slack: list[dict]
    pagerduty: list[dict]
    mail: list[Any]
    log: str


def api_status(base: str) -> dict:
    response = httpx.get(
        base + "/api/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def api_row(base: str) -> dict:
    return next(c for c in api_status(base)["checks"] if c["check"] == "api")


def eu(base: str) -> dict:
    return api_row(base)["locations"][0]


def moment(base: str) -> Moment:
    def get(path: str, token: bool = False) -> str:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if token else {}
        response = httpx.get(base + path, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.text

    return Moment(
        home=get("/"),
        check=get("/checks/api"),
        check_admin=get("/checks/api", token=True),
        status=api_status(base),
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Scene:
    tmp = tmp_path_factory.mktemp("located")
    target, hooks, port = Target(), Recorder(), free_port()
    with SmtpRecorder() as smtp:
        (tmp / "monitor.yaml").write_text(
            yaml.safe_dump(config(port, target, hooks, smtp), sort_keys=False)
        )
        base = f"http://127.0.0.1:{port}"
        daemon = Daemon(tmp, env={"ADMIN_TOKEN": ADMIN_TOKEN}, args=("--location", "eu"))
        try:
            daemon.start(timeout=40)
            # several good runs in eu, so its latency has figures
            wait_until(lambda: target.hits >= 4 and eu(base)["status"] == "up", 30, what="eu up")
            up = moment(base)

            target.status = 503
            hooks.wait_for(1, SLACK_PATH, timeout=30)
            hooks.wait_for(1, "/v2/enqueue", timeout=30)
            smtp.wait_for(1, timeout=30)
            wait_until(lambda: eu(base)["status"] == "down", 15, what="eu down")
            down = moment(base)

            target.status = 200
            hooks.wait_for(2, SLACK_PATH, timeout=30)
            hooks.wait_for(2, "/v2/enqueue", timeout=30)
            smtp.wait_for(2, timeout=30)
            time.sleep(1.5)  # nothing more may follow
            return Scene(
                up=up,
                down=down,
                slack=hooks.json(SLACK_PATH),
                pagerduty=hooks.json("/v2/enqueue"),
                mail=list(smtp.messages),
                log=daemon.log,
            )
        finally:
            daemon.stop()
            hooks.close()
            target.close()


def check_block(html: str) -> str:
    match = re.search(r'<li class="check" id="check-api".*?</ul>\s*</div>', html, re.DOTALL)
    assert match, "no check api on the status page"
    return match.group(0)


def places(html: str) -> list[str]:
    """Each location's line of the status page, as text."""
    block = re.search(r'<ul class="locations".*?</ul>', check_block(html), re.DOTALL)
    assert block, "no locations under api"
    items = re.findall(r"<li[^>]*>(.*?)</li>", block.group(0), re.DOTALL)
    return [" ".join(re.sub(r"<[^>]+>", " ", item).split()) for item in items]


def location_rows(html: str) -> dict[str, list[str]]:
    """The check page's Locations table: location -> its cells as text."""
    section = re.search(r'<section id="locations".*?</section>', html, re.DOTALL)
    assert section, "no Locations section"
    rows = {}
    for row in re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", section.group(0), re.DOTALL):
        cells = [" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in row.split("<td>")]
        rows[cells[0]] = cells[1:]
    return rows


def test_the_status_page_shows_each_location_in_words(scene):
    assert places(scene.up.home) == [
        "eu up",
        "us unknown (no replica in us)",
        "down when 1 of 2 sees it down",
    ]
    assert places(scene.down.home) == [
        "eu down",
        "us unknown (no replica in us)",
        "down when 1 of 2 sees it down",
    ]
    assert 'data-status="down"' in check_block(scene.down.home)
    # each state is written out, its colour only repeats it
    assert '<span class="status s-down">down</span>' in check_block(scene.down.home)


def test_the_check_page_has_a_locations_section(scene):
    up = location_rows(scene.up.check)
    # location: state, last run, last run took, runs, uptime, p50, p95
    state, last_run, took, runs, uptime, p50, p95 = up["eu"]
    assert state == "up"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", last_run)
    assert re.fullmatch(r"[\d.]+(µs|ms|s)", took), took
    assert int(runs) >= 3
    assert uptime == "100%"
    assert re.fullmatch(r"[\d.]+(µs|ms|s)", p50)
    assert re.fullmatch(r"[\d.]+(µs|ms|s)", p95)
    assert up["us"] == ["unknown (no replica in us)", "never", "—", "0", "no data", "—", "—"]
    assert "down when at least 1 of them sees it down (quorum 1)" in scene.up.check
    assert "0 of 2 see it down now" in scene.up.check

    down = location_rows(scene.down.check)
    assert down["eu"][0] == "down"
    assert down["eu"][4] != "100%"  # the failed runs count in eu's uptime
    assert "1 of 2 sees it down now" in scene.down.check
    # the chart stays on the check's combined series
    assert 'id="chart-title">Response time, last 24 hours' in scene.down.check


def test_the_admin_api_shows_each_location(scene):
    row = next(c for c in scene.down.status["checks"] if c["check"] == "api")
    eu_seen, us_seen = row["locations"]
    assert eu_seen["location"] == "eu"
    assert eu_seen["status"] == "down"
    assert eu_seen["ok"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", eu_seen["last_run"])
    assert isinstance(eu_seen["duration"], float)
    assert us_seen == {"location": "us", "status": "unknown", "why": "no replica in us"}
    # no row of its own for a location's run
    assert [c["check"] for c in scene.down.status["checks"]] == ["api"]
    (alert,) = scene.down.status["alerts"]
    assert alert["locations"] == {"down": ["eu"], "up": [], "unknown": ["us"], "quorum": 1}


def test_probe_messages_only_for_the_admin_and_secrets_never(scene):
    public = [scene.up.home, scene.down.home, scene.up.check, scene.down.check]
    for html in public:
        assert "HTTP 503" not in html
        assert "/health" not in html
    assert "HTTP 503" in scene.down.check_admin  # the latest results' messages
    everything = [*public, scene.down.check_admin, json.dumps(scene.down.status)]
    everything += [json.dumps(scene.slack), json.dumps(scene.pagerduty)]
    everything += [m.data.decode(errors="replace") for m in scene.mail]
    for text in everything:
        assert URL_PASSWORD not in text


def slack_fields(body: dict) -> dict[str, str]:
    (attachment,) = body["attachments"]
    found = {}
    for block in attachment["blocks"]:
        for item in block.get("fields", []):
            name, _, value = item["text"].partition("\n")
            found[name.strip("*")] = value
    return found


def test_slack_names_the_locations(scene):
    firing, resolved = scene.slack
    assert firing["blocks"][0]["text"]["text"] == (
        "api is down in eu (1 of 2, quorum 1): HTTP 503 (critical)"
    )
    assert slack_fields(firing)["Locations"] == "Down in eu · unknown in us · quorum 1"
    assert slack_fields(resolved)["Locations"] == "Up in eu · unknown in us · quorum 1"


def test_pagerduty_carries_the_locations(scene):
    trigger, resolve = scene.pagerduty
    assert trigger["event_action"] == "trigger"
    assert trigger["payload"]["custom_details"]["locations"] == {
        "down": ["eu"],
        "up": [],
        "unknown": ["us"],
        "quorum": 1,
    }
    assert trigger["payload"]["summary"].startswith("api is down in eu (1 of 2, quorum 1)")
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == trigger["dedup_key"]


def test_the_mail_has_a_locations_line(scene):
    firing, resolved = (m.email for m in scene.mail)
    text = firing.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "  Locations:  Down in eu · unknown in us · quorum 1\n" in text
    html = firing.get_body(("html",)).get_content()
    assert "Down in eu · unknown in us · quorum 1" in html
    again = resolved.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "  Locations:  Up in eu · unknown in us · quorum 1\n" in again
