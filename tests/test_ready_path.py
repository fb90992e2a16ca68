"""What `/ready` waits for: the config loaded, the store reachable and the checks scheduled,
not the probe workers taking their checks; runs due before they have them follow them."""

from __future__ import annotations

import contextlib
import functools
import threading

import anyio
import httpx
import pytest

from tests.api_harness import LiveDaemon, wait_until
from tests.worker_kit import hits, http_check, instances_for, one_then_two
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run.executor import ProcessExecutor
from watchkeeper.engine.testing import HttpTestServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_runs_asked_for_before_the_workers_have_their_checks_follow_them(tmp_path):
    """`serve(after=...)` is started at once; a run asked for before `after` is set waits
    for the worker's checks, and one of a check the worker is not sent waits too (an `add`
    before the `load` would be lost)."""
    with HttpTestServer() as server:
        first, both = one_then_two(server, tmp_path)
        executor = ProcessExecutor(registry(), tmp_path, 1)
        after = anyio.Event()
        results: dict[str, object] = {}

        both_done = anyio.Event()

        async def run(instances: dict, key: str) -> None:
            results[key] = await executor.run(instances[key])
            if len(results) == 2:
                both_done.set()

        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(executor.serve, after=after))
            worker = executor.workers[0]
            await executor.load(first)
            tg.start_soon(run, first, "a")
            tg.start_soon(run, both, "b")  # not in the checks it is sent
            await anyio.sleep(0.5)
            assert not worker.has_checks.is_set()
            assert results == {}
            assert server.requests == []
            after.set()
            with anyio.fail_after(30):
                await both_done.wait()
            tg.cancel_scope.cancel()
    assert results["a"].ok, results["a"].message
    assert results["b"].ok, results["b"].message
    assert hits(server, "/a") == hits(server, "/b") == 1


async def test_a_worker_that_takes_its_checks_late_is_sent_the_latest_ones(tmp_path):
    """A reload while the worker waits for its checks: it is sent those of the reload."""
    with HttpTestServer() as server:
        server.reply("/old", status=200)
        server.reply("/new", status=503)
        old = instances_for(tmp_path, {"a": http_check(server.url("/old"))})
        new = instances_for(tmp_path, {"a": http_check(server.url("/new"))})
        executor = ProcessExecutor(registry(), tmp_path, 1)
        after = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(executor.serve, after=after))
            await executor.load(old)
            await executor.load(new)
            after.set()
            with anyio.fail_after(30):
                await executor.workers[0].has_checks.wait()
            # the run finds its options as loaded: nothing is sent beside the checks
            worker = executor.workers[0]
            assert worker.added == {}
            result = await executor.run(new["a"])
            assert worker.added == {}
            tg.cancel_scope.cancel()
    assert not result.ok
    assert "503" in result.message
    assert hits(server, "/old") == 0


def test_the_daemon_is_ready_before_its_worker_has_its_checks(tmp_path, monkeypatch):
    """/ready answers 200 while the worker has not been sent its checks; the check due at
    start runs once it has them."""
    gate = threading.Event()
    build = ProcessExecutor._load_frame_in_turns

    async def held(self, instances):
        await anyio.to_thread.run_sync(gate.wait)  # the daemon's loop goes on meanwhile
        return await build(self, instances)

    monkeypatch.setattr(ProcessExecutor, "_load_frame_in_turns", held)
    with HttpTestServer() as server, _opened_at_last(gate):
        server.reply("/up", status=200)
        config = {
            "version": 1,
            "engine": {"workers": 1},
            "state": {"type": "sqlite", "path": str(tmp_path / "state.db")},
            "checks": {"web": {**http_check(server.url("/up")), "schedule": {"every": "1s"}}},
        }
        with LiveDaemon(tmp_path, config) as live:
            daemon = live.daemon
            assert httpx.get(live.url + "/ready").status_code == 200
            assert not daemon.executor.workers[0].has_checks.is_set()
            assert hits(server, "/up") == 0
            gate.set()
            first_run = lambda: (daemon.runtime.latest.get("web") or {}).get("ok")  # noqa: E731
            wait_until(first_run, 30, what="the first run")
    assert hits(server, "/up") >= 1


@contextlib.contextmanager
def _opened_at_last(gate: threading.Event):
    """The gate opened however the test ends (a thread waits on it)."""
    try:
        yield
    finally:
        gate.set()
