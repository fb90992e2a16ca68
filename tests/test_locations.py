"""Checks run from several locations (DESIGN.md ► Locations), with three real replicas.

Each replica stands in its own location (`run --location`) and sees the target through
its own path (`${VIEW}` in the shared monitor.yaml), so a test can make one location see
an outage the others do not: one location down → no alert; two down → one firing notice
naming both; recovery → one resolved notice; a location whose only replica is killed is
unknown, never down.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml

from tests.daemon_harness import Daemon, Recorder
from tests.test_replicas import shared_state, stop_all  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow

LOCATIONS = ["eu", "us", "ap"]


class Views:
    """A target that answers each location's path (`/eu`, `/us`...) with its own status."""

    def __init__(self):
        self.status = dict.fromkeys([*LOCATIONS, "plain"], 200)
        self.hits: Counter[str] = Counter()
        views = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                where = self.path.strip("/")
                views.hits[where] += 1
                status = views.status.get(where, 404)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def views():
    server = Views()
    yield server
    server.close()


def config(views: Views, receiver: Recorder, state: dict) -> dict:
    return {
        "version": 1,
        "engine": {"workers": 0},
        "server": {"listen": "127.0.0.1:0"},
        "state": state,
        "checks": {
            "api": {
                "probe": "http",
                "url": views.url + "/${VIEW:-nowhere}",
                "schedule": {"every": "1s"},
                "timeout": "2s",
                "failure_threshold": 2,
                "thresholds": [{"metric": "response_time", "above": "30s"}],
                "locations": {"from": LOCATIONS, "quorum": 2},
            },
            # an ordinary check beside it is split over all replicas, wherever they stand
            "plain": {"probe": "http", "url": views.url + "/plain", "schedule": {"every": "1s"}},
        },
        "notifiers": {
            "hook": {
                "type": "webhook",
                "url": f"{receiver.url}/hook",
                "retry_initial": "300ms",
                "retry_max": "1s",
            }
        },
        "routes": [
            {
                "match": {"check": "api"},
                "notify": ["hook"],
                "group_wait": "0s",
                "group_interval": "1s",
            }
        ],
    }


def start(tmp_path, location: str) -> Daemon:
    return Daemon(
        tmp_path,
        env={"VIEW": location},
        args=("--replica", f"{location}-1", "--location", location),
    ).start(wait=False)


def alerts(receiver: Recorder) -> list[dict]:
    return [a for body in receiver.json("/hook") for a in body["alerts"]]


def status(tmp_path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "watchkeeper.engine", "status", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def api_row(data: dict) -> dict:
    return next(c for c in data["checks"] if c["check"] == "api")


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_of_three_locations_fire_one_notice_naming_them(
    tmp_path,
    views,
    receiver,
    shared_state,  # noqa: F811
):
    (tmp_path / "monitor.yaml").write_text(
        yaml.safe_dump(config(views, receiver, shared_state), sort_keys=False)
    )
    daemons = {loc: start(tmp_path, loc) for loc in LOCATIONS}
    try:
        for daemon in daemons.values():
            daemon.wait_log("daemon started", timeout=40)
        wait_until(
            lambda: [s["status"] for s in api_row(status(tmp_path))["locations"]] == ["up"] * 3,
            20,
            "every location to see api up",
        )
        # each replica exports its own location's run, labelled with the location
        for loc, daemon in daemons.items():
            url = re.search(r"HTTP server listening url=(\S+)", daemon.log).group(1)
            body = httpx.get(url + "/metrics", timeout=10).text
            assert (
                f'watchkeeper_check_up{{check="api",environment="",location="{loc}"}} 1.0' in body
            )
            others = [o for o in LOCATIONS if o != loc]
            assert not any(f'location="{o}"' in body for o in others)

        # each location probes through its own view, once per second, on its own replica
        before = Counter(views.hits)
        time.sleep(3)
        ran = {loc: views.hits[loc] - before[loc] for loc in LOCATIONS}
        assert all(2 <= n <= 5 for n in ran.values()), ran

        # one location loses the target: nobody is woken
        views.status["eu"] = 500
        wait_until(
            lambda: api_row(status(tmp_path))["locations"][0]["status"] == "down",
            15,
            "eu to see api down",
        )
        time.sleep(3)
        assert alerts(receiver) == []
        row = api_row(status(tmp_path))
        assert row["status"] == "up"

        # a second one does: one firing notice naming both, and the one still up
        views.status["us"] = 500
        receiver.wait_for(1, "/hook", timeout=20)
        time.sleep(3)
        sent = alerts(receiver)
        assert [a["status"] for a in sent] == ["firing"]
        assert sent[0]["locations"] == {
            "down": ["eu", "us"],
            "up": ["ap"],
            "unknown": [],
            "quorum": 2,
        }
        assert sent[0]["summary"] == "api is down in eu, us (2 of 3, quorum 2): HTTP 500 (critical)"
        assert "up in ap" in sent[0]["detail"]

        # recovery: one resolved notice
        views.status["eu"] = views.status["us"] = 200
        receiver.wait_for(2, "/hook", timeout=20)
        time.sleep(3)
        sent = alerts(receiver)
        assert [a["status"] for a in sent] == ["firing", "resolved"]
        # resolved as soon as fewer than the quorum see it down (one may still lag)
        assert len(sent[1]["locations"]["down"]) < 2
        assert sent[1]["id"] == sent[0]["id"]

        # the only replica in ap dies: ap is unknown, never down, and one more location
        # down is still one short of the quorum
        daemons["ap"].signal(signal.SIGKILL)
        daemons["ap"].proc.wait(10)
        wait_until(
            lambda: api_row(status(tmp_path))["locations"][2]["status"] == "unknown",
            20,
            "ap to be unknown",
        )
        seen = api_row(status(tmp_path))["locations"][2]
        assert seen["why"] == "no replica in ap"
        views.status["eu"] = 500
        wait_until(
            lambda: api_row(status(tmp_path))["locations"][0]["status"] == "down",
            15,
            "eu to see api down again",
        )
        time.sleep(4)
        assert len(alerts(receiver)) == 2
        survivors = [d for loc, d in daemons.items() if loc != "ap"]
        assert any("no replica in ap" in d.log for d in survivors)
    finally:
        stop_all(list(daemons.values()))
