"""The seed guide's example, run as its header says, against stand-ins for everything.

`watchkeeper -c examples/infinite-idea.yaml run` (a copy, in a temporary folder) watches
an in-test app (its `/api/health` switchable, `/api/admin/monitoring` refusing without
the token), the real local PostgreSQL (a database of its own) and Redis, and talks to
stand-ins for the three Slack webhooks, the Vercel deploy hook, PagerDuty's Events v2
API, Sentry's API and an SMTP server (aiosmtpd). Then:

1. production's health endpoint fails: one page in #alerts; escalation levels 1 (the
   deploy hook), 2 (mail to dev-team) and 3 (PagerDuty) in that order; `watchkeeper
   alerts ack` reaches PagerDuty as `acknowledge` with the same dedup_key and stops the
   escalation; recovery is one resolved message to everyone who was told;
2. staging's health endpoint fails: #monitoring hears of it, nobody is paged, nothing
   self-heals;
3. production gets slow: a warning in #monitoring that turns high escalates (level 2
   mails dev-team);
4. throughout: no SLO alert doubles an outage (one PagerDuty incident), and every
   headline is one plain sentence;
5. afterwards `watchkeeper -c examples/infinite-idea.yaml backup run config`, from the
   folder above, packs the example itself.

Sentry and S3 are not here: Sentry's API is a stand-in on the app's server (the example
reads `SENTRY_API_URL`), and the backup jobs keep their local copy only.

The copy differs from the example only by the substitutions in `SUBSTITUTIONS`, each
asserted to apply, so an edit of the example that breaks one fails here by name.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, run_cli
from tests.daemon_harness import Daemon, Recorder
from tests.pg_server import PgUnavailable, local_test_database
from tests.receivers import SmtpRecorder

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "infinite-idea.yaml"
ADMIN_KEY = "app-admin-key-e2e-5521"
STAGING_ADMIN_KEY = "staging-admin-key-e2e-8812"
ROUTING_KEY = "pd-routing-key-e2e-0c1f"

# (pattern, replacement, how many times it must apply, why)
SUBSTITUTIONS: list[tuple[str, str, int, str]] = [
    (r"listen: 0\.0\.0\.0:8080", "listen: 127.0.0.1:0", 1, "a free port, not 8080"),
    (r"\{every: \d+[smh]\}", "{every: 1s}", 7, "every check every second, not 1m-1h"),
    (r"after: 15m", "after: 4s", 3, "escalation level 2 after 4 s, not 15 min"),
    (r"after: 45m", "after: 8s", 3, "level 3 after 8 s, not 45 min"),
    # long enough that the ack (a CLI process on a loaded machine) lands before a repeat
    (r"repeat: 1h\}", "repeat: 8s}", 2, "level 3 repeats every 8 s: an ack must stop it"),
    # group_wait 0s/30s and group_interval 5m (the default) become 1s on every route:
    # a resolution would otherwise wait 5 minutes behind its firing message
    (r"\n    group_wait: \w+", "", 6, "group_wait/interval set below"),
    (
        r"(\n  - match: [^\n]*\n    notify: \[\w+(?:, \w+)*\])",
        r"\1\n    group_wait: 1s\n    group_interval: 1s",
        12,
        "group_wait and group_interval 1s on every route",
    ),
    # S3 cannot run here: the jobs keep their local copy only
    (r"to: \[local, cloud\]", "to: [local]", 3, "no S3 server here"),
    # the staging window of the second Tuesday would mute the staging scenario on that day
    (r'"0 9 \* \* TUE#2"', '"0 9 29 2 *"', 1, "no maintenance window on the test's day"),
]


def example_copy(folder: Path) -> Path:
    """Write the example with SUBSTITUTIONS applied to folder/examples/; return its path."""
    text = EXAMPLE.read_text()
    for pattern, replacement, count, why in SUBSTITUTIONS:
        text, made = re.subn(pattern, replacement, text)
        assert made == count, f"{why}: {pattern!r} applied {made}x, expected {count}x"
    path = folder / "examples" / "infinite-idea.yaml"
    path.parent.mkdir()
    path.write_text(text)
    return path


# --- the app: production under /production, staging under /staging ------------------------

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "origin-when-cross-origin",
}


class App:
    """The Next.js app as its endpoints answer; `health[env]` decides /api/health."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.health = {env: {"status": 200, "delay": 0.0} for env in ("production", "staging")}
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status, body = app.answer(self.path, self.headers.get("Authorization"))
                payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in SECURITY_HEADERS.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, env: str, *, status: int | None = None, delay: float | None = None) -> None:
        with self.lock:
            if status is not None:
                self.health[env]["status"] = status
            if delay is not None:
                self.health[env]["delay"] = delay

    def answer(self, path: str, authorization: str | None) -> tuple[int, Any]:
        if path.startswith("/sentry/"):  # Sentry's API: the project, no new issues or events
            if path.startswith("/sentry/projects/"):
                return 200, {"id": "4501", "slug": "infinite-idea"}
            return 200, {"data": []} if "/events/" in path else []
        env, _, rest = path.lstrip("/").partition("/")
        rest = "/" + rest.split("?")[0]
        key = {"production": ADMIN_KEY, "staging": STAGING_ADMIN_KEY}.get(env)
        if rest == "/api/health":
            with self.lock:
                status, delay = self.health[env]["status"], self.health[env]["delay"]
            time.sleep(delay)
            if status == 200:
                database = {"status": "healthy", "responseTime": "12ms"}
                return 200, {
                    "status": "healthy",
                    "checks": {"database": database, "redis": {"status": "healthy"}},
                    "metrics": {"memoryUsage": {"heapUsed": 52_428_800}},
                }
            return status, {
                "status": "unhealthy",
                "checks": {"database": {"status": "unhealthy", "error": "ECONNREFUSED"}},
            }
        if rest == "/api/admin/monitoring":
            if authorization != f"Bearer {key}":
                return 401, {"error": "Unauthorized"}
            return 200, {
                "performance": {
                    "apiResponseTime": 120,
                    "pageLoadTime": 800,
                    "aiGenerationTime": 20_000,
                    "errorRate": 0.2,
                },
                "cache": {"hitRate": 97},
                "system": {"memory": {"rss": 300_000_000, "heapUsed": 120_000_000}},
                "usage": {"activeUsers": 42, "blueprintsGenerated": 7},
                "database": {
                    "status": "healthy",
                    "connectionCount": 3,
                    "queryMetrics": {"averageResponseTime": 35},
                },
            }
        if rest == "/api/projects":
            return 401, {"error": "Unauthorized"}
        return 200, {}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- what the receivers got ---------------------------------------------------------------


