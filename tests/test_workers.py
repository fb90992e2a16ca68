"""Probe worker processes: the checks they know, and what they answer for a run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import psutil
import pytest
import yaml

from tests.daemon_harness import Daemon, Target
from tests.worker_kit import hits, http_check, instances_for, one_then_two
from watchkeeper.engine.daemon import worker_count
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run.executor import ProcessExecutor
from watchkeeper.engine.testing import HttpTestServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def run_with_workers(tmp_path: Path, body) -> None:
    executor = ProcessExecutor(registry(), tmp_path, 1)
    async with anyio.create_task_group() as tg:
        await tg.start(executor.serve)
        try:
            await body(executor)
        finally:
            tg.cancel_scope.cancel()


async def test_a_run_before_its_check_was_loaded_still_runs(tmp_path):
    """A check taken over from a departed replica runs at once: its run may reach the
    worker before the worker was sent the new share of checks."""
    with HttpTestServer() as server:
        first, both = one_then_two(server, tmp_path)

        async def body(executor):
            await executor.load(first)
            result = await executor.run(both["b"])  # not loaded yet
            assert result.ok, result.message
            assert result.metrics["status_code"] == 200
            assert hits(server, "/b") == 1

        await run_with_workers(tmp_path, body)


async def test_a_run_with_new_options_uses_them_before_the_next_load(tmp_path):
    """A reload that changes a check's options: a run that comes before the workers were
    sent the new configuration uses the new options, not the old ones."""
    with HttpTestServer() as server:
        server.reply("/old", status=200)
        server.reply("/new", status=503)
        old = instances_for(tmp_path, {"a": http_check(server.url("/old"))})
        new = instances_for(tmp_path, {"a": http_check(server.url("/new"))})

        async def body(executor):
            await executor.load(old)
            assert (await executor.run(old["a"])).ok
            result = await executor.run(new["a"])
            assert not result.ok
            assert "503" in result.message
            assert hits(server, "/new") == 1
            await executor.load(new)  # the full load that follows changes nothing
            assert not (await executor.run(new["a"])).ok
            assert hits(server, "/new") == 2

        await run_with_workers(tmp_path, body)


async def test_workers_are_stopped_not_killed_when_the_daemon_stops(tmp_path):
    """Shutdown asks each worker to finish; none is left to be killed after the grace."""
    executor = ProcessExecutor(registry(), tmp_path, 2)
    async with anyio.create_task_group() as tg:
        await tg.start(executor.serve)
        processes = [worker.process for worker in executor.workers]
        tg.cancel_scope.cancel()
    assert [p.returncode for p in processes] == [0, 0]  # a killed worker would show -9


@pytest.mark.slow
def test_a_probe_that_blocks_its_worker_costs_that_worker_not_other_checks(tmp_path, plugin_paths):
    """A probe that blocks its event loop: the worker is replaced after timeout + 5 s, the
    run fails saying so, and the other checks keep starting on time in the other worker
    (`auto` starts two when a third-party probe is in use, even on a one-worker host)."""
    target = Target()
    config = {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "checks": {
            "stuck": {
                "probe": "blocking",
                "seconds": "60s",
                "timeout": "1s",
                "schedule": {"every": "1s"},
            },
            "steady": {
                "probe": "http",
                "url": f"{target.url}/health",
                "timeout": "2s",
                "schedule": {"every": "1s"},
            },
        },
    }
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config))
    try:
        with Daemon(tmp_path, env={"PYTHONPATH": plugin_paths["plugin_pkg_blocking"]}) as daemon:
            workers = [
                child
                for child in psutil.Process(daemon.proc.pid).children()
                if "watchkeeper.engine.run.worker" in " ".join(child.cmdline())
            ]
            assert len(workers) == 2
            daemon.wait_log("probe worker stopped answering; replacing it", timeout=30)
            before, started = target.hits, time.monotonic()
            daemon.wait_log("probe worker stopped answering; replacing it", timeout=30, count=2)
            ran = target.hits - before
            took = time.monotonic() - started
            assert daemon.stop() == 0
    finally:
        target.close()
    # one steady run a second went on while the stuck check blocked worker after worker
    assert ran >= int(took) - 1, f"{ran} runs of `steady` in {took:.1f}s"
    assert "blocked its worker, which was replaced" in daemon.log
    assert "Traceback" not in daemon.log


@pytest.mark.parametrize(
    ("rate", "isolate", "cpus", "expected"),
    [
        (10, False, 2, 1),  # a small config on a two-CPU host: one worker
        (10, True, 2, 2),  # a third-party probe: a second worker to go on while one is stuck
        (5000, False, 8, 4),  # one more per 1,500 runs a second, at most 4
        (5000, False, 2, 1),  # at most one per CPU beyond the first
        (5000, True, 2, 2),
    ],
)
def test_auto_worker_count(monkeypatch, rate, isolate, cpus, expected):
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert worker_count("auto", rate, isolate=isolate) == expected
    assert worker_count(3, rate, isolate=isolate) == 3  # a number is a number
