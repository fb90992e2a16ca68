"""`POST /api/heartbeat/{check}`: start/ok/fail flows, run ids, max_runtime, tokens, bodies
(DESIGN.md Semantics ► Heartbeats), over real HTTP against a running daemon."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, wait_until

pytestmark = pytest.mark.slow

BEAT_TOKEN = "beat-T0ken-7c1e"
OTHER_TOKEN = "other-T0ken-55aa"
ENV = {"ADMIN_TOKEN": ADMIN_TOKEN, "BEAT_TOKEN": BEAT_TOKEN, "OTHER_TOKEN": OTHER_TOKEN}
CONFIG = {
    "version": 1,
    "state": {"type": "sqlite", "path": "state.db"},
    "engine": {"workers": 0},
    "environments": {"prod": {}, "staging": {}},
    "server": {"admin_token": "${ADMIN_TOKEN}"},
    "checks": {
        "job": {
            "probe": "heartbeat",
            "expect_every": {"every": "1h"},
            "max_runtime": "2s",
            "token": "${BEAT_TOKEN}",
            "flap_threshold": 1000,  # these tests flip it up and down on purpose
            "thresholds": [{"metric": "rows", "below": 1, "severity": "warning"}],
        },
        "other": {
            "probe": "heartbeat",
            "expect_every": {"every": "1h"},
            "token": "${OTHER_TOKEN}",
            "flap_threshold": 1000,
        },
        "multi": {
            "probe": "heartbeat",
            "expect_every": {"every": "1h"},
            "environments": ["prod", "staging"],
        },
        "tcp": {"probe": "tcp", "host": "127.0.0.1", "port": 9, "schedule": {"every": "1h"}},
    },
}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with LiveDaemon(tmp_path_factory.mktemp("beats"), CONFIG, ENV) as daemon:
        yield daemon


def beat(live, path: str, token: str | None = BEAT_TOKEN, **kwargs) -> httpx.Response:
    return live.post(f"/api/heartbeat/{path}", token=token, **kwargs)


def latest(live, key: str) -> dict:
    return live.daemon.runtime.latest.get(key) or {}


def test_tokens(live):
    assert beat(live, "job").status_code == 200
    assert beat(live, "job", token=ADMIN_TOKEN).status_code == 200
    assert beat(live, f"job?token={BEAT_TOKEN}", token=None).status_code == 200
    assert beat(live, f"job?token={ADMIN_TOKEN}", token=None).status_code == 200
    for wrong in (None, "nope", OTHER_TOKEN, BEAT_TOKEN + "x"):
        response = beat(live, "job", token=wrong)
        assert response.status_code == 401, wrong
        assert response.json() == {"error": "unauthorized"}
    assert beat(live, f"job?token={OTHER_TOKEN}", token=None).status_code == 401
    # a check without a token of its own takes the admin token only
    assert beat(live, "multi@prod", token=BEAT_TOKEN).status_code == 401
    assert beat(live, "multi@prod", token=ADMIN_TOKEN).status_code == 200


def test_unknown_and_other_checks_are_404(live):
    assert beat(live, "nope").status_code == 404
    assert beat(live, "tcp", token=ADMIN_TOKEN).status_code == 404  # not a heartbeat
    assert beat(live, "multi@nope", token=ADMIN_TOKEN).status_code == 404
    ambiguous = beat(live, "multi", token=ADMIN_TOKEN)
    assert ambiguous.status_code == 400
    assert "check@environment" in ambiguous.json()["error"]


def test_ok_fail_and_exit_codes(live):
    response = beat(live, "job?status=ok", json={"metrics": {"rows": 12}})
    assert response.json() == {"ok": True, "check": "job", "environment": None, "status": "ok"}
    live.wait_status("job", "up")
    assert latest(live, "job")["metrics"]["rows"] == 12
    failed = beat(live, "job?status=fail", content=b"step 1\nstep 2\npg_dump: connection refused")
    assert failed.json()["status"] == "fail"
    live.wait_status("job", "down")
    assert latest(live, "job")["message"].endswith("pg_dump: connection refused")
    beat(live, "job", json={"metrics": {"rows": 3}})
    live.wait_status("job", "up")
    code = beat(live, "job?exit=3", json={"metrics": {"rows": 3}})
    assert code.json()["status"] == "fail"
    live.wait_status("job", "down")
    assert "exit code 3" in latest(live, "job")["message"]
    assert beat(live, "job?exit=0", json={"metrics": {"rows": 3}}).json()["status"] == "ok"
    live.wait_status("job", "up")


def test_path_signals_like_healthchecks(live):
    assert beat(live, "other/start?rid=p1", token=OTHER_TOKEN).json()["status"] == "start"
    assert beat(live, "other/ok?rid=p1", token=OTHER_TOKEN).json()["status"] == "ok"
    live.wait_status("other", "up")
    assert beat(live, "other/fail", token=OTHER_TOKEN).json()["status"] == "fail"
    live.wait_status("other", "down")
    assert beat(live, "other/0", token=OTHER_TOKEN).json()["status"] == "ok"
    live.wait_status("other", "up")
    assert beat(live, "other/7", token=OTHER_TOKEN).json()["status"] == "fail"
    live.wait_status("other", "down")
    assert beat(live, "other/bogus", token=OTHER_TOKEN).status_code == 404
    assert beat(live, "other/0", token=OTHER_TOKEN).status_code == 200


def test_run_ids_pair_overlapping_runs(live):
    assert beat(live, "job?status=start&rid=a").status_code == 200
    time.sleep(0.6)
    assert beat(live, "job?status=start&rid=b").status_code == 200
    time.sleep(0.3)
    beat(live, "job?rid=b", json={"metrics": {"rows": 1}})
    wait_until(lambda: "runtime" in latest(live, "job").get("metrics", {}), what="b's end")
    runtime_b = latest(live, "job")["metrics"]["runtime"]
    assert 0.2 < runtime_b < 0.9
    beat(live, "job?rid=a", json={"metrics": {"rows": 1}})
    wait_until(lambda: latest(live, "job")["metrics"].get("runtime", 0) > 0.8, what="a's end")
    assert latest(live, "job")["metrics"]["runtime"] < 2.0
    live.wait_status("job", "up")


def test_a_run_that_outlives_max_runtime_is_down(live):
    beat(live, "job", json={"metrics": {"rows": 1}})
    live.wait_status("job", "up")
    assert beat(live, "job?status=start&rid=slow").status_code == 200
    time.sleep(1.0)
    assert live.status_of("job") == "up"  # still within max_runtime (2s)
    live.wait_status("job", "down", timeout=5)
    assert "did not finish within 2s" in latest(live, "job")["message"]
    beat(live, "job?rid=slow", json={"metrics": {"rows": 1}})
    live.wait_status("job", "up")


def test_metrics_of_a_beat_are_judged_by_its_thresholds(live):
    beat(live, "job", json={"metrics": {"rows": 0}})
    live.wait_status("job", "degraded")
    alert = next(a for a in live.get("/api/alerts").json() if a["check"] == "job")
    assert alert["rule"] == "rows"
    beat(live, "job", json={"metrics": {"rows": 5}})
    live.wait_status("job", "up")


def test_bodies_and_parameters_are_checked(live):
    assert beat(live, "job?status=done").status_code == 400
    assert beat(live, "job?exit=x").status_code == 400
    assert beat(live, "job?rid=" + "x" * 200).status_code == 400
    bad_json = beat(live, "job", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert beat(live, "job", json={"metrics": {"rows": "many"}}).status_code == 422
    assert beat(live, "job", json={"metrics": {"rows": True}}).status_code == 422
    assert beat(live, "job", json={"metrics": [1]}).status_code == 422
    assert beat(live, "job", json={"log": 5}).status_code == 422
    assert beat(live, "job", content=b"x" * (300 * 1024)).status_code == 413
    beat(live, "job", json={"metrics": {"rows": 1}})


def test_the_log_tail_is_capped_and_kept(live):
    tail = ("line\n" * 5000).encode() + b"the end"
    assert beat(live, "job?status=fail", content=tail).status_code == 200
    live.wait_status("job", "down")
    live.flush()

    async def last_beat():
        rows = await live.daemon.store.read("beats", "job", newest_first=True, limit=1)
        return rows[0].data

    data = live.call(last_beat)
    assert data["status"] == "fail"
    assert data["source"] == "api"
    assert len(data["log"].encode()) <= 10 * 1024
    assert data["log"].endswith("the end")
    ok = beat(live, "job", json={"metrics": {"rows": 1}, "log": "all good"})
    assert ok.status_code == 200, ok.text
    live.wait_status("job", "up")


def test_admin_beats_are_audited_and_check_beats_are_not(live):
    beat(live, "multi@staging", token=ADMIN_TOKEN)
    beat(live, "other", token=OTHER_TOKEN)
    entries = live.get("/api/audit").json()
    checks = [e.get("check") for e in entries if e["action"] == "heartbeat"]
    assert "multi@staging" in checks
    assert "other" not in checks