def slack(receivers: Recorder, channel: str) -> list[dict]:
    return receivers.json(f"/slack/{channel}")


def headline(message: dict) -> str:
    return message["blocks"][0]["text"]["text"]


def about(messages: list[dict], instance: str) -> list[str]:
    """Headlines of the Slack messages about one check instance."""
    return [headline(m) for m in messages if headline(m).startswith(instance)]


def deploys(receivers: Recorder) -> int:
    """Calls of the deploy hook (an empty POST)."""
    with receivers.lock:
        return sum(1 for r in receivers.requests if r["path"] == "/deploy-hook")


def pagerduty(receivers: Recorder) -> list[dict]:
    return receivers.json("/pagerduty")


def wait_until(condition, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def plain_sentence(text: str) -> bool:
    """One headline: no FIRING twice, no raw JSON, no `1e+03`-style numbers."""
    return (
        text.upper().count("FIRING") <= 1
        and not re.search(r"[{\[]\s*\"", text)
        and not re.search(r"\de[+-]?\d", text)
        and "\n" not in text
    )


# --- the test ----------------------------------------------------------------------------


@pytest.fixture
def app():
    server = App()
    yield server
    server.close()


@pytest.fixture
def receivers():
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def database_url():
    try:
        with local_test_database("watchkeeper_e2e") as url:
            yield url
    except PgUnavailable as exc:
        pytest.skip(str(exc))


def test_the_seed_example_runs_end_to_end(tmp_path, app, receivers, database_url):
    started = time.monotonic()
    example_copy(tmp_path)
    with SmtpRecorder() as smtp:
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PRODUCTION_URL": f"{app.url}/production",
            "STAGING_URL": f"{app.url}/staging",
            "ADMIN_API_KEY": ADMIN_KEY,
            "STAGING_ADMIN_API_KEY": STAGING_ADMIN_KEY,
            "WATCHKEEPER_ADMIN_TOKEN": "watchkeeper-admin-e2e-1",
            "HEARTBEAT_TOKEN": "heartbeat-e2e-1",
            "DATABASE_URL": database_url,
            "SCRATCH_DATABASE_URL": database_url,  # drills are cron-only: none runs here
            "REDIS_URL": "redis://127.0.0.1:6379/15",  # INFO only: nothing is written
            "SLACK_WEBHOOK_ALERTS": f"{receivers.url}/slack/alerts",
            "SLACK_WEBHOOK_MONITORING": f"{receivers.url}/slack/monitoring",
            "SLACK_WEBHOOK_DEPLOYMENTS": f"{receivers.url}/slack/deployments",
            "SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
            "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "PAGERDUTY_EVENTS_URL": f"{receivers.url}/pagerduty",
            "VERCEL_DEPLOY_HOOK_URL": f"{receivers.url}/deploy-hook",
            "SENTRY_API_URL": f"{app.url}/sentry/",
            "SENTRY_ORG": "desenyon",
            "SENTRY_PROJECT": "infinite-idea",
            "SENTRY_AUTH_TOKEN": "sentry-token-e2e-1",
            "BACKUP_BUCKET": "unused-here",  # the jobs keep local copies only (no S3)
            "OPENAI_API_KEY": "sk-e2e",
            "ANTHROPIC_API_KEY": "sk-ant-e2e",
            "REPLICATE_API_TOKEN": "r8-e2e",
        }

        def cli(*args: str) -> Any:
            result = run_cli("-c", "examples/infinite-idea.yaml", *args, cwd=tmp_path, env=env)
            assert result.code == 0, result.output
            return result

        def open_alert(instance: str, rule: str) -> str:
            def find():
                listed = json.loads(cli("alerts", "list", "--format", "json").stdout)
                for alert in listed:
                    check = alert["check"] + (
                        f"@{alert['environment']}" if alert.get("environment") else ""
                    )
                    if check == instance and alert["rule"] == rule and alert["status"] == "firing":
                        return alert["id"]
                return None

            return wait_until(find, f"the open {rule} alert of {instance}", 10)

        def counts() -> dict[str, int]:
            return {
                "alerts": len(slack(receivers, "alerts")),
                "mail": len(smtp.messages),
                "pagerduty": len(pagerduty(receivers)),
                "deploy-hook": deploys(receivers),
            }

        with Daemon(tmp_path, "examples/infinite-idea.yaml", env=env) as daemon:
            # a healthy start: every check runs, nobody is paged
            time.sleep(4)
            assert counts() == {"alerts": 0, "mail": 0, "pagerduty": 0, "deploy-hook": 0}

            # 1. production's health endpoint fails --------------------------------------
            app.set("production", status=503)
            page = wait_until(
                lambda: about(slack(receivers, "alerts"), "api-health@production"), "#alerts"
            )
            assert page[0].startswith("api-health@production is down: HTTP 503"), page
            assert "<!here>" in slack(receivers, "alerts")[0]["text"]
            # level 1, the deploy hook, at once; nobody else yet
            wait_until(lambda: deploys(receivers), "level 1: redeploy")
            assert (len(smtp.messages), len(pagerduty(receivers))) == (0, 0)
            # level 2 mails dev-team after 4 s; PagerDuty still quiet
            smtp.wait_for(1, timeout=10)
            assert pagerduty(receivers) == []
            level2 = smtp.messages[0].email["Subject"]
            assert level2.startswith("[infinite-idea] api-health@production is down"), level2
            assert "escalated to level 2 of standard (development)" in level2, level2
            # level 3 pages PagerDuty after 8 s
            (trigger,) = wait_until(lambda: pagerduty(receivers), "level 3: PagerDuty", 10)
            assert trigger["event_action"] == "trigger"
            assert trigger["routing_key"] == ROUTING_KEY
            dedup_key = trigger["dedup_key"]

            # the on-call engineer acknowledges: PagerDuty hears it, escalation stops
            alert_id = open_alert("api-health@production", "up")
            cli("alerts", "ack", alert_id, "--comment", "rolling back")
            wait_until(lambda: len(pagerduty(receivers)) >= 2, "the acknowledgement", 10)
            ack = pagerduty(receivers)[1]
            assert (ack["event_action"], ack["dedup_key"]) == ("acknowledge", dedup_key)
            time.sleep(9)  # level 3 repeats every 8 s while unacknowledged
            assert len(pagerduty(receivers)) == 2
            assert len(smtp.messages) == 1

            # recovery: one resolved message to everyone who was told
            app.set("production", status=200)
            wait_until(lambda: len(pagerduty(receivers)) >= 3, "PagerDuty's resolve", 15)
            resolve = pagerduty(receivers)[2]
            assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", dedup_key)
            smtp.wait_for(2, timeout=10)
            wait_until(
                lambda: len(about(slack(receivers, "alerts"), "api-health@production")) >= 2,
                "resolved in #alerts",
            )
            alerts_channel = about(slack(receivers, "alerts"), "api-health@production")
            assert len(alerts_channel) == 2, alerts_channel
            assert alerts_channel[1].startswith("api-health@production recovered after")
            assert "recovered" in smtp.messages[1].email["Subject"]
            assert deploys(receivers) == 1

            # 2. staging fails: #monitoring only --------------------------------------------
            before = counts()
            app.set("staging", status=503)
            seen = wait_until(
                lambda: about(slack(receivers, "monitoring"), "api-health@staging"), "#monitoring"
            )
            assert seen[0].startswith("api-health@staging is down: HTTP 503"), seen
            app.set("staging", status=200)
            wait_until(
                lambda: len(about(slack(receivers, "monitoring"), "api-health@staging")) >= 2,
                "staging recovered",
            )
            time.sleep(1)
            assert counts() == before, "staging paged someone"
            assert not any("<!here>" in m["text"] for m in slack(receivers, "monitoring"))

            # 3. production gets slow: a warning that turns high escalates ------------------
            app.set("production", delay=2.3)
            warning = wait_until(
                lambda: [
                    h
                    for h in about(slack(receivers, "monitoring"), "api-health@production")
                    if "(warning" in h
                ],
                "the latency warning",
                25,
            )
            assert re.search(r": response_time 2\.\d+s above 2s \(warning\)$", warning[0]), warning
            assert counts() == before
            app.set("production", delay=5.3)
            smtp.wait_for(3, timeout=25)
            escalated = smtp.messages[2].email["Subject"]
            assert re.search(
                r"api-health@production: response_time 5\.\d+s above 5s \(high\)", escalated
            )
            assert "escalated to level 2 of standard (development)" in escalated, escalated
            high = about(slack(receivers, "monitoring"), "api-health@production")
            assert any("(high" in h for h in high), high
            cli("alerts", "ack", open_alert("api-health@production", "api-latency"))
            app.set("production", delay=0)
            wait_until(
                lambda: any(
                    "recovered" in h
                    for h in about(slack(receivers, "monitoring"), "api-health@production")
                ),
                "the latency alert resolved",
                25,
            )
            # redeploy ran once (its limit: once an hour); still one PagerDuty incident
            assert deploys(receivers) == 1
            # Not asserted (a known engine issue): the warning route and the high route both
            # notify `monitoring`, so #monitoring hears the upgrade twice ("(high, was
            # warning)" from the warning route's group, "(high)" from the high route's) and
            # the resolution twice.

        # 4. throughout ----------------------------------------------------------------------
        # what PagerDuty heard, said in full when it is not one incident's three events
        paged = [
            (e["dedup_key"], e["event_action"], e.get("payload", {}).get("summary"))
            for e in pagerduty(receivers)
        ]
        incidents = {key for key, _, _ in paged}
        alert_lines = "\n".join(line for line in daemon.log.splitlines() if "alert " in line)
        assert incidents == {dedup_key}, (
            f"an SLO (or other) alert paged a second time: {paged}\n{alert_lines}"
        )
        assert [action for _, action, _ in paged] == ["trigger", "acknowledge", "resolve"], paged
        headlines = [
            headline(m)
            for channel in ("alerts", "monitoring", "deployments")
            for m in slack(receivers, channel)
        ]
        headlines += [e["payload"]["summary"] for e in pagerduty(receivers) if "payload" in e]
        headlines += [str(m.email["Subject"]) for m in smtp.messages]
        assert headlines
        assert all(plain_sentence(h) for h in headlines), [
            h for h in headlines if not plain_sentence(h)
        ]
        assert not any(h.startswith("slo:") for h in headlines), headlines
        # every other check of the example (database, cache, app-metrics, admin-auth,
        # ai-config, sentry-new-errors, ...) ran healthy; `host` judges the real machine
        others = [
            h
            for h in headlines
            if not h.startswith(("api-health@", "host:", "host is", "[infinite-idea] api-health@"))
        ]
        assert others == [], others

    # the configuration backup packs the example itself (`paths: ["*.yaml"]`, relative to
    # its folder, not to the folder the command runs in)
    cli("backup", "run", "config")
    listed = json.loads(cli("backup", "list", "--format", "json").stdout)
    assert [(b["job"], b["status"]) for b in listed] == [("config", "ok")], listed
    cli("backup", "restore", listed[0]["id"], "--to", str(tmp_path / "restored"))
    restored = (tmp_path / "restored" / "infinite-idea.yaml").read_text()
    assert restored == (tmp_path / "examples" / "infinite-idea.yaml").read_text()
    assert time.monotonic() - started < 120
