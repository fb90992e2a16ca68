"""The HTTP API over real HTTP against a running daemon: auth, headers, alerts, silences,
events, reload, audit (DESIGN.md ► HTTP API)."""

from __future__ import annotations

import json
import socket
import time

import anyio
import httpx
import pytest
import yaml

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, daemon_serves_http, free_port, wait_until
from tests.conftest import run_cli
from tests.daemon_harness import Recorder, Target

pytestmark = pytest.mark.slow

BEAT_TOKEN = "beat-T0ken-7c1e"
SECURITY = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "origin-when-cross-origin",
}
ADMIN_ROUTES = [
    ("GET", "/api/status"),
    ("GET", "/api/admin/monitoring"),
    ("GET", "/api/alerts"),
    ("POST", "/api/alerts/0123456789ab/ack"),
    ("GET", "/api/alerts/silences"),
    ("POST", "/api/alerts/silences"),
    ("DELETE", "/api/alerts/silences/0123456789ab"),
    ("POST", "/api/events"),
    ("POST", "/api/reload"),
    ("GET", "/api/audit"),
]
# reload has daemons of its own (test_reload_valid_and_invalid): it changes the config
STEADY_ADMIN_ROUTES = [r for r in ADMIN_ROUTES if r[1] != "/api/reload"]
PUBLIC_ROUTES = [
    ("GET", "/health"),
    ("GET", "/api/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/badge/web.svg"),
    ("GET", "/openapi.json"),
    ("GET", "/static/status.css"),
]


def config(target: Target, receiver: Recorder, **changes) -> dict:
    """`web` checked every second, a heartbeat `job`, everything notified to /hook."""
    base = {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "engine": {"workers": 0},
        "server": {"admin_token": "${ADMIN_TOKEN}"},
        "checks": {
            "web": {
                "probe": "http",
                "url": f"{target.url}/health",
                "schedule": {"every": "1s"},
                "timeout": "2s",
            },
            "job": {
                "probe": "heartbeat",
                "expect_every": {"every": "1h"},
                "max_runtime": "2s",
                "token": "${BEAT_TOKEN}",
            },
        },
        "notifiers": {
            "hook": {
                "type": "webhook",
                "url": f"{receiver.url}/hook",
                "retry_initial": "200ms",
                "retry_max": "1s",
            }
        },
        "routes": [
            {"match": {"event": "deploy"}, "notify": ["hook"]},
            {"match": {}, "notify": ["hook"], "group_wait": "0s", "group_interval": "1s"},
        ],
    }
    base.update(changes)
    return base


ENV = {"ADMIN_TOKEN": ADMIN_TOKEN, "BEAT_TOKEN": BEAT_TOKEN}


@pytest.fixture(scope="module")
def target():
    server = Target()
    yield server
    server.close()


@pytest.fixture(scope="module")
def receiver():
    server = Recorder()
    yield server
    server.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory, target, receiver):
    with LiveDaemon(tmp_path_factory.mktemp("api"), config(target, receiver), ENV) as daemon:
        daemon.wait_status("web", "up")
        yield daemon


def hook_bodies(receiver: Recorder, kind: str | None = None) -> list[dict]:
    return [b for b in receiver.json("/hook") if kind is None or b.get("kind") == kind]


# -- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_refuse_without_the_token(live, method, path):
    wrong = [
        None,
        "wrong",
        ADMIN_TOKEN + "x",
        ADMIN_TOKEN[:-1],
        BEAT_TOKEN,  # a heartbeat token is no admin token
    ]
    for token in wrong:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        response = httpx.request(method, live.url + path, headers=headers, json={})
        assert response.status_code == 401, (token, response.text)
        assert response.json() == {"error": "unauthorized"}
    # the admin API takes the token only as a header, never from the URL
    for headers in ({"Authorization": "Bearer"}, {"Authorization": ADMIN_TOKEN}):
        response = httpx.request(method, live.url + path, headers=headers, json={})
        assert response.status_code == 401
    response = httpx.request(method, f"{live.url}{path}?token={ADMIN_TOKEN}", json={})
    assert response.status_code == 401
    basic = httpx.request(method, live.url + path, auth=("admin", ADMIN_TOKEN), json={})
    assert basic.status_code == 401


