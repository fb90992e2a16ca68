"""Backups in-process: catalog entries, manifests, claims, catch-up of missed runs, overdue
and failed alerts through the runtime, maintenance pauses, retention after a run, and a
failing destination (partial). The `files` source keeps these fast; the databases and S3
have their own test modules.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.engine.alerting.maintenance import Maintenance
from watchkeeper.engine.backups import Backups
from watchkeeper.engine.config.validation import load_config
from watchkeeper.engine.daemon import create_store
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run.runtime import Runtime
from watchkeeper.engine.schedule.clock import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@dataclass
class Harness:
    backups: Backups
    runtime: Runtime
    store: Any
    clock: FakeClock
    base_dir: Path

    def alert(self, check: str, rule: str):
        return self.runtime.book.get_open(check, rule)

    async def close(self) -> None:
        await self.store.close()


async def open_backups(tmp_path: Path, text: str, *, now: float | None = None) -> Harness:
    """Validate a monitor.yaml in tmp_path and build Backups with a runtime on its store."""
    path = tmp_path / "monitor.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    validation = load_config(path)
    reg = registry()
    config = validation.config
    store = create_store(config, reg, validation.base_dir)
    await store.open(role="client")
    clock = FakeClock(now if now is not None else at("2026-12-05T12:00:00"))
    runtime = Runtime(config, reg, store, clock, base_dir=validation.base_dir)
    backups = Backups(
        config=config,
        store=store,
        clock=clock,
        base_dir=validation.base_dir,
        runtime=runtime,
        maintenance=Maintenance(config),
        reg=reg,
    )
    return Harness(backups, runtime, store, clock, validation.base_dir)


FILES_JOB = """
version: 1
state: {type: sqlite, path: state.db}
backups:
  destinations:
    local: {type: local, path: backups}
  jobs:
    config:
      source: {type: files, paths: [monitor.yaml, data/]}
      schedule: {cron: "0 2 * * *", timezone: UTC}
      to: [local]
      grace: 1h
      severity: medium
