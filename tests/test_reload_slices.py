"""A reload of thousands of checks never stalls the daemon (issue 23, item 2).

The new config is read in a child, its instances are built in a thread and the switch is
done on the event loop in slices: the loop keeps running during the reload, /health keeps
answering, no check runs twice or is lost across it, an unchanged check stays the very
object it was, and what the reload replaced is freed.
"""

from __future__ import annotations

import gc
import itertools
import threading
import time
import weakref

import anyio
import httpx
import pytest

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, wait_until

pytestmark = pytest.mark.slow

ENV = {"ADMIN_TOKEN": ADMIN_TOKEN}


def config(url: str, count: int, every: str, changed: int = 0, workers: int = 0) -> dict:
    checks = {
        f"c{i}": {
            "probe": "http",
            "url": f"{url}/c{i}",
            "schedule": {"every": every},
            "timeout": "4s" if i < changed else "5s",
        }
        for i in range(count)
    }
    return {
        "version": 1,
        "engine": {"workers": workers},
        "state": {"type": "sqlite", "path": "state.db"},
        "server": {"admin_token": "${ADMIN_TOKEN}"},
        "checks": checks,
    }


class Ticker:
    """A task on the daemon's loop waking every 5 ms: when it woke, and how late."""

    def __init__(self) -> None:
        self.ticks: list[tuple[float, float]] = []
        self.scope: anyio.CancelScope | None = None

    async def run(self) -> None:
        with anyio.CancelScope() as self.scope:
            while True:
                began = time.monotonic()
                await anyio.sleep(0.005)
                self.ticks.append((time.monotonic(), time.monotonic() - began - 0.005))


def reload(live: LiveDaemon) -> tuple[float, float, dict]:
    began = time.monotonic()
    response = live.post("/api/reload", timeout=120)
    assert response.status_code == 200, response.text
    return began, time.monotonic(), response.json()


def test_a_reload_of_thousands_of_checks_lets_the_loop_and_health_run(tmp_path, target):
    count = 3000
    with LiveDaemon(tmp_path, config(target.url, count, "60s"), ENV) as live:
        daemon = live.daemon
        ticker = Ticker()
        live.portal.start_task_soon(ticker.run)
        live.write(config(target.url, count, "60s", changed=5))
        health: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    t0 = time.monotonic()
                    assert client.get(live.url + "/health").status_code == 200
                    health.append(time.monotonic() - t0)
                    time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            began, ended, answer = reload(live)
        finally:
            stop.set()
            poller.join(30)
        live.call(lambda: ticker.scope.cancel())
        assert answer["changed"] == [f"c{i}" for i in range(5)]
        assert len(daemon.runtime.instances) == count
        during = [lag for at, lag in ticker.ticks if began <= at <= ended]
        # the reload took a while (a child reads the file): the loop ran all along, in
        # steps far shorter than the reload (generous bounds: CI machines are busy)
        assert ended - began > 0.2
        assert len(during) >= 10, (len(during), ended - began)
        assert max(during) < max(0.5, (ended - began) / 3), sorted(during)[-5:]
        assert health
        assert max(health) < 2.0, sorted(health)[-5:]


def test_unchanged_checks_stay_the_same_objects_and_replaced_ones_are_freed(tmp_path, target):
    count = 400
    with LiveDaemon(tmp_path, config(target.url, count, "5s"), ENV) as live:
        daemon = live.daemon
        runtime = daemon.runtime
        before = dict(runtime.instances)
        jobs = {k: daemon.scheduler.jobs[f"check:{k}"] for k in before}
        evaluators = dict(runtime.evaluators)
        old_config = weakref.ref(daemon.config)
        old_validation = weakref.ref(daemon.validation)
        # (instances have slots and no weak references: their options models do)
        changed_options = [weakref.ref(before[f"c{i}"].options) for i in range(3)]
        live.write(config(target.url, count, "5s", changed=3))
        _, _, answer = reload(live)
        assert answer["changed"] == ["c0", "c1", "c2"]
        after = runtime.instances
        for key in (f"c{i}" for i in range(3, count)):
            assert after[key] is before[key], key  # not a copy: the same object
            assert daemon.scheduler.jobs[f"check:{key}"] is jobs[key]
            assert runtime.evaluators[key] is evaluators[key]
            # the running config holds the model the instance runs: one copy of it
            assert daemon.config.checks[key] is after[key].options
        for key in ("c0", "c1", "c2"):
            assert after[key] is not before[key]
            assert after[key].timeout == 4.0
            job = daemon.scheduler.jobs[f"check:{key}"]
            assert job.target is after[key]
            assert runtime.evaluators[key].instance is after[key]
        del before, jobs, evaluators, after, job

        def collected() -> bool:
            live.call(gc.collect)
            return (
                old_config() is None
                and old_validation() is None
                and all(ref() is None for ref in changed_options)
            )

        # the replaced jobs (and the instances they ran) leave the scheduler's heap when
        # their time comes up, within the 5 s period
        try:
            wait_until(collected, 30, 0.5, what="the replaced config and checks freed")
        except AssertionError:
            alive = [old_config() is not None, old_validation() is not None]
            alive += [r() is not None for r in changed_options]
            raise AssertionError(f"still alive (config, validation, options): {alive}") from None


def test_no_check_runs_twice_or_is_lost_across_reloads(tmp_path, target):
    count, every = 200, 2.0
    with LiveDaemon(tmp_path, config(target.url, count, "2s", workers=1), ENV) as live:
        daemon = live.daemon
        fired: dict[str, list[float]] = {}
        results: dict[str, int] = {}
        fire = daemon.scheduler._fire

        def recording(tg, job, scheduled, now):
            # every time a job comes up (a run still going is skipped, not lost)
            fired.setdefault(job.key.removeprefix("check:"), []).append(scheduled)
            fire(tg, job, scheduled, now)

        def count_result(instance, result, at) -> None:
            results[instance.key] = results.get(instance.key, 0) + 1

        def hook() -> None:
            daemon.scheduler._fire = recording
            daemon.runtime.result_handlers.append(count_result)

        live.call(hook)
        time.sleep(every + 0.5)
        start = time.time()
        for changed in (4, 0, 4):
            live.write(config(target.url, count, "2s", changed=changed, workers=1))
            reload(live)
            time.sleep(0.7)
        time.sleep(every)
        end = time.time()
        time.sleep(1.0)  # the last runs' results come in
        assert len(fired) == count
        for key, times in fired.items():
            inside = [t for t in times if start <= t <= end]
            assert inside, key
            steps = {round(b - a, 3) for a, b in itertools.pairwise(inside)}
            # every fire time of the window, each once: phase-locked, a step of `every`
            assert steps <= {every}, (key, inside)
            assert inside[0] - start < every + 0.01, (key, start, inside)
            assert end - inside[-1] < every + 0.01, (key, end, inside)
        # and each run of an unchanged check came back as a result (one of a replaced
        # instance that was under way is dropped: the four changed checks are let off)
        skipped = {k: j.skipped for k, j in daemon.scheduler.jobs.items()}
        for key, times in fired.items():
            if int(key[1:]) >= 4:
                runs = len(times) - skipped.get(f"check:{key}", 0)
                assert results.get(key, 0) >= runs - 1, key
