"""The scheduler on an injectable clock: DST rules, phase-locking, skips, concurrency."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from watchkeeper.engine.schedule.clock import FakeClock
from watchkeeper.engine.schedule.scheduler import Scheduler
from watchkeeper.schema.schedule import Schedule

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def simulate(
    schedules: dict[str, Schedule], start: datetime, end: datetime, run=None, concurrency: int = 256
):
    clock = FakeClock(start)
    fired: list[tuple[str, datetime]] = []

    async def record(job, at):
        fired.append((job.key, datetime.fromtimestamp(at, UTC)))
        if run is not None:
            await run(job, at, clock)

    scheduler = Scheduler(clock, record, concurrency=concurrency)
    for key, schedule in schedules.items():
        scheduler.add(key, "check", schedule)
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        await clock.run_until(end)
        scheduler.stop(0)
    return fired, scheduler


async def test_daily_job_runs_once_on_both_dst_change_days():
    daily = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    fired, _ = await simulate({"d": daily}, utc(2026, 3, 28), utc(2026, 3, 31))
    assert [t for _, t in fired] == [
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 30, 0, 30),
    ]
    fired, _ = await simulate({"d": daily}, utc(2026, 10, 24), utc(2026, 10, 27))
    assert [t for _, t in fired] == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]


async def test_wildcard_hour_runs_through_both_repeated_hours():
    quarter = Schedule(cron="*/15 * * * *", timezone="Europe/Berlin")
    fired, _ = await simulate({"q": quarter}, utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 2, 0))
    times = [t for _, t in fired]
    assert len(times) == 8 == len(set(times))


async def test_every_is_phase_locked_to_the_name_across_restarts():
    every = Schedule(every=300)
    first, _ = await simulate({"api": every}, utc(2026, 5, 1, 0, 0), utc(2026, 5, 1, 1, 0))
    later, _ = await simulate({"api": every}, utc(2026, 5, 1, 0, 7, 13), utc(2026, 5, 1, 1, 0))
    assert {t for _, t in later} <= {t for _, t in first}
    other, _ = await simulate({"web": every}, utc(2026, 5, 1, 0, 0), utc(2026, 5, 1, 1, 0))
    assert {t for _, t in other} != {t for _, t in first}


async def test_a_run_still_going_is_not_started_twice_and_the_skip_is_counted():
    async def slow(job, at, clock):
        await clock.sleep_until(at + 150)  # takes 2.5 intervals

    fired, scheduler = await simulate(
        {"s": Schedule(every=60)}, utc(2026, 1, 1), utc(2026, 1, 1, 0, 10), run=slow
    )
    job = scheduler.jobs["s"]
    assert job.skipped >= 5
    assert len(fired) + job.skipped == 10


async def test_a_long_week_of_cron_runs_in_milliseconds():
    schedules = {f"c{i}": Schedule(cron="*/5 * * * *") for i in range(20)}
    with anyio.fail_after(20):
        fired, scheduler = await simulate(schedules, utc(2026, 1, 1), utc(2026, 1, 8))
    assert len(fired) == 20 * 7 * 24 * 12
    assert scheduler.lateness.worst == 0


async def test_global_concurrency_limit_bounds_runs_at_once():
    running = 0
    peak = 0

    async def busy(job, at, clock):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await clock.sleep_until(at + 30)
        running -= 1

    schedules = {f"c{i}": Schedule(every=60) for i in range(10)}
    await simulate(schedules, utc(2026, 1, 1), utc(2026, 1, 1, 0, 5), run=busy, concurrency=3)
    assert peak == 3


async def test_a_replaced_job_keeps_the_run_that_fell_due_before_it_was_released():
    """A reload replaces a changed check's job; a run of it that was due and waiting for
    its batch (or for the loop, busy switching) runs once, on the new job, and the new
    job goes on phase-locked: none lost, none doubled (docs/running.md, reloads)."""
    clock = FakeClock(utc(2026, 1, 1))
    fired: dict[str, list[float]] = {}

    async def record(job, at):
        fired.setdefault(job.key, []).append(at)

    scheduler = Scheduler(clock, record)
    first = scheduler.add("s", "check", Schedule(every=60)).next_at
    clock.set(first + 0.05)  # due, not yet released
    assert scheduler.add("s", "check", Schedule(every=60)).next_at == first
    # a job replaced before its run fell due just takes its own next time
    later = scheduler.add("t", "check", Schedule(every=60)).next_at
    assert later > clock.now()
    assert scheduler.add("t", "check", Schedule(every=60)).next_at == later
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        await clock.run_until(first + 150)
        scheduler.stop(0)
    assert fired["s"] == [first, first + 60, first + 120]
    assert fired["t"] == [at for at in (later, later + 60, later + 120) if at <= first + 150]