"""


@pytest.fixture
async def harness(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha\n")
    h = await open_backups(tmp_path, FILES_JOB)
    try:
        yield h
    finally:
        await h.close()


async def test_a_run_writes_files_manifest_sums_and_a_catalog_entry(harness):
    entry = await harness.backups.run_job("config")
    assert entry["status"] == "ok", entry
    assert entry["id"] == "config-20261205T120000Z"
    folder = harness.base_dir / "backups" / "config" / entry["id"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS",
        "files.tar.gz",
        "manifest.json",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["job"] == "config"
    assert manifest["source"] == "files"
    assert manifest["files"] == entry["files"]
    sums = (folder / "SHA256SUMS").read_bytes()
    import hashlib

    assert hashlib.sha256(sums).hexdigest() == entry["sha256"] == manifest["sha256"]
    stored = await harness.backups.catalog.get(entry["id"])
    assert stored["status"] == "ok"
    assert stored["destinations"] == ["local"]
    assert entry["size_bytes"] == (folder / "files.tar.gz").stat().st_size


async def test_a_second_run_in_the_same_second_gets_its_own_id(harness):
    first = await harness.backups.run_job("config")
    second = await harness.backups.run_job("config")
    assert second["id"] == first["id"] + "-2"


async def test_an_unknown_job_raises_key_error(harness):
    with pytest.raises(KeyError):
        await harness.backups.run_job("nope")


async def test_a_scheduled_run_is_claimed_once(harness):
    due = at("2026-12-05T02:00:00")
    first = await harness.backups.run_job("config", scheduled=due)
    again = await harness.backups.run_job("config", scheduled=due)
    assert first["status"] == "ok"
    assert again == {"id": None, "job": "config", "status": "claimed", "scheduled": due}
    assert await harness.store.get("claims", f"backup|config|{due:.0f}") is not None


async def test_a_failed_source_fails_the_run_alerts_and_leaves_nothing(tmp_path):
    h = await open_backups(tmp_path, FILES_JOB)  # data/ does not exist
    try:
        entry = await h.backups.run_job("config")
        assert entry["status"] == "failed"
        assert "data/: no such file or folder" in entry["error"]
        assert not (tmp_path / "backups" / "config").exists()
        alert = h.alert("backup:config", "failed")
        assert alert is not None
        assert alert.severity == "medium"
        assert "data/" in alert.summary
        (tmp_path / "data").mkdir()
        ok = await h.backups.run_job("config")
        assert ok["status"] == "ok"
        assert h.alert("backup:config", "failed") is None
    finally:
        await h.close()


async def test_a_failing_destination_makes_a_partial_backup_and_keeps_the_good_copy(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha\n")
    h = await open_backups(
        tmp_path,
        FILES_JOB.replace(
            "    local: {type: local, path: backups}",
            "    local: {type: local, path: backups}\n    broken: {type: local, path: not-a-dir/x}",
        ).replace("to: [local]", "to: [local, broken]"),
    )
    try:
        entry = await h.backups.run_job("config")
        assert entry["status"] == "partial", entry
        assert entry["destinations"] == ["local"]
        assert "broken" in entry["failed_destinations"]
        assert "broken" in entry["error"]
        assert (tmp_path / "backups" / "config" / entry["id"] / "manifest.json").exists()
        alert = h.alert("backup:config", "failed")
        assert alert is not None
        assert "incomplete" in alert.summary
        # the partial copy is good enough to restore from
        result = await h.backups.restore(entry["id"], str(tmp_path / "restored"))
        assert result["from"] == "local"
        assert (tmp_path / "restored" / "data" / "a.txt").read_text() == "alpha\n"
    finally:
        await h.close()


async def test_every_destination_failing_fails_the_run(tmp_path):
    (tmp_path / "blocker").write_text("x")
    (tmp_path / "data").mkdir()
    h = await open_backups(
        tmp_path,
        FILES_JOB.replace("{type: local, path: backups}", "{type: local, path: blocker/b}"),
    )
    try:
        entry = await h.backups.run_job("config")
        assert entry["status"] == "failed"
        assert "every destination failed" in entry["error"]
        assert entry["destinations"] == []
    finally:
        await h.close()


# -- time: catch-up and overdue ---------------------------------------------------------------


async def test_a_new_job_is_recorded_not_run(harness):
    assert await harness.backups.catch_up(harness.clock.now()) == []
    doc = await harness.store.get("jobs", "backup:config")
    assert doc["first_seen"] == harness.clock.now()
    assert await harness.backups.catalog.entries() == []


async def test_a_run_missed_while_no_daemon_ran_runs_once_not_per_missed_day(harness):
    seen = at("2026-12-01T12:00:00")
    await harness.store.put("jobs", {"backup:config": {"first_seen": seen, "last_scheduled": seen}})
    # four 02:00 runs passed while nothing ran
    ran = await harness.backups.catch_up(harness.clock.now())
    assert ran == ["config"]
    entries = await harness.backups.catalog.entries("config")
    assert len(entries) == 1
    assert entries[0]["scheduled"] == at("2026-12-05T02:00:00")
    assert await harness.backups.catch_up(harness.clock.now()) == []
    doc = await harness.store.get("jobs", "backup:config")
    assert doc["last_scheduled"] == at("2026-12-05T02:00:00")


async def test_catch_up_skips_a_job_that_a_manual_run_already_covered(harness):
    seen = at("2026-12-01T12:00:00")
    await harness.store.put("jobs", {"backup:config": {"first_seen": seen, "last_scheduled": seen}})
    harness.clock.set(at("2026-12-05T03:00:00"))
    await harness.backups.run_job("config")  # manual, after the 02:00 due time
    harness.clock.set(at("2026-12-05T12:00:00"))
    assert await harness.backups.catch_up(harness.clock.now()) == []


async def test_catch_up_marks_runs_left_running_by_a_dead_process(harness):
    await harness.backups.catalog.put(
        {"id": "config-old", "job": "config", "status": "running",
         "started_at": at("2026-12-04T02:00:00"), "destinations": []}
    )  # fmt: skip
    await harness.backups.catch_up(harness.clock.now())
    entry = await harness.backups.catalog.get("config-old")
    assert entry["status"] == "failed"
    assert "interrupted" in entry["error"]


async def test_overdue_fires_after_grace_and_clears_with_a_good_backup(harness):
    await harness.store.put("jobs", {"backup:config": {"first_seen": at("2026-12-01T00:00:00")}})
    harness.clock.set(at("2026-12-04T02:00:00"))
    await harness.backups.run_job("config", scheduled=harness.clock.now())  # yesterday's: fine
    harness.clock.set(at("2026-12-05T02:30:00"))  # today's due 02:00, grace 1h: not yet
    await harness.backups.check_overdue(harness.clock.now())
    assert harness.alert("backup:config", "overdue") is None
    harness.clock.set(at("2026-12-05T03:00:01"))
    await harness.backups.check_overdue(harness.clock.now())
    alert = harness.alert("backup:config", "overdue")
    assert alert is not None
    assert alert.severity == "medium"
    assert "2026-12-05T02:00:00" in alert.summary
    await harness.backups.run_job("config")
    assert harness.alert("backup:config", "overdue") is None
    await harness.backups.check_overdue(harness.clock.now())
    assert harness.alert("backup:config", "overdue") is None


async def test_a_job_added_after_its_due_time_is_not_overdue(harness):
    await harness.store.put("jobs", {"backup:config": {"first_seen": at("2026-12-05T10:00:00")}})
    await harness.backups.check_overdue(at("2026-12-05T12:00:00"))
    assert harness.alert("backup:config", "overdue") is None


async def test_check_overdue_clears_failed_when_a_manual_run_succeeded(tmp_path):
    h = await open_backups(tmp_path, FILES_JOB)
    try:
        await h.backups.run_job("config")  # data/ missing: failed
        assert h.alert("backup:config", "failed") is not None
        # another process (the CLI) makes a good backup; the daemon's next check clears
        (tmp_path / "data").mkdir()
        other = Backups(config=h.backups.config, store=h.store, clock=h.clock,
                        base_dir=h.base_dir, reg=h.backups.reg)  # fmt: skip
        await other.run_job("config")
        await h.backups.check_overdue(h.clock.now())
        assert h.alert("backup:config", "failed") is None
    finally:
        await h.close()


PAUSED = (
    FILES_JOB
    + """
