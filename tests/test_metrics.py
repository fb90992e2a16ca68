"""`GET /metrics`: what Prometheus sees after a known sequence of results and deliveries."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, wait_until

pytestmark = pytest.mark.slow


def scrape(live) -> dict[tuple[str, tuple], float]:
    """Return {(sample name, sorted labels): value} of one scrape."""
    response = httpx.get(live.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def live(tmp_path, receiver):
    config = {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "engine": {"workers": 0},
        "environments": {"prod": {}},
        # per-check histograms and results by outcome are asked for (the default has up,
        # state and last duration; test_metrics_scrape.py covers both)
        "server": {"admin_token": "${ADMIN_TOKEN}", "metrics_per_check": "full"},
        "checks": {
            # a day apart: the test feeds their results itself
            "api": {
                "probe": "tcp",
                "host": "127.0.0.1",
                "port": 9,
                "environments": ["prod"],
                "schedule": {"every": "1d"},
            },
            "db": {
                "probe": "tcp",
                "host": "127.0.0.1",
                "port": 9,
                "schedule": {"every": "1d"},
                "severity": "high",
            },
        },
        "notifiers": {
            "hook": {
                "type": "webhook",
                "url": f"{receiver.url}/hook",
                "retry_initial": "100ms",
                "retry_max": "200ms",
            }
        },
        "routes": [{"match": {}, "notify": ["hook"], "group_wait": "0s"}],
    }
    with LiveDaemon(tmp_path, config, {"ADMIN_TOKEN": ADMIN_TOKEN}) as daemon:
        yield daemon


def feed(live, key: str, *results: tuple[bool, float]) -> None:
    """Take results through the daemon's runtime, as the scheduler would."""
    from watchkeeper.engine.run.probe import Result

    async def ingest() -> None:
        instance = live.daemon.runtime.instances[key]
        for ok, duration in results:
            await live.daemon.runtime.ingest(
                instance, Result(ok=ok, duration=duration, message="fed by the test")
            )

    live.call(ingest)


def test_metrics_after_a_known_sequence(live, receiver):
    before = scrape(live)
    assert value(before, "watchkeeper_info", version=_version()) == 1
    assert value(before, "watchkeeper_check_up", check="api", environment="prod") is None
    assert value(before, "watchkeeper_store_degraded") == 0

    receiver.responses = [500]  # the first delivery fails, its retry succeeds
    feed(live, "api@prod", (True, 0.3), (True, 1.5), (False, 4.0))
    feed(live, "db", (True, 0.004))
    wait_until(lambda: receiver.json("/hook"), 10, what="the alert's notice")
    wait_until(lambda: value(scrape(live), "watchkeeper_outbox_depth") == 0, 10, what="drain")
    samples = scrape(live)

    up = {"check": "api", "environment": "prod"}
    assert value(samples, "watchkeeper_check_up", **up) == 0
    assert value(samples, "watchkeeper_check_up", check="db", environment="") == 1
    histogram = {**up, "probe": "tcp"}
    assert value(samples, "watchkeeper_check_duration_seconds_count", **histogram) == 3
    assert value(samples, "watchkeeper_check_duration_seconds_sum", **histogram) == pytest.approx(
        5.8
    )
    buckets = {
        le: value(samples, "watchkeeper_check_duration_seconds_bucket", **histogram, le=le)
        for le in ("0.25", "0.5", "2.0", "5.0", "+Inf")
    }
    assert buckets == {"0.25": 0, "0.5": 1, "2.0": 2, "5.0": 3, "+Inf": 3}
    assert value(samples, "watchkeeper_check_results_total", **up, ok="true") == 2
    assert value(samples, "watchkeeper_check_results_total", **up, ok="false") == 1
    assert value(samples, "watchkeeper_alerts", severity="critical", status="firing") == 1
    assert value(samples, "watchkeeper_alerts", severity="high", status="firing") == 0
    assert value(samples, "watchkeeper_notifications_sent_total", notifier="hook") == 1
    assert value(samples, "watchkeeper_notifications_failed_total") == 1
    assert value(samples, "watchkeeper_notifications_given_up_total", notifier="hook") == 0
    assert value(samples, "watchkeeper_outbox_depth") == 0
    assert value(samples, "watchkeeper_checks_skipped_total") == 0
    for quantile in ("0.5", "0.99"):
        assert value(samples, "watchkeeper_scheduler_lateness_seconds", quantile=quantile) >= 0
    assert value(samples, "watchkeeper_scheduler_lateness_max_seconds") >= 0
    assert value(samples, "watchkeeper_scheduler_lateness_seconds_count") >= 0
    assert value(samples, "process_resident_memory_bytes") > 0
    assert not [name for name, _ in samples if name.endswith("_created")]

    feed(live, "api@prod", (True, 0.1))
    samples = scrape(live)
    assert value(samples, "watchkeeper_check_up", **up) == 1
    assert value(samples, "watchkeeper_check_duration_seconds_count", **histogram) == 4
    assert value(samples, "watchkeeper_alerts", severity="critical", status="firing") == 0


def test_backup_age_and_size_from_the_catalog(live):
    now = time.time()
    catalog = {
        "b1": {
            "id": "b1",
            "job": "database",
            "status": "ok",
            "finished_at": now - 7200,
            "size_bytes": 1000,
        },
        "b2": {
            "id": "b2",
            "job": "database",
            "status": "ok",
            "finished_at": now - 3600,
            "size_bytes": 2048,
        },
        "b3": {
            "id": "b3",
            "job": "database",
            "status": "failed",
            "finished_at": now - 60,
            "size_bytes": 0,
        },
        "b4": {"id": "b4", "job": "export", "status": "failed", "finished_at": now - 60},
    }

    async def put() -> None:
        await live.daemon.store.put("backups", catalog)

    live.call(put)
    samples = scrape(live)
    age = value(samples, "watchkeeper_backup_age_seconds", job="database")
    assert 3600 <= age < 3700  # the latest good one, not the failed one after it
    assert value(samples, "watchkeeper_backup_size_bytes", job="database") == 2048
    assert value(samples, "watchkeeper_backup_age_seconds", job="export") is None
    status = live.get("/api/status").json()["backups"]["jobs"]
    assert status["database"]["last_good"]["id"] == "b2"
    assert status["database"]["last"]["status"] == "failed"
    assert status["export"]["last_good"] is None


def test_store_degraded(live):
    feed(live, "db", (True, 0.01))
    with live.store_refusing_writes("disk full"):
        assert value(scrape(live), "watchkeeper_store_degraded") == 1
    assert value(scrape(live), "watchkeeper_store_degraded") == 0


def _version() -> str:
    from watchkeeper.engine.api.views import version

    return version()


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed")
def test_promtool_accepts_the_exposition(live, receiver):
    """Prometheus's own linter finds nothing wrong with what a scrape returns."""
    feed(live, "api@prod", (False, 0.2), (True, 0.1))
    text = httpx.get(live.url + "/metrics").text
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
