"""One outage pages once: an SLO burn-rate alert about a check whose own alert fires is held
behind it ("covered by ..."), resolves soon after the burning stops, says an overspent
budget in plain words, and is told apart from the check's alerts by its `kind: slo` label.

The daemon is the real one (its runtime, alerting, outbox and SQLite store), driven minute
by minute on a fake clock; notices go over HTTP to a real webhook receiver.
"""

from __future__ import annotations

import re

import pytest

from tests.receivers import HttpRecorder
from tests.test_rollups import DAY, T0, fabricate, load
from watchkeeper.engine.daemon import Daemon
from watchkeeper.engine.reports.slo import evaluate_slos
from watchkeeper.engine.run.probe import Result
from watchkeeper.engine.schedule.clock import FakeClock

pytestmark = pytest.mark.anyio

MINUTE = 60.0
START = T0 + 10 * DAY


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def receiver():
    with HttpRecorder() as server:
        yield server


def config(receiver: HttpRecorder, slo: str) -> str:
    return f"""\
version: 1
state: {{type: sqlite, path: state.db}}
engine: {{workers: 0}}
checks:
  api:
    probe: http
    url: "http://127.0.0.1:9/health"
    schedule: {{every: 1m}}
    labels: {{heal: redeploy}}
notifiers:
  pager: {{type: webhook, url: "{receiver.url("/hook")}"}}
routes:
  - {{match: {{}}, notify: [pager], group_wait: 0s}}
slos:
{slo}
"""


class Minutes:
    """Feed one result a minute through the daemon and let every part of it act."""

    def __init__(self, daemon: Daemon, clock: FakeClock, start: float):
        self.daemon = daemon
        self.clock = clock
        self.at = start

    async def run(self, ok: bool, **metrics: float) -> None:
        self.at += MINUTE
        self.clock.set(self.at)
        instance = self.daemon.runtime.instances["api"]
        result = Result(ok=ok, message="up" if ok else "connection refused", metrics=metrics)
        await self.daemon.runtime.ingest(instance, result, self.at)
        await self.daemon.writer.flush()
        await evaluate_slos(self.daemon, self.at)  # the daemon does this once a minute
        await self.daemon.alerting.fire_due(self.at)
        await self.daemon.outbox.drain(5)

    def slo_alert(self):
        return self.daemon.runtime.book.get_open("slo:api-availability", "burn-rate")


def pages(receiver: HttpRecorder) -> list[tuple[str, str]]:
    """(check, status) of every alert the receiver was told about, in order."""
    return [
        (alert["check"], alert["status"])
        for request in receiver.requests
        for alert in request.json()["alerts"]
    ]


async def started(tmp_path, text: str) -> tuple[Daemon, FakeClock]:
    validation = load(tmp_path, text)
    clock = FakeClock(START)
    daemon = Daemon(validation, clock=clock, printer=lambda _: None)
    await daemon.start()
    await daemon.outbox.load()
    await daemon.alerting.load()
    return daemon, clock


async def test_an_outage_pages_once_and_the_burn_alert_resolves_soon_after(tmp_path, receiver):
    slo = "  api-availability: {check: api, objective: 99.9%, alert: {severity: critical}}"
    daemon, clock = await started(tmp_path, config(receiver, slo))
    try:
        # a healthy day before the outage, so that the windows are full
        await fabricate(daemon.store, "api", START - DAY, 1440)
        minutes = Minutes(daemon, clock, START)
        await minutes.run(True)
        held = []
        for _ in range(5):  # five minutes down
            await minutes.run(False)
            alert = minutes.slo_alert()
            if alert is not None:
                held.append(alert.held)
        last_failure = minutes.at
        burn = minutes.slo_alert()
        assert burn is not None
        assert burn.status == "firing"
        assert held
        assert all(h == "covered by api's alert" for h in held), held
        # it carries the check's labels, and a label that tells it apart
        assert burn.labels == {"heal": "redeploy", "slo": "api-availability", "kind": "slo"}
        # a few failures in a day of runs against a 0.1% budget: spent several times
        # over, said plainly (not as "-176.7% of the 30d budget left")
        assert re.search(r"error budget is exhausted \([2-4]\.\d+× spent\)", burn.summary), (
            burn.summary
        )
        assert "-" not in burn.summary.split(";")[-1]

        for _ in range(10):  # recovered
            await minutes.run(True)
            if minutes.slo_alert() is None:
                break
        assert minutes.slo_alert() is None, "the burn-rate alert outlived the burn"
        # documented: within 5 minutes of the last bad run and one evaluation more
        assert burn.resolved_at - last_failure <= 5 * MINUTE + MINUTE
        assert burn.resolve_reason.startswith(
            "SLO api-availability on api: error budget burn stopped"
        )

        for _ in range(3):
            await minutes.run(True)
        # one page for the outage (and its resolution); the SLO alert was never told
        assert pages(receiver) == [("api", "firing"), ("api", "resolved")], pages(receiver)
        events = await daemon.store.read("alert_events", burn.id)
        assert any(e.data["event"] == "held" for e in events)
        assert not any(e.data["event"] == "notified" for e in events)
    finally:
        await daemon.shutdown()


