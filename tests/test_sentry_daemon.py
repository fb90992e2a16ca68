"""The daemon's own Sentry reporting: scrubbing, and what a local stand-in for Sentry's
ingest host receives from a real daemon process — error events and Crons check-ins, with
no secret and no e-mail address anywhere in them."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from types import SimpleNamespace

import httpx
import pytest
import yaml

from tests.api_harness import ADMIN_TOKEN, daemon_serves_http, free_port, wait_until
from tests.daemon_harness import Daemon
from tests.receivers import HttpRecorder

PG_PASSWORD = "pg-Pa55word-77"
HOOK_SECRET = "s3cr3t-hook-path-42"
EMAIL = "oncall@example.com"


# -- scrubbing (no SDK needed) ---------------------------------------------------------------


def test_scrub_removes_secrets_headers_dsns_and_emails():
    from watchkeeper.engine.observe.redaction import REDACTOR
    from watchkeeper.engine.observe.sentry import scrub, scrub_breadcrumb

    REDACTOR.add("registered-secret-value-1")
    event = {
        "release": "watchkeeper@1.0.0",
        "environment": "production",
        "logentry": {
            "message": "cannot reach postgresql://wk:pw-in-url@db:5432/app for "
            "registered-secret-value-1, tell oncall@example.com"
        },
        "request": {
            "url": "http://127.0.0.1:8080/api/heartbeat/job?token=abc123",
            "query_string": "token=abc123",
            "headers": {"Authorization": "Bearer abc123", "User-Agent": "curl"},
            "cookies": {"session": "x"},
        },
        "user": {"id": "1", "email": "a@example.org", "ip_address": "10.0.0.1"},
        "extra": {
            "sys.argv": ["watchkeeper", "run"],
            "api_key": "k-123",
            "note": "Authorization: Bearer abc123",
        },
        "exception": {"values": [{"value": "GET https://x.io/?api_key=zzz failed"}]},
    }
    clean = json.dumps(scrub(event))
    for leaked in (
        "pw-in-url",
        "registered-secret-value-1",
        "oncall@example.com",
        "abc123",
        "a@example.org",
        "10.0.0.1",
        "k-123",
        "zzz",
        "session",
    ):
        assert leaked not in clean, leaked
    assert scrub(event)["release"] == "watchkeeper@1.0.0"
    assert scrub(event)["request"]["headers"]["User-Agent"] == "curl"
    crumb = scrub_breadcrumb({"message": "POST http://u:p4ss@h/x", "data": {"token": "t0k"}})
    assert "p4ss" not in json.dumps(crumb)
    assert "t0k" not in json.dumps(crumb)


def test_monitor_config_tells_sentry_the_schedule():
    from watchkeeper.engine.observe.sentry import monitor_config

    config = monitor_config(SimpleNamespace(checkin_interval=300.0))
    assert config["schedule"] == {"type": "interval", "value": 5, "unit": "minute"}
    assert config["checkin_margin"] == 5
    short = monitor_config(SimpleNamespace(checkin_interval=20.0))
    assert short["schedule"]["value"] == 1


def test_no_dsn_means_no_sentry():
    from watchkeeper.engine.observe.sentry import init_sentry

    assert init_sentry(SimpleNamespace(sentry=SimpleNamespace(dsn=None))) is False


# -- a real daemon against a stand-in ingest host ---------------------------------------------


def envelopes(recorder: HttpRecorder) -> list[list[dict]]:
    """Return each received envelope as its decoded JSON lines."""
    found = []
    for request in recorder.requests:
        body = request.body
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        found.append([json.loads(line) for line in body.splitlines() if line.strip()])
    return found


def raw_bodies(recorder: HttpRecorder) -> str:
    parts = []
    for request in recorder.requests:
        body = request.body
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        parts.append(json.dumps(request.headers) + request.path + body.decode("utf-8", "replace"))
    return "\n".join(parts)


WIRING = """
import anyio
from watchkeeper.engine.observe import logs
from watchkeeper.engine.api import serve_http
from watchkeeper.engine.config.validation import load_config
from watchkeeper.engine.daemon import Daemon
from watchkeeper.engine.observe.sentry import init_sentry, sentry_checkins

# what engine/daemon.py does once it serves HTTP itself (see docs/api.md)
logs.setup("debug", "text")
daemon = Daemon(load_config("monitor.yaml"))
init_sentry(daemon.config)


