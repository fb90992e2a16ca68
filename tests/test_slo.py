"""SLOs on a fabricated history with known answers: SLI, budget, burn rates, statuses, and the
burn-rate alert raised and cleared through the daemon's own runtime and routes.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.test_rollups import (
    DAY,
    T0,
    config_text,
    eventually,
    fabricate,
    iso,
    load,
    open_store,
)
from watchkeeper.engine.alerting.maintenance import Maintenance
from watchkeeper.engine.daemon import Daemon
from watchkeeper.engine.reports.slo import (
    SloParts,
    Target,
    burning,
    evaluate_slos,
    judge,
    slo_status,
    targets,
)
from watchkeeper.engine.schedule.clock import FakeClock
from watchkeeper.engine.state.rollups import Aggregate, roll_up
from watchkeeper.schema.slos import SLO, BurnAlert

pytestmark = pytest.mark.anyio

HOUR = 3600.0

# The 30-day history every SLO test below reads: one run a minute from T0; "now" is noon
# of day 30, so the 30-day window holds runs i = 720 .. 43919, exactly 43200 of them.
NOW = T0 + 30 * DAY + 12 * HOUR
FAILING = {*range(5000, 5010), *range(20000, 20010), *range(35000, 35010)}  # 30, i mod 50 < 10
MUTED = range(25000, 25120)  # 120 runs in a mute window; the first 60 of them fail
MUTE_START, MUTE_END = T0 + 25000 * 60, T0 + 25120 * 60

SLOS = f"""\
slos:
  api-availability: {{check: api, objective: 99.9%, window: 30d, alert: {{severity: critical}}}}
  api-latency: {{check: api, metric: response_time, below: 2s, objective: 97%}}
maintenance:
  - {{name: upgrade, start: "{iso(MUTE_START)}", end: "{iso(MUTE_END)}", checks: [api]}}
