"""One decision of a check's status (engine/api/check_rows.py) behind /health, /api/status
and the badges: they agree for every kind of check, and a badge reads its own check only.

A real daemon probes real HTTP servers and serves its API on a real port.
"""

from __future__ import annotations

import re

import httpx

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, wait_until
from tests.daemon_harness import Target
from watchkeeper.engine.api import check_rows, views

ENV = {"ADMIN_TOKEN": ADMIN_TOKEN, "BEAT_TOKEN": "b3at-T0ken-for-check-rows-7d1e"}


def http(url: str, every: str = "1s", **more: object) -> dict:
    return {"probe": "http", "url": url, "schedule": {"every": every}, "timeout": "5s", **more}


def beat() -> dict:
    """A heartbeat nobody sends: `unknown` for the whole test."""
    return {"probe": "heartbeat", "expect_every": {"every": "1h"}, "token": "${BEAT_TOKEN}"}


def config(checks: dict) -> dict:
    return {
        "version": 1,
        "engine": {"workers": 0},
        "state": {"type": "sqlite", "path": "state.db"},
        "environments": {"prod": {}, "staging": {}},
        "server": {"admin_token": "${ADMIN_TOKEN}"},
        "checks": checks,
    }


def statuses(body: dict) -> dict[str, str]:
    return {
        row["check"] + (f"@{row['environment']}" if row["environment"] else ""): row["status"]
        for row in body["checks"]
    }


def badge(live: LiveDaemon, name: str) -> tuple[int, str]:
    response = httpx.get(f"{live.url}/badge/{name}.svg", timeout=15)
    shown = re.search(r'aria-label="[^"]*: ([a-z ]+)"', response.text)
    assert shown, response.text
    return response.status_code, shown.group(1)


RANK = {"down": 0, "degraded": 1, "unknown": 2, "up": 3}


def worst(listed: dict[str, str], check: str) -> str:
    mine = [s for key, s in listed.items() if key.split("@")[0] == check]
    return min(mine, key=RANK.__getitem__)


def test_health_status_and_badges_agree_for_every_kind_of_check(tmp_path, target):
    failing = Target()
    failing.status = 500
    try:
        checks = {
            "web": http(f"{target.url}/web", environments=["prod", "staging"]),
            "api": http(f"{failing.url}/api", failure_threshold=1),
            # a threshold alert on a check whose probe succeeds: degraded
            "slow": http(
                f"{target.url}/slow",
                thresholds=[{"metric": "status_code", "above": 100, "severity": "warning"}],
            ),
            "job": beat(),
            "cron": beat(),
            "front": {"probe": "composite", "of": ["web", "api"], "failing": {"at_least": 1}},
            "pair": {"probe": "composite", "of": ["web", "slow"], "failing": {"at_least": 2}},
            "all": {"probe": "composite", "of": ["front", "pair"], "failing": {"at_least": 2}},
            "waiting": {"probe": "composite", "of": ["job", "cron"]},
            # run from locations no replica stands in: its runs show under it, not as rows
            "edge": http(f"{target.url}/edge", locations={"from": ["eu", "us"], "quorum": 1}),
        }
        with LiveDaemon(tmp_path, config(checks), ENV) as live:
            live.wait_status("api", "down")
            live.wait_status("slow", "degraded")
            live.wait_status("web@prod", "up")
            live.wait_status("web@staging", "up")

            def agreeing() -> tuple[dict, dict] | None:
                health = live.get("/health", token=None).json()
                status = live.get("/api/status").json()
                return (health, status) if statuses(health) == statuses(status) else None

            health, status = wait_until(agreeing, 10, 0.2, what="/health and /api/status")
            shown = statuses(status)
            assert shown["api"] == shown["front"] == "down"
            assert shown["slow"] == "degraded"
            assert shown["web@prod"] == shown["web@staging"] == shown["pair"] == "up"
            assert shown["job"] == shown["cron"] == shown["waiting"] == "unknown"
            assert "all" in shown
            assert "edge" in shown
            assert not any("/" in key for key in shown)  # no location run has a row
            assert [(r["check"], r["environment"]) for r in health["checks"]] == [
                (r["check"], r["environment"]) for r in status["checks"]
            ]
            assert health["status"] == status["status"] == "degraded"

            for key, state in shown.items():
                assert badge(live, key) == (200, state), key
            for check in checks:
                assert badge(live, check) == (200, worst(shown, check)), check
            assert badge(live, "web") == (200, "up")
            assert badge(live, "nope") == (404, "not found")
            assert badge(live, "web@nope") == (404, "not found")
            assert badge(live, "edge@prod") == (404, "not found")
    finally:
        failing.close()


def test_a_badge_at_thousands_of_checks_reads_its_own_check_only(tmp_path, target, monkeypatch):
    count = 3000
    checks = {f"c{i:04}": beat() for i in range(count)}
    checks["web"] = http(f"{target.url}/web", environments=["prod", "staging"])
    checks["front"] = {"probe": "composite", "of": ["web", "c0007"]}
    full_lists = []
    real_checks = views.checks

    async def counted(daemon):
        full_lists.append(1)
        return await real_checks(daemon)

    decided: list[str] = []
    real_status = check_rows.LocalRuns.status

    def counted_status(self, key):
        decided.append(key)
        return real_status(self, key)

    monkeypatch.setattr(views, "checks", counted)
    monkeypatch.setattr(check_rows.LocalRuns, "status", counted_status)
    with LiveDaemon(tmp_path, config(checks), ENV) as live:
        live.wait_status("web@prod", "up")
        live.wait_status("web@staging", "up")
        assert live.get("/api/status").status_code == 200
        assert len(full_lists) == 1  # the wrapper sees the full list when it is made
        full_lists.clear()
        for name, shown, reads in (
            ("web", "up", 2),
            ("web@prod", "up", 1),
            ("c1234", "unknown", 1),
            ("front", "up", 4),  # itself, web@prod, web@staging, c0007
        ):
            decided.clear()
            assert badge(live, name) == (200, shown), name
            assert sorted(decided) == sorted(set(decided)), decided
            assert len(decided) == reads, (name, decided)
        assert full_lists == []
