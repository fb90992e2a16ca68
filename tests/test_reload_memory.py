"""Reloads do not pile up memory: what a reload replaces is let go, however often it runs.

Counted, not measured: the scheduler's heap and the check instances alive after many
reloads stay at what one configuration needs (RSS and timings depend on the machine).
"""

from __future__ import annotations

import gc
from types import SimpleNamespace

import anyio

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, live_config
from watchkeeper.engine.config.instances import Instance
from watchkeeper.engine.schedule.clock import Clock
from watchkeeper.engine.schedule.scheduler import STALE_FLOOR, Scheduler

ENV = {"ADMIN_TOKEN": ADMIN_TOKEN}
COUNT, CHANGED = 40, 10


def config(url: str, timeout: str) -> dict:
    # hourly: no replaced job comes up in the heap during the test, as with a daily check
    checks = {
        f"c{i}": {
            "probe": "http",
            "url": f"{url}/c{i}",
            "schedule": {"every": "1h"},
            "timeout": timeout if i < CHANGED else "5s",
        }
        for i in range(COUNT)
    }
    return live_config(checks)


def instances_alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Instance)


def test_many_reloads_keep_one_configuration_of_checks(tmp_path, target):
    with LiveDaemon(tmp_path, config(target.url, "5s"), ENV) as live:
        daemon = live.daemon
        scheduler = daemon.scheduler
        counts = []
        for index in range(16):
            live.write(config(target.url, "4s" if index % 2 == 0 else "5s"))
            assert live.call(daemon.reload)
            assert len(daemon.runtime.instances) == COUNT
            heap = len(scheduler.heap)
            # the replaced jobs' entries are sifted out past a bound, not kept for an hour
            assert heap - len(scheduler.jobs) <= max(STALE_FLOOR, heap // 2) + 1, index
            counts.append(live.call(instances_alive))
        # 160 instances replaced: those alive are the running ones and a bounded rest
        assert max(counts) <= COUNT + STALE_FLOOR + CHANGED, counts
        assert counts[-1] <= counts[3] + STALE_FLOOR, counts


def test_removed_jobs_leave_the_heap_without_coming_up():
    daily = SimpleNamespace(every=86400.0)

    async def replace_jobs() -> Scheduler:
        scheduler = Scheduler(Clock(), run=None)  # type: ignore[arg-type]
        for round_ in range(50):
            for i in range(20):
                scheduler.add(f"job{i}", "task", daily, target=round_)
        return scheduler

    scheduler = anyio.run(replace_jobs)
    assert len(scheduler.jobs) == 20
    # 980 jobs replaced, none of them due for a day: their entries do not pile up
    assert len(scheduler.heap) <= 20 + STALE_FLOOR + 1
    live = {id(job) for job in scheduler.jobs.values()}
    assert live <= {id(job) for _, _, job in scheduler.heap}
    assert scheduler.heap[0][0] == min(job.next_at for job in scheduler.jobs.values())
