"""A located check across a reload (SIGHUP): its runs per location keep their verdicts out of
the alert book, so after a reload that changes the check the alert still comes from the
check's judge, once, naming its locations, and resolves once.
"""

from __future__ import annotations

import signal
import time

import pytest
import yaml

from tests.daemon_harness import Daemon, Recorder, Target

pytestmark = pytest.mark.slow


def config(target: Target, receiver: Recorder, timeout: str) -> dict:
    return {
        "version": 1,
        "engine": {"workers": 0},
        "server": {"listen": "127.0.0.1:0"},
        "state": {"type": "sqlite", "path": "state.db"},
        "checks": {
            "api": {
                "probe": "http",
                "url": f"{target.url}/health",
                "schedule": {"every": "1s"},
                "timeout": timeout,
                "locations": {"from": ["eu", "us"], "quorum": 1},
            },
        },
        "notifiers": {"hook": {"type": "webhook", "url": f"{receiver.url}/hook"}},
        "routes": [{"match": {}, "notify": ["hook"], "group_wait": "0s", "group_interval": "1s"}],
    }


def alerts(receiver: Recorder) -> list[dict]:
    return [a for body in receiver.json("/hook") for a in body["alerts"]]


def test_a_reload_that_changes_a_located_check_keeps_one_alert(tmp_path, target, receiver):
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(config(target, receiver, "2s")))
    daemon = Daemon(tmp_path, args=("--location", "eu")).start()
    try:
        time.sleep(2)
        # the check itself changes: its runs per location are rebuilt
        path.write_text(yaml.safe_dump(config(target, receiver, "3s")))
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("config reloaded", timeout=20)
        target.status = 503
        receiver.wait_for(1, "/hook", timeout=20)
        time.sleep(2)
        target.status = 200
        receiver.wait_for(2, "/hook", timeout=20)
        time.sleep(2)
    finally:
        daemon.stop()
    sent = alerts(receiver)
    assert [(a["check"], a["status"]) for a in sent] == [("api", "firing"), ("api", "resolved")]
    assert sent[0]["id"] == sent[1]["id"]
    assert sent[0]["locations"] == {"down": ["eu"], "up": [], "unknown": ["us"], "quorum": 1}