@pytest.mark.parametrize(("method", "path"), STEADY_ADMIN_ROUTES)
def test_admin_routes_answer_with_the_token(live, method, path):
    response = httpx.request(
        method,
        live.url + path,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={} if method != "GET" else None,
    )
    assert response.status_code != 401, response.text
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json")


def test_an_empty_admin_token_closes_the_admin_api(tmp_path, target, receiver):
    cfg = config(target, receiver, server={"admin_token": ""})
    with LiveDaemon(tmp_path, cfg, ENV) as live:
        for method, path in ADMIN_ROUTES:
            for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer x"}):
                response = httpx.request(method, live.url + path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.json() == {"error": "unauthorized"}
        # heartbeats still take their own token
        beat = live.post("/api/heartbeat/job", token=BEAT_TOKEN)
        assert beat.status_code == 200, beat.text
        assert "admin API call refused: server.admin_token is not set" in live.logs.text


def test_public_routes_need_no_token(live):
    for method, path in PUBLIC_ROUTES:
        response = httpx.request(method, live.url + path)
        assert response.status_code == 200, (path, response.text)


def test_token_mode_and_off_for_status_page_and_metrics(tmp_path, target, receiver):
    cfg = config(
        target,
        receiver,
        server={"admin_token": "${ADMIN_TOKEN}", "status_page": "token", "metrics": "off"},
    )
    with LiveDaemon(tmp_path, cfg, ENV) as live:
        assert live.get("/", token=None).status_code == 401
        assert live.get("/badge/web.svg", token=None).status_code == 401
        assert live.get("/", token="nope").status_code == 401
        assert live.get("/").status_code == 200
        assert live.get(f"/?token={ADMIN_TOKEN}", token=None).status_code == 200
        assert live.get("/metrics").status_code == 404
        live.write(
            config(target, receiver, server={"admin_token": "${ADMIN_TOKEN}", "metrics": "token"})
        )
        assert live.post("/api/reload").status_code == 200
        assert live.get("/metrics", token=None).status_code == 401
        assert live.get(f"/metrics?token={ADMIN_TOKEN}", token=None).status_code == 401
        assert live.get("/metrics").status_code == 200
        assert live.get("/", token=None).status_code == 200  # public again after the reload


# -- headers --------------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(live):
    calls = [(m, p, ADMIN_TOKEN) for m, p in STEADY_ADMIN_ROUTES]
    calls += [(m, p, None) for m, p in ADMIN_ROUTES]  # refusals too
    calls += [(m, p, None) for m, p in PUBLIC_ROUTES]
    calls += [
        ("GET", "/no/such/page", None),
        ("DELETE", "/health", None),
        ("POST", "/api/heartbeat/job", None),
        ("POST", "/api/heartbeat/nope", None),
        ("GET", "/badge/nope.svg", None),
    ]
    for method, path, token in calls:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.request(method, live.url + path, headers=headers)
        for name, value in SECURITY.items():
            assert response.headers.get(name) == value, (method, path, name)
        assert "server" not in response.headers or "hypercorn" not in response.headers["server"]
    for path in ("/", "/badge/web.svg"):
        csp = httpx.get(live.url + path).headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp
        assert "unsafe-inline" not in csp


def test_unknown_routes_and_methods_answer_json(live):
    missing = httpx.get(live.url + "/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not found"}
    wrong = httpx.put(live.url + "/health")
    assert wrong.status_code == 405


# -- health and readiness -------------------------------------------------------------------


def test_health_reports_checks_and_resources_without_messages(live, target):
    response = httpx.get(live.url + "/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] in ("ok", "degraded")
    names = {(c["check"], c["status"]) for c in body["checks"]}
    assert ("web", "up") in names
    assert all(set(c) == {"check", "environment", "status", "last_run"} for c in body["checks"])
    daemon = body["daemon"]
    assert daemon["rss_bytes"] > 1_000_000
    assert daemon["open_fds"] > 0
    assert daemon["uptime_seconds"] > 0
    assert body["store"] == {
        "type": "sqlite",
        "state": "ok",
        "pending_writes": body["store"]["pending_writes"],
    }
    assert body["outbox"]["depth"] >= 0
    # the same answer under the seed's name (a run may land between the two calls)
    again = httpx.get(live.url + "/api/health").json()["checks"]
    assert [{**c, "last_run": None} for c in again] == [
        {**c, "last_run": None} for c in body["checks"]
    ]
    assert httpx.get(live.url + "/ready").json() == {"ready": True}


def test_health_is_503_while_the_store_refuses_writes(live):
    with live.store_refusing_writes():
        response = httpx.get(live.url + "/health")
        assert response.status_code == 503
        assert response.json()["status"] == "unhealthy"
        assert response.json()["store"]["state"] == "degraded"
        assert httpx.get(live.url + "/ready").status_code == 503
    assert httpx.get(live.url + "/health").status_code == 200


# -- alerts, acknowledgements, silences ------------------------------------------------------


def test_alerts_ack_and_status(live, target, receiver):
    target.status = 503
    try:
        live.wait_status("web", "down")
        alerts = live.get("/api/alerts").json()
        [alert] = [a for a in alerts if a["check"] == "web"]
        assert alert["status"] == "firing"
        assert alert["acknowledged"] is False
        assert live.post("/api/alerts/ffffffffffff/ack").status_code == 404
        response = live.post(
            f"/api/alerts/{alert['id']}/ack", json={"by": "alice", "comment": "on it"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "acknowledged"
        assert response.json()["alert"]["acked_by"] == "alice"
        again = live.post(f"/api/alerts/{alert['id']}/ack", json={"by": "bob"})
        assert again.json()["status"] == "already"
        assert live.daemon.runtime.book.by_id[alert["id"]].acked_by == "alice"
        status = live.get("/api/status").json()
        assert any(a["id"] == alert["id"] for a in status["alerts"])
        assert {
            "checks",
            "store",
            "outbox",
            "scheduler",
            "backups",
            "replicas",
            "maintenance",
            "uptime_seconds",
            "daemon",
        } <= set(status)
        assert status["store"]["stats"]["backend"] == "sqlite"
        assert set(status["scheduler"]["lateness_seconds"]) >= {"p50", "p99", "max"}
        assert live.get("/api/admin/monitoring").json()["alerts"] == status["alerts"]
    finally:
        target.status = 200
    live.wait_status("web", "up")
    resolved = live.post(f"/api/alerts/{alert['id']}/ack")
    assert resolved.status_code == 409
    every = live.get("/api/alerts?status=all").json()
    assert any(a["id"] == alert["id"] and a["status"] == "resolved" for a in every)
    assert live.get("/api/alerts?status=nope").status_code == 400
    entries = live.get("/api/audit").json()
    ack = next(e for e in entries if e["action"] == "ack" and e.get("alert") == alert["id"])
    assert ack["by"].startswith("alice (token@127.0.0.1")
    assert ack["comment"] == "on it"


def test_a_silence_holds_notifications_until_it_ends(tmp_path):
    with _servers() as (target, receiver):
        cfg = config(target, receiver)
        with LiveDaemon(tmp_path, cfg, ENV) as live:
            live.wait_status("web", "up")
            response = live.post(
                "/api/alerts/silences",
                json={
                    "check": "web",
                    "duration": "1h",
                    "reason": "planned restart",
                    "created_by": "carol",
                },
            )
            assert response.status_code == 201, response.text
            silence = response.json()
            assert silence["matchers"] == ["check=web"]
            assert silence["status"] == "active"
            target.status = 503
            live.wait_status("web", "down")
            time.sleep(2.5)
            alert = next(a for a in live.get("/api/alerts").json() if a["check"] == "web")
            assert alert["held"]
            assert "silenced" in alert["held"]
            assert hook_bodies(receiver, "alert") == []
            listed = live.get("/api/alerts/silences").json()
            assert [s["id"] for s in listed] == [silence["id"]]
            ended = live.delete(f"/api/alerts/silences/{silence['id']}")
            assert ended.status_code == 200
            assert ended.json()["status"] == "expired"
            wait_until(lambda: hook_bodies(receiver, "alert"), 10, what="the held alert")
            assert hook_bodies(receiver, "alert")[0]["alerts"][0]["check"] == "web"
            assert live.delete("/api/alerts/silences/nope").status_code == 404
            bad = live.post("/api/alerts/silences", json={"duration": "1h", "reason": "x"})
            assert bad.status_code == 422
            everything = live.post(
                "/api/alerts/silences",
                json={"matchers": ["check!=x"], "duration": "1h", "reason": "x"},
            )
            assert everything.status_code == 422  # would hold back every alert
            assert (
                live.post("/api/alerts/silences", json={"check": "web", "reason": "x"}).status_code
                == 422
            )
            actions = [e["action"] for e in live.get("/api/audit").json()]
            assert "silence" in actions
            assert "expire" in actions


def test_an_acknowledgement_stops_repeats(tmp_path):
    with _servers() as (target, receiver):
        cfg = config(
            target,
            receiver,
            routes=[
                {
                    "match": {},
                    "notify": ["hook"],
                    "group_wait": "0s",
                    "group_interval": "1s",
                    "repeat": "1s",
                }
            ],
        )
        with LiveDaemon(tmp_path, cfg, ENV) as live:
            live.wait_status("web", "up")
            target.status = 503
            wait_until(lambda: len(hook_bodies(receiver, "alert")) >= 2, 15, what="repeats")
            alert = next(a for a in live.get("/api/alerts").json() if a["check"] == "web")
            assert live.post(f"/api/alerts/{alert['id']}/ack").status_code == 200
            time.sleep(0.5)
            count = len(hook_bodies(receiver, "alert"))
            time.sleep(3)
            assert len(hook_bodies(receiver, "alert")) == count


# -- events and reload ---------------------------------------------------------------------


def test_events_are_routed_to_the_notifiers(live, receiver):
    response = live.post(
        "/api/events",
        json={"event": "deploy", "version": "2.4.1", "environment": "production", "by": "ci"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"event": "deploy", "notifiers": ["hook"]}
    [body] = wait_until(lambda: hook_bodies(receiver, "event"), 10, what="the event")
    assert body["event"]["version"] == "2.4.1"
    assert live.post("/api/events", json={"version": "1"}).status_code == 422
    assert live.post("/api/events", content=b"not json").status_code == 400
    assert live.post("/api/events", json={"event": "deploy", "x": {"a": 1}}).status_code == 422
    entry = next(e for e in live.get("/api/audit").json() if e["action"] == "event")
    assert entry["version"] == "2.4.1"
    assert entry["notifiers"] == ["hook"]
    assert entry["by"].startswith("ci (token@")


def test_reload_valid_and_invalid(tmp_path):
    with _servers() as (target, receiver):
        cfg = config(target, receiver)
        with LiveDaemon(tmp_path, cfg, ENV) as live:
            live.wait_status("web", "up")
            extra = dict(cfg)
            extra["checks"] = {
                **cfg["checks"],
                "second": {"probe": "http", "url": f"{target.url}/x", "schedule": {"every": "1s"}},
            }
            live.write(extra)
            response = live.post("/api/reload")
            assert response.status_code == 200, response.text
            for name, value in SECURITY.items():
                assert response.headers[name] == value
            assert response.json()["added"] == ["second"]
            assert response.json()["reloaded"] is True
            live.wait_status("second", "up")
            live.path.write_text(live.path.read_text().replace("probe: http", "probe: htp", 1))
            response = live.post("/api/reload")
            assert response.status_code == 422
            problems = response.json()["problems"]
            assert problems
            assert any("htp" in p["message"] for p in problems)
            assert problems[0]["line"] > 0
            assert "second" in live.daemon.runtime.instances  # the old config runs on
            assert live.status_of("web") == "up"
            entries = [e for e in live.get("/api/audit").json() if e["action"] == "reload"]
            assert [e["ok"] for e in entries][:2] == [False, True]


# -- the audit log --------------------------------------------------------------------------


def test_audit_log_through_the_api_and_the_cli(live):
    assert live.get("/api/status").status_code == 200
    httpx.get(live.url + "/api/status")  # refused: recorded as denied
    entries = live.get("/api/audit?since=1h").json()
    api = [e for e in entries if e["action"] == "api" and e["path"] == "/api/status"]
    assert api
    assert api[0]["by"] == "token@127.0.0.1"
    assert api[0]["status"] == 200
    denied = [e for e in entries if e["action"] == "denied" and e["path"] == "/api/status"]
    assert denied
    assert denied[0]["by"] == "anonymous@127.0.0.1"
    assert live.get("/api/audit?since=soon").status_code == 400
    live.flush()
    result = run_cli("audit", "--since", "1h", "--format", "json", cwd=live.directory)
    assert result.code == 0, result.output
    actions = {e["action"] for e in result.json()}
    assert {"api", "denied"} <= actions
    text = run_cli("audit", cwd=live.directory)
    assert text.code == 0
    assert "token@127.0.0.1" in text.stdout
    assert run_cli("audit", "--since", "x", cwd=live.directory).code == 2


def test_the_admin_token_is_never_logged(live):
    live.get(f"/api/status?token={ADMIN_TOKEN}")
    live.post(f"/api/heartbeat/job?token={ADMIN_TOKEN}", token=None)
    live.get("/api/status", token="wrong-token")
    assert live.logs.lines, "the daemon logged nothing"
    assert ADMIN_TOKEN not in live.logs.text
    for record in live.logs.records:
        assert ADMIN_TOKEN not in record.getMessage()
        assert ADMIN_TOKEN not in json.dumps(vars(record), default=str)
    assert "http request" in live.logs.text  # the access log is there, without queries


# -- start-up ------------------------------------------------------------------------------


def test_an_address_in_use_is_a_clear_start_up_error(tmp_path, target, receiver):
    from watchkeeper.engine.api import ServerError, bind_http
    from watchkeeper.engine.config.validation import load_config
    from watchkeeper.engine.daemon import Daemon

    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        cfg = config(target, receiver)
        live = LiveDaemon(tmp_path, cfg, ENV)
        live.port = port
        live.write(cfg)

        async def main() -> str:
            daemon = Daemon(load_config(live.path, env=ENV))
            with pytest.raises(ServerError) as caught:
                bind_http(daemon)
            return str(caught.value)

        message = anyio.run(main)
    assert message == f"cannot listen on 127.0.0.1:{port} (server.listen): Address already in use"


@pytest.mark.skipif(not daemon_serves_http(), reason="engine/daemon.py does not serve HTTP yet")
def test_the_daemon_exits_1_when_its_address_is_in_use(tmp_path, target, receiver):
    port = free_port()
    cfg = config(target, receiver, server={"listen": f"127.0.0.1:{port}"})
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(cfg))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_cli("run", cwd=tmp_path, env=ENV, timeout=60)
    assert result.code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port} (server.listen): Address already in use" in (
        result.output
    )
    assert "Traceback" not in result.output


# -- helpers -------------------------------------------------------------------------------


class _servers:
    def __enter__(self):
        self.target, self.receiver = Target(), Recorder()
        return self.target, self.receiver

    def __exit__(self, *exc):
        self.target.close()
        self.receiver.close()
