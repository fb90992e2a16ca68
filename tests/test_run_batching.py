"""Runs released in ticks and carried to a worker in batches: none lost, none doubled, none
started later than a tick after its time, none held back by a slow neighbour."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from datetime import UTC, datetime

import anyio
import pytest

from tests.worker_kit import http_check, instances_for
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run import worker as worker_module
from watchkeeper.engine.run.executor import ProcessExecutor
from watchkeeper.engine.schedule.clock import FakeClock
from watchkeeper.engine.schedule.scheduler import TICK, Scheduler
from watchkeeper.engine.testing import HttpTestServer
from watchkeeper.schema.schedule import Schedule

pytestmark = pytest.mark.anyio

START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def simulate(schedules: dict[str, Schedule], seconds: float, tick: float = TICK):
    """Run a scheduler on a fake clock; return (key, scheduled, started) per run."""
    clock = FakeClock(START)
    runs: list[tuple[str, float, float]] = []

    async def record(job, at):
        runs.append((job.key, at, clock.now()))

    scheduler = Scheduler(clock, record, tick=tick)
    for key, schedule in schedules.items():
        scheduler.add(key, "check", schedule)
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        await clock.run_until(START.timestamp() + seconds)
        scheduler.stop(0)
    return runs, scheduler


async def test_runs_due_close_together_start_together_within_a_tick_none_lost_or_doubled():
    # 4,000 checks a minute, as the isolation bench runs them: 67 runs a second at phases
    # spread by their names
    schedules = {f"http-{i}": Schedule(every=60) for i in range(4000)}
    runs, scheduler = await simulate(schedules, 180)
    by_key: dict[str, list[float]] = {}
    for key, at, _ in runs:
        by_key.setdefault(key, []).append(at)
    assert set(by_key) == set(schedules)
    end = START.timestamp() + 180
    for key, times in by_key.items():
        assert len(times) == len(set(times)), key  # no run doubled
        assert times[0] < START.timestamp() + 60, key
        assert all(b - a == 60 for a, b in itertools.pairwise(times)), key
        # none lost at the end either (one due in the last tick waits for the tick's end)
        assert times[-1] + 60 > end - TICK, key
    late = [started - at for _, at, started in runs]
    assert min(late) >= 0  # never early
    assert max(late) <= TICK + 1e-6
    assert scheduler.lateness.worst <= TICK + 1e-6
    releases = Counter(started for _, _, started in runs)
    # one wake-up (and one frame to a worker) per release, not one per run
    assert len(releases) < 0.6 * len(runs)
    assert scheduler.lateness.count == len(runs)


async def test_a_run_with_no_other_due_within_a_tick_starts_on_time():
    # phases of "every" checks come from their names: keep only checks far apart
    schedules = {f"c{i}": Schedule(every=60) for i in range(12)}
    runs, _ = await simulate(schedules, 120)
    firsts = sorted({key: at for key, at, _ in reversed(runs)}.items(), key=lambda kv: kv[1])
    lone = {
        key
        for index, (key, at) in enumerate(firsts)
        if (index == 0 or at - firsts[index - 1][1] > TICK)
        and (index == len(firsts) - 1 or firsts[index + 1][1] - at > TICK)
    }
    assert lone  # 12 phases in a minute: most are seconds apart
    for key, at, started in runs:
        if key in lone:
            assert started == at, key


async def test_the_earlier_of_two_runs_a_few_ms_apart_waits_for_the_later():
    runs, _ = await simulate({"a": Schedule(cron="0 * * * *")}, 3.5 * 3600)
    assert [started - at for _, at, started in runs] == [0, 0, 0]  # alone: on time
    schedules = {"a": Schedule(cron="0 * * * *"), "b": Schedule(cron="0 * * * *", jitter=0.01)}
    runs, _ = await simulate(schedules, 3.5 * 3600)
    hours: dict[int, dict[str, tuple[float, float]]] = {}
    for key, at, started in runs:
        hours.setdefault(round(at / 3600), {})[key] = (at, started)
    # (the first hour's `a` falls on the start instant, which a series starts after)
    pairs = [pair for pair in hours.values() if len(pair) == 2]
    assert len(pairs) == 3
    for pair in pairs:
        (a_at, a_started), (b_at, b_started) = pair["a"], pair["b"]
        assert 0 < b_at - a_at < TICK  # b's jitter puts it a few ms after a
        assert a_started == b_started == b_at


async def test_without_a_tick_every_run_starts_at_its_time():
    schedules = {f"http-{i}": Schedule(every=60) for i in range(500)}
    runs, scheduler = await simulate(schedules, 120, tick=0.0)
    assert all(started == at for _, at, started in runs)
    assert scheduler.lateness.worst == 0


@pytest.mark.slow
async def test_runs_released_together_go_in_one_frame_and_each_comes_back_once(
    tmp_path, monkeypatch
):
    received: list[tuple] = []
    split = worker_module.split_frames

    def recording(buffer):
        messages = split(buffer)
        received.extend(m for m in messages if m[0] == "results")
        return messages

    monkeypatch.setattr(worker_module, "split_frames", recording)
    with HttpTestServer() as server:
        server.reply("/slow", status=200, delay=1.5)
        for i in range(30):
            server.reply(f"/fast{i}", status=200)
        checks = {f"fast{i}": http_check(server.url(f"/fast{i}")) for i in range(30)}
        checks["slow"] = http_check(server.url("/slow"))
        instances = instances_for(tmp_path, checks)
        executor = ProcessExecutor(registry(), tmp_path, 1)
        sent: list[tuple] = []
        finished: dict[str, float] = {}
        results: dict[str, object] = {}
        async with anyio.create_task_group() as tg:
            await tg.start(executor.serve)
            await executor.load(instances)
            worker = executor.workers[0]
            send = worker.send

            async def counting(message):
                sent.append(message)
                await send(message)

            worker.send = counting  # type: ignore[method-assign]
            begun = time.monotonic()

            async def one(key):
                results[key] = await executor.run(instances[key])
                finished[key] = time.monotonic() - begun

            # released together, as the scheduler releases a tick's runs
            async with anyio.create_task_group() as runs:
                for key in instances:
                    runs.start_soon(one, key)
            tg.cancel_scope.cancel()
        paths = Counter(request.path for request in server.requests)
    runs_sent = [m for m in sent if m[0] == "runs"]
    assert len(runs_sent) == 1
    assert sorted(key for _, key in runs_sent[0][1]) == sorted(instances)
    assert all(r.ok for r in results.values()), {k: r.message for k, r in results.items()}
    assert set(results) == set(instances)
    # each run reached the target once and came back once
    assert all(paths[f"/fast{i}"] == 1 for i in range(30)), paths
    assert paths["/slow"] == 1
    job_ids = [job_id for message in received for job_id, _ in message[1]]
    assert len(job_ids) == len(set(job_ids)) == 31
    # the fast ones were not held back until the slow one finished
    assert max(finished[f"fast{i}"] for i in range(30)) < 1.0
    assert finished["slow"] >= 1.5
    assert len(received) >= 2
