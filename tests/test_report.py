"""`watchkeeper report` and `build_report` on fabricated histories with known answers, task
report attachments, and how long a month of a hundred checks takes.
"""

from __future__ import annotations

import math
import os
import time

import anyio
import pytest

from tests.test_rollups import DAY, T0, config_text, fabricate, iso, load, open_store
from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.daemon import Daemon
from watchkeeper.engine.reports.report import build_report, render_text, task_report
from watchkeeper.engine.schedule.clock import FakeClock
from watchkeeper.engine.state.rollups import roll_up

pytestmark = pytest.mark.anyio

HOUR = 3600.0
CHECKS = """\
  cache: {probe: http, url: "http://127.0.0.1:9/cache", schedule: {every: 1m}}
  database: {probe: http, url: "http://127.0.0.1:9/db", schedule: {every: 1m}}
"""


def slos_and_mute(base: float) -> str:
    """The SLOs of the seed's KPIs and a 2-hour mute window over runs 25000..25119 of api."""
    return f"""\
slos:
  api-availability: {{check: api, objective: 99.9%, window: 30d}}
  api-latency: {{check: api, metric: response_time, below: 2s, objective: 97%}}
maintenance:
  - name: upgrade
    start: "{iso(base + 25000 * 60)}"
    end: "{iso(base + 25120 * 60)}"
    checks: [api]
"""


def monitor_yaml(base: float, extra: str = "") -> str:
    return config_text().replace("checks:\n", "checks:\n" + CHECKS) + slos_and_mute(base) + extra


@pytest.fixture
def anyio_backend():
    return "asyncio"


def cache_run(i: int, ok: bool) -> dict:
    """A cache check: hit rate 90..99% by i mod 10, no response_time (latency = duration)."""
    return {
        "ok": True,
        "duration": 0.001 * (1 + i % 5),
        "metrics": {"hit_rate": 0.90 + (i % 10) / 100},
    }


def database_run(i: int, ok: bool) -> dict:
    """A database check: query time 200..500ms by i mod 4."""
    return {"ok": True, "duration": 0.05, "metrics": {"query_time": 0.2 + (i % 4) / 10}}


async def history(store, base: float, count: int) -> None:
    """api fails runs 5000..5009, 20000..20009, 35000..35009 and 25000..25059 (muted)."""
    failing = {*range(5000, 5010), *range(20000, 20010), *range(35000, 35010)}
    await fabricate(store, "api", base, count, failing=failing | set(range(25000, 25060)))
    await fabricate(store, "cache", base, count, make=cache_run)
    await fabricate(store, "database", base, count, make=database_run)


def alert(id: str, check: str, rule: str, fired: float | None, resolved: float | None) -> dict:
    return Alert(
        id=id, check=check, environment=None, rule=rule, severity="high",
        status="resolved" if resolved else ("firing" if fired else "pending"),
        summary=f"{check} {rule}", started_at=fired or T0, updated_at=fired or T0,
        fired_at=fired, resolved_at=resolved,
    ).to_doc()  # fmt: skip


async def incidents(store, base: float, now: float) -> None:
    """Five incidents in the last 30 days (MTTR 900s), one before them, one never fired."""
    at = [base + 5000 * 60, base + 20000 * 60, base + 35000 * 60]
    docs = {f"api{n}": alert(f"api{n}", "api", "up", t, t + 600) for n, t in enumerate(at)}
    docs["db"] = alert("db", "database", "query_time", now - 2 * HOUR, now - 2 * HOUR + 1800)
    docs["cache"] = alert("cache", "cache", "hit_rate", now - HOUR, None)  # still open
    docs["old"] = alert("old", "api", "up", now - 31 * DAY, now - 31 * DAY + 60)
    docs["pending"] = alert("pending", "api", "up", None, None)
    await store.put("alerts", docs)


