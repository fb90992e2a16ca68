"""What travels between the daemon and its probe workers, and how much a worker keeps."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest

from tests.worker_kit import http_check, instances_for
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run.executor import ProcessExecutor
from watchkeeper.engine.run.runspec import OptionsRecord
from watchkeeper.engine.run.worker import WorkerState, split_frames
from watchkeeper.engine.run.writer import StateWriter
from watchkeeper.engine.state.store import Row
from watchkeeper.engine.testing import HttpTestServer
from watchkeeper.plugins.stores.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.parametrize("window", [0.004])
async def test_runs_due_within_milliseconds_share_one_frame_and_all_come_back(tmp_path, window):
    with HttpTestServer() as server:
        server.reply("/ok", status=200)
        instances = instances_for(
            tmp_path, {f"c{i}": http_check(server.url(f"/ok?{i}")) for i in range(40)}
        )
        executor = ProcessExecutor(registry(), tmp_path, 1, window=window)
        frames: list[tuple] = []
        async with anyio.create_task_group() as tg:
            await tg.start(executor.serve)
            await executor.load(instances)
            worker = executor.workers[0]
            send = worker.send

            async def counting(message):
                frames.append(message)
                await send(message)

            worker.send = counting  # type: ignore[method-assign]
            results = {}

            async def one(index, key):
                await anyio.sleep(index * 0.00005)  # due over 2 ms, as a schedule spreads them
                results[key] = await executor.run(instances[key])

            async with anyio.create_task_group() as runs:
                for index, key in enumerate(instances):
                    runs.start_soon(one, index, key)
            tg.cancel_scope.cancel()
    assert all(r.ok for r in results.values()), [r.message for r in results.values()]
    assert len(results) == 40
    runs_sent = [m for m in frames if m[0] == "runs"]
    assert sum(len(m[1]) for m in runs_sent) == 40
    assert len(runs_sent) <= 2  # one frame (two when the first run comes alone)


async def test_a_worker_keeps_option_records_with_equal_values_shared(tmp_path):
    instances = instances_for(
        tmp_path,
        {
            "a": http_check("http://127.0.0.1:9/a"),
            "b": http_check("http://127.0.0.1:9/b", headers={"X-Token": "t"}),
            "c": http_check("http://127.0.0.1:9/c", headers={"X-Token": "t"}),
        },
    )
    data = ProcessExecutor(registry(), tmp_path, 1)._load_frame("load", instances)
    state = WorkerState(tmp_path)
    state.take(split_frames(bytearray(data))[0])
    a, b, c = (state.specs[k] for k in "abc")
    assert isinstance(a.options, OptionsRecord)
    assert not hasattr(a.options, "model_fields")  # not a pydantic model
    assert a.options.url == "http://127.0.0.1:9/a"
    assert a.options.expect is b.options.expect  # one default `expect:` for all
    assert b.options.headers is c.options.headers == {"X-Token": "t"}
    assert a.options.headers == {}
    assert (a.timeout, a.check, a.environment) == (5.0, "a", None)


async def test_a_worker_answers_from_its_records_as_the_daemon_would(tmp_path):
    with HttpTestServer() as server:
        server.reply("/down", status=503)
        instances = instances_for(tmp_path, {"d": http_check(server.url("/down"))})
        data = ProcessExecutor(registry(), tmp_path, 1)._load_frame("load", instances)
        state = WorkerState(tmp_path)
        state.take(split_frames(bytearray(data))[0])
        try:
            result = await state.run("d")
            unknown = await state.run("nope")
        finally:
            await state.executor.close()
    assert not result.ok
    assert "503" in result.message
    assert result.metrics["status_code"] == 503
    assert not unknown.ok
    assert "does not know check 'nope'" in unknown.message


def test_a_worker_of_http_checks_imports_no_other_probe(tmp_path):
    instances = instances_for(tmp_path, {"a": http_check("http://127.0.0.1:9/a")})
    frame_file = tmp_path / "frame.bin"
    frame_file.write_bytes(ProcessExecutor(registry(), tmp_path, 1)._load_frame("load", instances))
    code = f"""
import sys, anyio
from pathlib import Path
from watchkeeper.engine.run.worker import WorkerState, split_frames
state = WorkerState(Path({str(tmp_path)!r}))
state.take(split_frames(bytearray(Path({str(frame_file)!r}).read_bytes()))[0])
anyio.run(state.run, "a")
probes = sorted(m for m in sys.modules if m.startswith("watchkeeper.plugins.probes."))
print(" ".join(probes))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "watchkeeper.plugins.probes.http" in loaded
    others = {m for m in loaded if not m.startswith("watchkeeper.plugins.probes.http")}
    assert not others, others


async def test_one_writer_flush_is_one_sqlite_transaction(tmp_path):
    store = SqliteStore(SqliteStore.Options(path="state.db"), base_dir=tmp_path)
    await store.open()
    try:
        writer = StateWriter(store)
        for i in range(50):
            writer.append("results", Row(key=f"c{i}", at=1000.0 + i, data={"ok": True}))
            writer.put("check_state", f"c{i}", {"down": False})
        writer.delete("alerts", "gone")
        before = store._writer.transactions
        assert await writer.flush()
        assert store._writer.transactions == before + 1
        assert writer.pending() == 0
        assert len(await store.read("results")) == 50
        assert (await store.get("check_state", "c7")) == {"down": False}
    finally:
        await store.close()
