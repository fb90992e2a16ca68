"""Edges of routing and escalation, driven through an in-process daemon on a fake clock:
a reload that re-keys a group, an alert passing through a severity no route matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.receivers import HttpRecorder
from watchkeeper.engine.config.validation import load_config
from watchkeeper.engine.daemon import Daemon
from watchkeeper.engine.run.probe import Result
from watchkeeper.engine.schedule.clock import FakeClock
from watchkeeper.schema.units import format_against, format_quantity

START = 1_773_187_200.0


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Harness:
    """A daemon fed results by hand, its clock moved a minute at a time."""

    def __init__(self, folder: Path, text: str):
        self.folder, self.clock, self.at = folder, FakeClock(START), START
        self.write(text)

    def write(self, text: str) -> None:
        (self.folder / "monitor.yaml").write_text(text)

    async def start(self) -> None:
        validation = load_config(self.folder / "monitor.yaml")
        self.daemon = Daemon(validation, clock=self.clock, printer=lambda _: None)
        await self.daemon.start()
        await self.daemon.outbox.load()
        await self.daemon.alerting.load()

    async def settle(self) -> None:
        await self.daemon.writer.flush()
        await self.daemon.alerting.fire_due(self.at)
        await self.daemon.writer.flush()
        await self.daemon.outbox.drain(5)

    async def run(self, ok: bool = True, minutes: float = 1.0, **metrics: float) -> None:
        self.at += 60 * minutes
        self.clock.set(self.at)
        instance = self.daemon.runtime.instances["api"]
        result = Result(ok=ok, message="up" if ok else "down", metrics=metrics)
        await self.daemon.runtime.ingest(instance, result, self.at)
        await self.settle()

    async def tick(self, minutes: float = 1.0) -> None:
        self.at += 60 * minutes
        self.clock.set(self.at)
        await self.settle()


def said(receiver: HttpRecorder, path: str) -> list[tuple[str, str]]:
    return [
        (a["status"], a["severity"]) for r in receiver.requests if r.path == path
        for a in r.json()["alerts"]
    ]  # fmt: skip


BASE = """\
version: 1
state: {{type: sqlite, path: state.db}}
engine: {{workers: 0}}
checks:
  api:
    probe: http
    url: "http://127.0.0.1:9/health"
    schedule: {{every: 1m}}
{thresholds}
notifiers:
{notifiers}
routes:
{routes}
"""


@pytest.mark.anyio
async def test_a_reload_that_regroups_a_route_still_sends_the_resolution(tmp_path):
    with HttpRecorder() as receiver:

        def config(group_by: str = "") -> str:
            return BASE.format(
                thresholds="",
                notifiers=f"  hook: {{type: webhook, url: '{receiver.url('/hook')}'}}",
                routes="  - {match: {}, notify: [hook], group_wait: 0s, group_interval: 1m"
                + group_by
                + "}",
            )

        harness = Harness(tmp_path, config())
        await harness.start()
        try:
            await harness.run(ok=False)
            assert said(receiver, "/hook") == [("firing", "critical")]
            harness.write(config(", group_by: [check]"))
            assert await harness.daemon.reload()
            await harness.run(ok=True)
            for _ in range(3):
                await harness.tick()
        finally:
            await harness.daemon.shutdown()
        assert said(receiver, "/hook") == [("firing", "critical"), ("resolved", "critical")]


@pytest.mark.anyio
async def test_escalation_resumes_after_a_severity_no_route_matches(tmp_path):
    with HttpRecorder() as receiver:
        text = BASE.format(
            thresholds=(
                "    thresholds:\n"
                "      - {name: slow, metric: response_time, above: 300ms, severity: low}\n"
                "      - {name: slow, metric: response_time, above: 1200ms, severity: high}"
            ),
            notifiers="\n".join(
                f"  {name}: {{type: webhook, url: '{receiver.url('/' + name)}'}}"
                for name in ("alerts", "l1", "l2")
            ),
            routes=(
                "  - {match: {severity: high}, notify: [alerts], escalate: P, group_wait: 0s,"
                " group_interval: 0s}\n"
                "escalation:\n"
                "  P:\n"
                "    - {after: 0s, name: one, notify: [l1]}\n"
                "    - {after: 10m, name: two, notify: [l2]}"
            ),
        )
        harness = Harness(tmp_path, text)
        await harness.start()
        try:
            await harness.run(response_time=1.5)  # high: level one pages l1
            await harness.tick(0.1)
            await harness.run(response_time=0.5)  # low: no route, further levels stop
            await harness.run(response_time=1.5)  # high again: the policy resumes
            for _ in range(15):
                await harness.run(response_time=1.5)
        finally:
            await harness.daemon.shutdown()
        assert said(receiver, "/l1")[:1] == [("firing", "high")]
        assert said(receiver, "/l2")[:1] == [("firing", "high")]  # level two did run


def test_values_below_zero_and_beyond_any_number_are_said_plainly():
    # an expired certificate's expiry is negative; an aggregate can overflow
    assert format_against(-3 * 86400, 14 * 86400, "duration", "below") == ("-3d", "14d")
    assert format_quantity(-3600.5, "duration") == "-1h"
    assert format_quantity(float("inf"), "duration") == "infinite"
    assert format_quantity(float("nan"), "bytes") == "not a number"
    assert format_quantity(-0.05, "ratio") == "-5%"


@pytest.mark.anyio
async def test_an_ack_reaches_pagerduty_for_an_incident_another_replica_paged(tmp_path):
    with HttpRecorder() as receiver:
        text = BASE.format(
            thresholds="",
            notifiers=(
                "  pd: {type: pagerduty, routing_key: abcdefabcdefabcdefabcdefabcdef12,"
                f" url: '{receiver.url('/pd/enqueue')}'}}"
            ),
            routes="  - {match: {}, notify: [pd], group_wait: 0s}",
        )
        harness = Harness(tmp_path, text)
        await harness.start()
        try:
            await harness.run(ok=False)
            [alert] = [a for a in harness.daemon.runtime.book.by_id.values() if a.open]
            # what a survivor has after a takeover: the incident, and none of the groups
            # the replica that paged kept
            harness.daemon.alerting.groups.clear()
            await harness.daemon.alerting.acknowledge(alert.id, "ops")
            await harness.settle()
        finally:
            await harness.daemon.shutdown()
        actions = [r.json()["event_action"] for r in receiver.requests]
        assert actions == ["trigger", "acknowledge"]
        keys = {r.json()["dedup_key"] for r in receiver.requests}
        assert len(keys) == 1  # the same incident