async def test_a_burn_that_outlives_the_checks_alert_is_notified(tmp_path, receiver):
    """Held, not dropped: an SLO still burning well after the check's alert resolved pages."""
    slo = (
        "  api-availability: {check: api, metric: response_time, below: 1s, objective: 99%,"
        " alert: {severity: high}}"
    )
    text = config(receiver, slo).replace(
        "    labels: {heal: redeploy}\n",
        "    labels: {heal: redeploy}\n"
        "    thresholds: [{name: very-slow, metric: response_time, above: 5s, severity: high}]\n",
    )
    daemon, clock = await started(tmp_path, text)
    try:
        fast = {"ok": True, "duration": 0.1, "metrics": {"response_time": 0.1}}
        await fabricate(daemon.store, "api", START - DAY, 1440, make=lambda i, ok: fast)
        minutes = Minutes(daemon, clock, START)
        held = set()
        for _ in range(12):  # very slow: the check's threshold alert pages
            await minutes.run(True, response_time=6.0)
            if minutes.slo_alert() is not None:
                held.add(minutes.slo_alert().held)
        assert held == {"covered by api's alert"}, held
        assert pages(receiver) == [("api", "firing")]

        await minutes.run(True, response_time=3.0)  # under 5s: the threshold alert resolves
        resolved_at = minutes.at
        assert pages(receiver) == [("api", "firing"), ("api", "resolved")]
        for _ in range(10):  # still over the SLO's 1s: the budget burns on
            await minutes.run(True, response_time=3.0)
            if len(pages(receiver)) > 2:
                break
        burn = minutes.slo_alert()
        assert burn is not None
        assert burn.notified_at is not None
        # covered for the 5 minutes after the check's alert resolved, then told
        assert 5 * MINUTE < burn.notified_at - resolved_at <= 7 * MINUTE
        assert pages(receiver)[2:] == [("slo:api-availability", "firing")]
    finally:
        await daemon.shutdown()


def test_validate_warns_about_burn_alerts_on_seldom_checks_and_healing_routes(tmp_path):
    from watchkeeper.engine.reports.slo import slo_warnings

    text = """\
version: 1
state: {type: sqlite, path: state.db}
checks:
  api:
    probe: http
    url: "http://127.0.0.1:9/health"
    schedule: {every: 5m}
    labels: {heal: redeploy}
notifiers:
  console: {type: log}
actions:
  redeploy: {type: command, argv: ["true"]}
escalation:
  standard:
    - {after: 0s, actions: [redeploy]}
routes:
  - {match: {labels: {heal: redeploy}}, notify: [console], escalate: standard}
slos:
  uptime: {check: api, objective: 99.9%, alert: {}}
  latency: {check: api, metric: response_time, below: 2s, objective: 99%}
"""
    validation = load(tmp_path, text)
    problems = slo_warnings(validation.config, validation.loaded)
    assert [p.level for p in problems] == ["warning", "warning"]
    assert all(p.path == "slos.uptime.alert" and p.line > 0 for p in problems)
    seldom, healing = (p.message for p in problems)
    assert "runs about 12 times an hour" in seldom
    assert "burn of 83× over 1h" in seldom
    assert "routes[0]" in healing
    assert "redeploy" in healing
    assert "{rule: burn-rate}" in healing

    # a route for SLO alerts first, and a check every minute: nothing to say
    fixed = text.replace("every: 5m", "every: 30s").replace(
        "routes:\n", "routes:\n  - {match: {labels: {kind: slo}}, notify: [console]}\n"
    )
    assert slo_warnings(load(tmp_path, fixed).config) == []


def test_the_advice_is_refused_by_validate_strict_but_never_stops_the_file_running(
    tmp_path, write_config, cli
):
    write_config(
        """
        version: 1
        checks:
          api: {probe: http, url: "http://127.0.0.1:9/health", schedule: {every: 5m}}
        notifiers:
          console: {type: log}
        routes:
          - {match: {}, notify: [console]}
        slos:
          uptime: {check: api, objective: 99.9%, alert: {}}
        """
    )
    result = cli("validate", "--format", "json")
    assert result.code == 0, result.output
    [advice] = result.json()["problems"]
    assert (advice["level"], advice["path"]) == ("warning", "slos.uptime.alert")
    assert "run the check every 51s or more often" in advice["message"]
    strict = cli("validate", "--strict", "--format", "json")
    assert strict.code == 1, strict.output
    assert [p["level"] for p in strict.json()["problems"]] == ["error"]
    planned = cli("plan", "--format", "json")  # what runs the file takes it as it is
    assert planned.code == 0, planned.output