async def main():
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.serve)
        while not daemon.ready.is_set():
            await anyio.sleep(0.05)
        await tg.start(serve_http, daemon)
        await tg.start(sentry_checkins, daemon)
        await daemon.stopping.wait()
        await anyio.sleep(1)
        tg.cancel_scope.cancel()


anyio.run(main)
"""


@pytest.mark.slow
def test_the_daemon_reports_errors_and_checks_in_without_secrets(tmp_path):
    port = free_port()
    with HttpRecorder(200) as ingest:
        config = {
            "version": 1,
            "state": {"type": "sqlite", "path": "state.db"},
            "engine": {"workers": 0},
            "server": {"listen": f"127.0.0.1:{port}", "admin_token": "${ADMIN_TOKEN}"},
            "sentry": {
                "dsn": f"http://publickey@127.0.0.1:{ingest.port}/1",
                "environment": "testing",
                "checkin_interval": "1s",
                "monitor_slug": "wk-test",
                "traces_sample_rate": "100%",
            },
            "checks": {
                "database": {
                    "probe": "postgres",
                    "schedule": {"every": "1s"},
                    "dsn": f"postgresql://wk:{PG_PASSWORD}@127.0.0.1:9/app",
                    "timeout": "2s",
                },
            },
            "notifiers": {
                "hook": {
                    "type": "webhook",
                    "url": f"http://127.0.0.1:9/hook/{HOOK_SECRET}",
                    "retry_initial": "200ms",
                    "retry_max": "1s",
                }
            },
            "routes": [{"match": {}, "notify": ["hook"], "group_wait": "0s"}],
        }
        (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config))
        env = {"ADMIN_TOKEN": ADMIN_TOKEN}
        if daemon_serves_http():
            process = Daemon(tmp_path, env=env).start()
            stop, log = process.stop, lambda: process.log
        else:
            (tmp_path / "wired.py").write_text(WIRING)
            log_path = tmp_path / "daemon.log"
            handle = open(log_path, "w")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "wired.py"],
                cwd=tmp_path,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**_clean_env(), **env},
            )

            def stop():
                proc.terminate()
                proc.wait(30)
                handle.close()

            def log():
                return log_path.read_text()

        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _up(base), 30, what="the API")
            # an invalid config, reloaded through the API: the daemon logs an error
            broken = dict(config)
            broken["checks"] = {"database": {**config["checks"]["database"], "severity": EMAIL}}
            (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(broken))
            response = httpx.post(
                base + f"/api/reload?token={ADMIN_TOKEN}",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert response.status_code == 422
            (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config))
            wait_until(
                lambda: _events(ingest) and len(_checkins(ingest)) >= 2,
                30,
                what="an event and two check-ins",
            )
            time.sleep(1.5)  # let deliveries fail and be logged as well
        finally:
            stop()
        daemon_log = log()

    events = _events(ingest)
    messages = json.dumps(events)
    assert "reload rejected" in messages
    assert "[email]" in messages  # the severity named in the problem, scrubbed
    first = events[0]
    assert first["release"] == f"watchkeeper@{_version()}"
    assert first["environment"] == "testing"
    checkin = _checkins(ingest)[0]
    assert checkin["monitor_slug"] == "wk-test"
    assert checkin["status"] == "ok"
    assert checkin["monitor_config"]["schedule"] == {
        "type": "interval",
        "value": 1,
        "unit": "minute",
    }
    everything = raw_bodies(ingest)
    for secret in (ADMIN_TOKEN, PG_PASSWORD, HOOK_SECRET, EMAIL):
        assert secret not in everything, secret
    assert "frame" not in messages or '"vars"' not in messages  # no local variables
    assert ADMIN_TOKEN not in daemon_log
    assert "reload rejected" in daemon_log


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _items(ingest: HttpRecorder, kind: str) -> list[dict]:
    found = []
    for envelope in envelopes(ingest):
        for header, payload in zip(envelope[1::2], envelope[2::2], strict=False):
            if header.get("type") == kind:
                found.append(payload)
    return found


def _events(ingest: HttpRecorder) -> list[dict]:
    return _items(ingest, "event")


def _checkins(ingest: HttpRecorder) -> list[dict]:
    return _items(ingest, "check_in")


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}


def _version() -> str:
    from watchkeeper.engine.api.views import version

    return version()