def assert_month(report: dict, *, exact: bool) -> None:
    """The figures of the fabricated month, worked out by hand (see test_slo.py)."""
    rows = {r["check"]: r for r in report["checks"]}
    api, cache, db = rows["api"], rows["cache"], rows["database"]
    assert (api["runs"], api["failures"], api["muted_runs"]) == (43080, 30, 120)
    assert api["uptime"] == pytest.approx(1 - 30 / 43080)  # 99.930%
    assert api["error_rate"] == pytest.approx(30 / 43080)
    assert api["latency"]["samples"] == 43050
    assert api["latency"]["source"] == "response_time"
    assert api["latency"]["exact"] is exact
    for name, value in {"p50": 0.1, "p95": 0.8, "p99": 2.5}.items():
        if exact:
            assert api["latency"][name] == value
        else:
            assert api["latency"][name] == pytest.approx(value, rel=0.01)
    # 38740 runs at 0.1s, 3448 at 0.8s, 862 at 2.5s
    mean = (38740 * 0.1 + 3448 * 0.8 + 862 * 2.5) / 43050
    assert api["metrics"]["response_time"]["avg"] == pytest.approx(mean)
    assert (api["incidents"], api["mttr"]) == (3, 600)

    assert (cache["runs"], cache["failures"], cache["uptime"]) == (43200, 0, 1.0)
    assert cache["metrics"]["hit_rate"] == {
        "avg": pytest.approx(0.945), "min": 0.90, "max": pytest.approx(0.99), "samples": 43200
    }  # fmt: skip
    assert cache["latency"]["source"] == "duration"
    assert cache["latency"]["p50"] == pytest.approx(0.003, rel=0.01 if not exact else 1e-12)
    assert cache["latency"]["p99"] == pytest.approx(0.005, rel=0.01 if not exact else 1e-12)
    assert (cache["incidents"], cache["mttr"]) == (1, None)
    assert db["metrics"]["query_time"]["avg"] == pytest.approx(0.35)
    assert (db["metrics"]["query_time"]["min"], db["metrics"]["query_time"]["max"]) == (0.2, 0.5)
    assert (db["incidents"], db["mttr"]) == (1, 1800)

    totals = report["totals"]
    assert (totals["runs"], totals["failures"], totals["muted_runs"]) == (129480, 30, 120)
    assert (totals["incidents"], totals["mttr"]) == (5, 900)
    assert [i["id"] for i in report["incidents"]] == ["api0", "api1", "api2", "db", "cache"]

    slos = {s["slo"]: s for s in report["slos"]}
    avail, lat = slos["api-availability"], slos["api-latency"]
    assert (avail["good"], avail["bad"]) == (43050, 30)
    assert avail["budget_remaining"] == pytest.approx(1 - (30 / 43080) / 0.001)
    assert avail["period"] == {"good": 43050, "bad": 30, "total": 43080, "sli": 43050 / 43080}
    assert (lat["good"], lat["bad"]) == (42188, 862)
    assert lat["budget_remaining"] == pytest.approx(1 - (862 / 43050) / 0.03)
    assert lat["status"] == avail["status"] == "ok"


async def test_build_report_of_a_known_month_from_raw_results_and_from_rollups(tmp_path):
    now = T0 + 30 * DAY + 12 * HOUR
    validation = load(tmp_path, monitor_yaml(T0))
    store = open_store(validation)
    await store.open()
    try:
        await history(store, T0, 30 * 1440 + 720 + 10)
        await incidents(store, T0, now)
        raw = await build_report(validation.config, store, since=now - 30 * DAY, until=now)
        assert_month(raw, exact=True)
        assert raw["since"] == "2026-03-01T12:00:00Z"
        assert raw["period_text"] == "30d"

        await roll_up(store, validation.config, now=now)
        rolled = await build_report(validation.config, store, since=now - 30 * DAY, until=now)
        assert_month(rolled, exact=False)
        assert rolled["checks"][1]["check"] == "cache"

        only = await build_report(
            validation.config, store, since=now - 30 * DAY, until=now, checks=["cache"]
        )
        assert [r["check"] for r in only["checks"]] == ["cache"]
        assert only["slos"] == []
        assert [i["id"] for i in only["incidents"]] == ["cache"]
        assert only["totals"]["incidents"] == 1
    finally:
        await store.close()
    text = render_text(raw)
    assert "api: uptime 99.930%, error rate 0.070%, p50 100ms p95 800ms p99 2.50s" in text
    assert "hit_rate avg 94.5%" in text
    assert "SLO api-availability (api): ok" in text


