"""`GET /metrics` at size: what each check adds by default and with `metrics_per_check: full`,
the per-check series following results, reloads and alerts, gzip for Prometheus, and a
scrape that lets the daemon's other work run while it is assembled."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, wait_until

pytestmark = pytest.mark.slow

CHECKS = 200


def checks(count: int) -> dict:
    # a day apart: the test feeds their results itself
    return {
        f"svc-{i}": {
            "probe": "tcp",
            "host": "127.0.0.1",
            "port": 9,
            "schedule": {"every": "1d"},
            "thresholds": [{"metric": "connect_time", "above": "1s", "severity": "warning"}],
        }
        for i in range(count)
    }


def config(count: int = CHECKS, **server) -> dict:
    return {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "engine": {"workers": 0},
        "server": {"admin_token": "${ADMIN_TOKEN}", **server},
        "checks": checks(count),
    }


@pytest.fixture
def live(tmp_path):
    with LiveDaemon(tmp_path, config(), {"ADMIN_TOKEN": ADMIN_TOKEN}) as daemon:
        yield daemon


def feed(live, results: dict[str, tuple[bool, float, float]]) -> None:
    """Take results {check: (ok, duration, connect_time)} through the daemon's runtime."""
    from watchkeeper.engine.run.probe import Result

    async def ingest() -> None:
        runtime = live.daemon.runtime
        for key, (ok, duration, connect) in results.items():
            result = Result(
                ok=ok, duration=duration, message="fed", metrics={"connect_time": connect}
            )
            await runtime.ingest(runtime.instances[key], result)

    live.call(ingest)


def feed_all(live, duration: float = 0.02) -> None:
    feed(live, {f"svc-{i}": (True, duration, 0.01) for i in range(CHECKS)})