maintenance:
  - name: storage-move
    start: 2026-12-05T01:00:00Z
    end: 2026-12-05T04:00:00Z
    effect: pause
    backups: [config]
  - name: checks-only
    start: 2026-12-05T01:00:00Z
    end: 2026-12-05T04:00:00Z
    effect: pause
    checks: [something]
"""
)


async def test_pause_windows_scoped_to_backups_pause_the_job(tmp_path):
    (tmp_path / "data").mkdir()
    drills = "\n  drills:\n    config-drill: {job: config, schedule: {cron: '0 5 * * *'}}"
    text = PAUSED.replace("      severity: medium", "      severity: medium" + drills)
    text = text.replace(
        "version: 1", "version: 1\nchecks:\n  something: {probe: env, require: [HOME]}"
    )
    h = await open_backups(tmp_path, text)
    try:
        assert h.backups.paused("config", at("2026-12-05T02:00:00"))
        assert h.backups.paused("config-drill", at("2026-12-05T02:00:00"))  # via its job
        assert not h.backups.paused("config", at("2026-12-05T04:00:00"))
    finally:
        await h.close()


# -- retention after a run ----------------------------------------------------------------------


async def test_retention_runs_after_a_good_backup(tmp_path):
    (tmp_path / "data").mkdir()
    h = await open_backups(
        tmp_path,
        FILES_JOB.replace("      grace: 1h", "      grace: 1h\n      retention: {keep_daily: 2}"),
    )
    try:
        ids = []
        for day in ("01", "02", "03", "04"):
            h.clock.set(at(f"2026-12-{day}T02:00:00"))
            ids.append((await h.backups.run_job("config"))["id"])
        remaining = [e["id"] for e in await h.backups.catalog.entries("config")]
        assert remaining == [ids[3], ids[2]]
        on_disk = sorted(p.name for p in (tmp_path / "backups" / "config").iterdir())
        assert on_disk == sorted(remaining)
    finally:
        await h.close()


async def test_the_backup_finished_hook_sees_the_entry(tmp_path):
    from watchkeeper.engine.hookspecs import hookimpl

    seen = []

    class Listener:
        @hookimpl
        def watchkeeper_backup_finished(self, backup):
            seen.append(backup)

    (tmp_path / "data").mkdir()
    h = await open_backups(tmp_path, FILES_JOB)
    listener = Listener()
    h.backups.reg.manager.register(listener)
    try:
        entry = await h.backups.run_job("config")
        assert [b["id"] for b in seen] == [entry["id"]]
    finally:
        h.backups.reg.manager.unregister(listener)
        await h.close()