"""


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def month(store) -> None:
    failing = FAILING | set(range(25000, 25060))
    await fabricate(store, "api", T0, 30 * 1440 + 720 + 10, failing=failing)


async def firing(daemon, wanted: bool = True) -> bool:
    alert = daemon.runtime.book.get_open("slo:api-availability", "burn-rate")
    return (alert is not None) == wanted


def by_name(statuses):
    return {s["slo"]: s for s in statuses}


async def test_sli_budget_and_burn_rates_of_a_known_month(tmp_path):
    validation = load(tmp_path, config_text(extra=SLOS))
    store = open_store(validation)
    await store.open()
    try:
        await month(store)
        parts = SloParts(validation.config, store, maintenance=Maintenance(validation.config))
        from_raw = by_name(await evaluate_slos(parts, NOW))
        assert await roll_up(store, validation.config, now=NOW)
        parts = SloParts(validation.config, store, maintenance=Maintenance(validation.config))
        from_rollups = by_name(await evaluate_slos(parts, NOW))
    finally:
        await store.close()

    for statuses in (from_raw, from_rollups):
        # availability: 43200 runs minus the 120 muted = 43080 counted, 30 of them failed
        avail = statuses["api-availability"]
        assert (avail["good"], avail["bad"], avail["total"]) == (43050, 30, 43080)
        assert avail["muted_runs"] == 120
        assert avail["sli"] == pytest.approx(43050 / 43080)
        assert avail["error_budget"] == pytest.approx(0.001)
        assert avail["bad_allowed"] == pytest.approx(43.08)
        assert avail["budget_remaining"] == pytest.approx(1 - (30 / 43080) / 0.001)  # 0.3036
        assert avail["burn_rates"] == {"5m": 0.0, "30m": 0.0, "1h": 0.0, "6h": 0.0}
        assert (avail["status"], avail["burning"]) == ("ok", None)
        assert avail["objective"] == 0.999
        assert avail["window_text"] == "30d"
        # latency: the 43050 answered runs; 2.5s ones are i mod 50 = 49: 864 in any 43200
        # consecutive runs, less the 2 muted (25049, 25099)
        latency = statuses["api-latency"]
        assert (latency["good"], latency["bad"], latency["total"]) == (42188, 862, 43050)
        assert latency["budget_remaining"] == pytest.approx(1 - (862 / 43050) / 0.03)  # 0.3326
        assert latency["status"] == "ok"
        assert latency["kind"] == "metric"
        assert latency["below"] == 2.0


async def test_burn_rate_alert_fires_and_clears_through_the_daemon(tmp_path):
    text = config_text(
        extra="""\
        notifiers:
          console: {type: log}
        routes:
          - {match: {}, notify: [console], group_wait: 0s}
        slos:
          api-availability: {check: api, objective: 99.9%, alert: {severity: critical}}
        """
    )
    validation = load(tmp_path, text)
    now = T0 + 10 * DAY
    clock = FakeClock(now)
    sent: list[str] = []
    daemon = Daemon(validation, clock=clock, dry_run=True, printer=sent.append)
    await daemon.start()
    try:
        await daemon.outbox.load()
        await daemon.alerting.load()
        # ten days at one run a minute up to now, and on; the run two minutes ago failed
        await fabricate(daemon.store, "api", now - 10 * DAY, 14400 + 30, failing={14400 - 2})

        [status] = await evaluate_slos(daemon, now)
        # one failure among 5, 30, 60 and 360 runs, against a budget of 0.1%
        assert status["burn_rates"] == pytest.approx(
            {"5m": 200.0, "30m": 1000 / 30, "1h": 1000 / 60, "6h": 1000 / 360}
        )
        assert status["burning"] == "fast"  # 1h 16.7 and 5m 200, both over 14.4
        assert status["status"] == "at-risk"  # 93% of the budget left, but burning
        assert status["budget_remaining"] == pytest.approx(1 - (1 / 14400) / 0.001)
        alert = daemon.runtime.book.get_open("slo:api-availability", "burn-rate")
        assert alert is not None
        assert (alert.status, alert.severity, alert.source) == ("firing", "critical", "internal")
        assert alert.labels == {"slo": "api-availability", "kind": "slo"}
        assert "16.7× over 1h and 200.0× over 5m" in alert.summary

        # through the routes: the console notifier gets it (printed, as a dry run)
        for group in list(daemon.alerting.groups.values()):
            await daemon.alerting.flush(group, now)
        await daemon.outbox.drain(5)
        assert any("slo:api-availability" in line and "burn" in line for line in sent), sent

        # the API's lazy read returns this evaluation while it is fresh
        assert await slo_status(daemon) == [status]

        # ten minutes on, the 5m window is clean: the page clears at once
        clock.set(now + 600)
        [later] = await evaluate_slos(daemon, now + 600)
        assert later["burning"] is None
        assert later["burn_rates"]["1h"] == pytest.approx(1000 / 60)
        assert daemon.runtime.book.get_open("slo:api-availability", "burn-rate") is None
        assert alert.status == "resolved"
        await daemon.writer.flush()
        stored = await daemon.store.get("alerts", alert.id)
        assert stored["status"] == "resolved"
        assert stored["check"] == "slo:api-availability"
    finally:
        await daemon.shutdown()


async def test_an_alert_whose_slo_is_removed_is_resolved(tmp_path):
    text = config_text(
        extra="""\
        slos:
          api-availability: {check: api, objective: 99.9%, alert: {}}
        """
    )
    validation = load(tmp_path, text)
    now = T0 + 10 * DAY
    daemon = Daemon(validation, clock=FakeClock(now), dry_run=True, printer=lambda _: None)
    await daemon.start()
    try:
        await fabricate(daemon.store, "api", now - HOUR, 60, failing={58, 59})
        await evaluate_slos(daemon, now)
        alert = daemon.runtime.book.get_open("slo:api-availability", "burn-rate")
        assert alert is not None
        assert alert.severity == "high"  # BurnAlert's default

        bare = load(tmp_path, config_text()).config
        parts = SloParts(bare, daemon.store, runtime=daemon.runtime)
        assert await evaluate_slos(parts, now) == []
        assert alert.status == "resolved"
        assert alert.resolve_reason == "the SLO or its alert was removed from monitor.yaml"
    finally:
        await daemon.shutdown()


def test_multiwindow_conditions_follow_the_sre_workbook():
    alert = BurnAlert()
    assert burning({"1h": 15, "5m": 15, "6h": 0, "30m": 0}, alert) == "fast"
    assert burning({"1h": 15, "5m": 14, "6h": 0, "30m": 0}, alert) is None  # 5m cooled off
    assert burning({"1h": 7, "5m": 7, "6h": 6.5, "30m": 6.1}, alert) == "slow"
    assert burning({"1h": 7, "5m": 7, "6h": 6.5, "30m": 5}, alert) is None
    assert burning({"1h": None, "5m": None, "6h": None, "30m": None}, alert) is None
    assert burning({"1h": 3, "5m": 3, "6h": 0, "30m": 0}, BurnAlert(fast=2)) == "fast"


def _target(**slo) -> Target:
    return Target("s", SLO(**{"check": "api", "objective": 0.99, **slo}), "api", "api", None)


def _agg(good: int, bad: int) -> Aggregate:
    return Aggregate(runs=good + bad, failures=bad)


@pytest.mark.parametrize(
    ("good", "bad", "status", "remaining"),
    [
        (1000, 0, "ok", 1.0),
        (990, 10, "at-risk", 0.0),  # exactly on the objective: all spent, not yet missed
        (992, 8, "at-risk", 0.2),
        (989, 11, "breached", -0.1),
        (0, 0, "no-data", None),
    ],
)
def test_status_from_the_budget_left(good, bad, status, remaining):
    empty = {label: Aggregate() for label in ("5m", "30m", "1h", "6h")}
    judged = judge(_target(), _agg(good, bad), empty, T0)
    assert judged["status"] == status
    assert judged["budget_remaining"] == (
        None if remaining is None else pytest.approx(remaining, abs=1e-9)
    )
    assert judged["burn_rates"] == dict.fromkeys(("5m", "30m", "1h", "6h"))


def test_an_slo_applies_per_environment_and_to_a_named_instance():
    instances = {
        key: SimpleNamespace(check=check, environment=env, labels={"team": "web"}, runbook=None)
        for key, check, env in [
            ("api@production", "api", "production"),
            ("api@staging", "api", "staging"),
            ("db", "db", None),
        ]
    }
    config = SimpleNamespace(
        slos={
            "all": SLO(check="api", objective=0.99),
            "prod": SLO(check="api@production", objective=0.99),
        }
    )
    found = [(t.name, t.key, t.environment) for t in targets(config, instances)]
    assert found == [
        ("all", "api@production", "production"),
        ("all", "api@staging", "staging"),
        ("prod", "api@production", "production"),
    ]


def test_slo_config_rejects_a_metric_slo_without_a_limit(tmp_path, cli):
    (tmp_path / "monitor.yaml").write_text(
        config_text(
            extra="""\
            slos:
              latency: {check: api, metric: response_time, objective: 99%}
              perfect: {check: api, objective: 100%}
            """
        )
    )
    result = cli("validate", "--format", "json")
    assert result.code == 1
    messages = " ".join(p["message"] for p in result.json()["problems"])
    assert "exactly one of `below` or `above`" in messages
    assert "leaves no error budget" in messages


async def test_the_daemon_task_evaluates_every_minute(tmp_path):
    import anyio

    from watchkeeper.engine.reports import slo

    validation = load(tmp_path, config_text(extra=SLOS))
    now = T0 + 10 * DAY
    clock = FakeClock(now)
    daemon = Daemon(validation, clock=clock, dry_run=True, printer=lambda _: None)
    await daemon.start()
    try:
        await fabricate(daemon.store, "api", now - DAY, 1440 + 10, failing={1438})
        async with anyio.create_task_group() as tg:
            await tg.start(slo.run, daemon)
            await eventually(lambda: firing(daemon))
            first = await slo_status(daemon)
            assert first[0]["evaluated_at"] == iso(now)
            await clock.run_until(now + 600)  # ten evaluations on, the 5m window is clean
            await eventually(lambda: firing(daemon, False))
            tg.cancel_scope.cancel()
    finally:
        await daemon.shutdown()