def scrape(live, **headers) -> httpx.Response:
    response = httpx.get(live.url + "/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return response


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def per_check_bytes(text: str) -> int:
    """Bytes of the sample lines that name one check (headers and global series aside)."""
    return sum(
        len(line) + 1
        for line in text.splitlines()
        if not line.startswith("#") and 'check="svc-' in line
    )


def series_of(found, check: str) -> set[str]:
    return {name for name, labels in found if ("check", check) in labels}


def reload(live, new_config: dict) -> None:
    live.write(new_config)
    response = live.post("/api/reload")
    assert response.status_code == 200, response.text
    # the file watcher may have taken the change first: wait until it is in force
    wanted = new_config["server"].get("metrics_per_check", "basic")
    wait_until(
        lambda: (
            live.daemon.config.server.metrics_per_check == wanted
            and live.daemon.runtime.instances.keys() == new_config["checks"].keys()
        ),
        10,
        what="the reload",
    )


def test_default_series_per_check_and_their_size(live):
    before = scrape(live).text
    assert per_check_bytes(before) == 0  # nothing before a first result
    assert "# TYPE watchkeeper_check_up gauge" in before

    feed_all(live)
    text = scrape(live).text
    found = samples(text)
    assert series_of(found, "svc-7") == {
        "watchkeeper_check_up",
        "watchkeeper_check_state",
        "watchkeeper_check_last_duration_seconds",
    }
    size = per_check_bytes(text) / CHECKS
    assert 120 <= size <= 300, size
    # the histograms over all checks are there by default
    assert found[("watchkeeper_probe_duration_seconds_count", (("probe", "tcp"),))] == CHECKS
    assert found[("watchkeeper_probe_results_total", (("ok", "true"), ("probe", "tcp")))] == CHECKS
    assert not [name for name, _ in found if name.startswith("watchkeeper_check_duration")]

    # per-check histograms and results by outcome, once asked for
    reload(live, config(metrics_per_check="full"))
    feed_all(live, duration=0.3)
    full = scrape(live).text
    found = samples(full)
    assert series_of(found, "svc-7") == {
        "watchkeeper_check_up",
        "watchkeeper_check_state",
        "watchkeeper_check_last_duration_seconds",
        "watchkeeper_check_duration_seconds_bucket",
        "watchkeeper_check_duration_seconds_count",
        "watchkeeper_check_duration_seconds_sum",
        "watchkeeper_check_results_total",
    }
    histogram = (("check", "svc-7"), ("environment", ""), ("probe", "tcp"))
    assert found[("watchkeeper_check_duration_seconds_count", histogram)] == 1
    assert found[("watchkeeper_check_duration_seconds_sum", histogram)] == pytest.approx(0.3)
    for le, count in (("0.25", 0), ("0.5", 1), ("+Inf", 1)):
        bucket = tuple(sorted((*histogram, ("le", le))))
        assert found[("watchkeeper_check_duration_seconds_bucket", bucket)] == count
    labels = (("check", "svc-7"), ("environment", ""))
    assert found[("watchkeeper_check_results_total", (*labels, ("ok", "true")))] == 1
    assert found[("watchkeeper_check_results_total", (*labels, ("ok", "false")))] == 0
    assert per_check_bytes(full) / CHECKS > 5 * size

    # and gone again when switched off
    reload(live, config())
    assert per_check_bytes(scrape(live).text) / CHECKS <= 300


def test_per_check_series_follow_results_alerts_and_reloads(live):
    labels = (("check", "svc-1"), ("environment", ""))

    def state(found) -> str | None:
        named = [
            dict(lbl)["state"]
            for name, lbl in found
            if name == "watchkeeper_check_state" and dict(lbl)["check"] == "svc-1"
        ]
        assert len(named) <= 1, named  # one series, naming the current state
        return named[0] if named else None

    feed(live, {"svc-1": (True, 0.05, 0.01)})
    found = samples(scrape(live).text)
    assert found[("watchkeeper_check_up", labels)] == 1
    assert found[("watchkeeper_check_last_duration_seconds", labels)] == pytest.approx(0.05)
    assert state(found) == "up"

    feed(live, {"svc-1": (False, 4.5, 0.01)})  # failure_threshold 1: down at once
    found = samples(scrape(live).text)
    assert found[("watchkeeper_check_up", labels)] == 0
    assert found[("watchkeeper_check_last_duration_seconds", labels)] == pytest.approx(4.5)
    assert state(found) == "down"

    feed(live, {"svc-1": (True, 0.07, 2.0)})  # up again, and slow: the threshold fires
    found = samples(scrape(live).text)
    assert found[("watchkeeper_check_up", labels)] == 1
    assert state(found) == "degraded"

    feed(live, {"svc-1": (True, 0.06, 0.01)})
    found = samples(scrape(live).text)
    assert state(found) == "up"
    assert found[("watchkeeper_check_last_duration_seconds", labels)] == pytest.approx(0.06)

    # a check removed by a reload leaves the exposition; the others stay as they were
    feed(live, {"svc-2": (True, 0.01, 0.01)})
    smaller = config()
    del smaller["checks"]["svc-1"]
    reload(live, smaller)
    found = samples(scrape(live).text)
    assert series_of(found, "svc-1") == set()
    assert found[("watchkeeper_check_up", (("check", "svc-2"), ("environment", "")))] == 1


def test_gzip_for_a_scraper_that_asks(live):
    feed_all(live)
    plain = scrape(live, **{"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    packed = httpx.get(live.url + "/metrics", headers={"accept-encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["content-type"] == plain.headers["content-type"]
    assert packed.num_bytes_downloaded < len(plain.content) / 4
    assert packed.text.count("watchkeeper_check_up{") == CHECKS
    with httpx.stream("GET", live.url + "/metrics", headers={"accept-encoding": "gzip"}) as raw:
        body = b"".join(raw.iter_raw())
    assert gzip.decompress(body).decode().count("watchkeeper_check_up{") == CHECKS


def test_token_mode_still_guards_the_metrics(tmp_path):
    with LiveDaemon(tmp_path, config(10, metrics="token"), {"ADMIN_TOKEN": ADMIN_TOKEN}) as live:
        assert live.get("/metrics", token=None).status_code == 401
        assert (
            live.get("/metrics", token=None, headers={"accept-encoding": "gzip"}).status_code == 401
        )
        assert live.get("/metrics").status_code == 200


def test_a_scrape_of_many_checks_lets_other_work_run(tmp_path):
    """Assembling 5,000 instances' series yields to the event loop in between (a task that
    only counts its turns gets several during one scrape), and a second scrape renders
    only the instances with something new."""
    count = 5000
    with LiveDaemon(tmp_path, config(count), {"ADMIN_TOKEN": ADMIN_TOKEN}) as live:
        feed(live, {f"svc-{i}": (i % 9 != 0, 0.01, 0.01) for i in range(count)})
        from watchkeeper.engine.api.metrics import Metrics

        metrics = Metrics(live.daemon)
        rendered = []
        render = metrics.checks._render
        metrics.checks._render = lambda instance, *rest: (
            rendered.append(instance.key) or render(instance, *rest)
        )

        async def scrape_counting_turns() -> tuple[int, bytes]:
            import anyio.lowlevel

            turns = 0
            done = anyio.Event()

            async def count_turns() -> None:
                nonlocal turns
                while not done.is_set():
                    turns += 1
                    await anyio.lowlevel.checkpoint()

            async with anyio.create_task_group() as tg:
                tg.start_soon(count_turns)
                await anyio.lowlevel.checkpoint()
                start = turns
                body = await metrics.exposition()
                done.set()
            return turns - start, body

        turns, body = live.call(scrape_counting_turns)
        assert body.count(b"watchkeeper_check_up{") == count
        assert len(rendered) == count
        assert turns >= 2, turns

        rendered.clear()
        feed(live, {"svc-3": (True, 0.5, 0.01)})
        _, again = live.call(scrape_counting_turns)
        assert rendered == ["svc-3"]
        assert again.count(b"watchkeeper_check_up{") == count
        assert (
            b'watchkeeper_check_last_duration_seconds{check="svc-3",environment=""} 0.5\n' in again
        )


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed")
@pytest.mark.parametrize("per_check", ["basic", "full"])
def test_promtool_accepts_both_kinds(tmp_path, per_check):
    with LiveDaemon(
        tmp_path, config(20, metrics_per_check=per_check), {"ADMIN_TOKEN": ADMIN_TOKEN}
    ) as live:
        feed(live, {f"svc-{i}": (i % 3 != 0, 0.02 * i, 0.01) for i in range(20)})
        text = scrape(live).text
        checked = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