async def test_report_command_on_a_month_written_relative_to_now(tmp_path, cli):
    # runs on the minute from 31 days ago to 10 minutes ahead: whenever the command runs
    # in the next minutes, its 30 days hold exactly 43200 runs of each check
    base = math.floor(time.time() / 60) * 60 - 31 * DAY
    (tmp_path / "monitor.yaml").write_text(monitor_yaml(base))
    validation = load(tmp_path, monitor_yaml(base))
    store = open_store(validation)
    await store.open()
    try:
        await history(store, base, 31 * 1440 + 10)
        await incidents(store, base, time.time())
    finally:
        await store.close()

    result = await anyio.to_thread.run_sync(lambda: cli("report", "--format", "json"))
    assert result.code == 0, result.output
    assert_month(result.json(), exact=True)

    store = open_store(validation)
    await store.open()
    try:
        assert len(await roll_up(store, validation.config, now=time.time())) >= 30
    finally:
        await store.close()
    result = await anyio.to_thread.run_sync(lambda: cli("report", "--format", "json"))
    assert result.code == 0, result.output
    assert_month(result.json(), exact=False)

    result = await anyio.to_thread.run_sync(lambda: cli("report", "--since", "7d"))
    assert result.code == 0, result.output
    assert "Report" in result.stdout
    for header in ("uptime", "error rate", "p95", "MTTR", "hit_rate", "budget left", "status"):
        assert header in result.stdout
    assert "api-availability" in result.stdout

    result = await anyio.to_thread.run_sync(
        lambda: cli("report", "--check", "database", "--format", "json")
    )
    assert [r["check"] for r in result.json()["checks"]] == ["database"]
    result = await anyio.to_thread.run_sync(lambda: cli("report", "--check", "nope"))
    assert result.code == 2
    assert "unknown check(s): nope" in result.stderr
    result = await anyio.to_thread.run_sync(lambda: cli("report", "--since", "soon"))
    assert result.code == 2


async def test_a_task_attaches_its_report(tmp_path):
    now = T0 + 30 * DAY + 12 * HOUR
    extra = """\
notifiers:
  console: {type: log}
tasks:
  weekly-review:
    schedule: {cron: "0 9 * * MON"}
    notify: [console]
    checklist: [Review error trends]
    report: {since: 7d}
  daily: {schedule: {cron: "0 9 * * *"}, notify: [console]}
"""
    validation = load(tmp_path, monitor_yaml(T0, extra))
    daemon = Daemon(validation, clock=FakeClock(now), dry_run=True, printer=lambda _: None)
    await daemon.start()
    try:
        await history(daemon.store, T0, 30 * 1440 + 720 + 10)
        assert await task_report(daemon, "daily") is None
        report = await task_report(daemon, "weekly-review")
        assert report["period_text"] == "7d"
        api = next(r for r in report["checks"] if r["check"] == "api")
        assert (api["runs"], api["failures"]) == (7 * 1440, 10)  # runs 35000..35009
        assert report["text"].startswith("Report 2026-03-24T12:00:00Z to 2026-03-31T12:00:00Z")

        await daemon.alerting.post_task("weekly-review", report=report)
        [delivery] = daemon.outbox.pending.values()
        assert delivery.notice["report"]["text"] == report["text"]
        stored = await daemon.store.get_all("outbox")
        assert stored[delivery.id]["notice"]["report"]["totals"]["runs"] == 3 * 7 * 1440
    finally:
        await daemon.shutdown()


@pytest.mark.slow
async def test_a_month_of_a_hundred_checks_reports_in_seconds(tmp_path):
    """100 checks for 30 days; one run a minute with WATCHKEEPER_BENCH_STEP=60 (4.3M rows).

    By default one run every 10 minutes (432k rows) keeps the suite quick; the timing
    bound holds at full scale too (see docs/slos.md for the measured figures).
    """
    step = float(os.environ.get("WATCHKEEPER_BENCH_STEP", "600"))
    checks = "".join(
        f'  c{n:03d}: {{probe: http, url: "http://127.0.0.1:9/{n}", schedule: {{every: 1m}}}}\n'
        for n in range(100)
    )
    validation = load(tmp_path, config_text().replace("checks:\n", "checks:\n" + checks))
    store = open_store(validation)
    await store.open()
    now = T0 + 30 * DAY + 12 * HOUR
    per_check = int(31 * DAY / step)
    try:
        for n in range(100):
            failing = {int((2 * DAY + n * 60) / step)}  # one failure each, on day 2
            await fabricate(store, f"c{n:03d}", T0, per_check, step=step, failing=failing)
        started = time.perf_counter()
        days = await roll_up(store, validation.config, now=now)
        rolled_in = time.perf_counter() - started
        started = time.perf_counter()
        report = await build_report(validation.config, store, since=now - 30 * DAY, until=now)
        reported_in = time.perf_counter() - started
    finally:
        await store.close()
    print(f"\n{100 * per_check} rows: rollups {rolled_in:.1f}s, report {reported_in:.2f}s")
    assert len(days) == 30
    assert report["totals"]["runs"] == 100 * int(30 * DAY / step)
    assert report["totals"]["failures"] == 100
    assert reported_in < 60
