"""Restore drills: prove the latest good backup of a job restores and holds what it should.

A drill restores the backup into a scratch database created on `scratch_dsn`'s server
(named `wk_drill_<drill>_<time>`; file backups go to a fresh folder under `scratch_dir`
or a temporary one), runs its `verify` checks against the copy, compares the restored
row count with `min_rows`, records the outcome in the catalog's `drills` collection and
drops the scratch copy whatever happened. A check listed in `verify` whose `dsn` names
the job's source database is pointed at the scratch database; other checks run as
written (the record says which were pointed at the copy).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import SecretStr

from watchkeeper.engine.backups import encryption
from watchkeeper.engine.backups import postgres as pg
from watchkeeper.engine.backups.pipeline import describe_error
from watchkeeper.engine.backups.plugin import BackupError
from watchkeeper.engine.backups.restore import manifest_of, restore

if TYPE_CHECKING:
    from watchkeeper.engine.backups.service import Backups

log = logging.getLogger("watchkeeper.backups.drills")


def local_path(base_dir: Path, path: str) -> Path:
    """Return a path from monitor.yaml (`~` expanded, relative to its folder)."""
    return base_dir / os.path.expanduser(path)


def _secret(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value if isinstance(value, str) else None


async def _run_checks(
    backups: Backups, names: list[str], source_dsn: str | None, copy_dsn: str | None
) -> list[dict[str, Any]]:
    from watchkeeper.engine.config.instances import expand
    from watchkeeper.engine.run.executor import LocalExecutor

    instances = expand(backups.config, backups.reg)
    chosen = [i for i in instances.values() if i.key in names or i.check in names]
    executor = LocalExecutor(backups.reg, backups.base_dir)
    results = []
    try:
        for instance in chosen:
            dsn = _secret(getattr(instance.options, "dsn", None))
            pointed = bool(dsn and source_dsn and copy_dsn and pg.same_database(dsn, source_dsn))
            if pointed:
                options = instance.options.model_copy(update={"dsn": SecretStr(copy_dsn)})
                instance = dataclasses.replace(instance, options=options)
            result = await executor.run(instance)
            results.append(
                {
                    "check": instance.key,
                    "ok": result.ok,
                    "message": result.message,
                    "pointed_at_copy": pointed,
                }
            )
    finally:
        await executor.close()
    return results


async def run_drill(backups: Backups, name: str, *, scheduled: float | None) -> dict[str, Any]:
    """Run one drill now and return its record (also stored in the `drills` collection)."""
    drill = backups.config.backups.drills[name]
    started = backups.clock.now()
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    record: dict[str, Any] = {
        "id": f"{name}-{stamp}",
        "drill": name,
        "job": drill.job,
        "backup": None,
        "status": "running",
        "started_at": started,
        "finished_at": None,
        "scheduled": scheduled,
        "checks": [],
        "rows": None,
        "restore": None,
        "error": None,
    }
    await backups.catalog.put_drill(record)
    try:
        with anyio.fail_after(drill.timeout):
            await _drill(backups, name, drill, record)
        record["status"] = "ok"
    except TimeoutError:
        record["status"], record["error"] = "failed", "timed out (the drill's `timeout`)"
    except Exception as exc:
        record["status"], record["error"] = "failed", describe_error(exc)
    record["finished_at"] = backups.clock.now()
    await backups.catalog.put_drill(record)
    log.log(
        logging.INFO if record["status"] == "ok" else logging.ERROR,
        "drill finished",
        extra={"drill": name, "status": record["status"], "error": record["error"]},
    )
    return record


async def _drill(backups: Backups, name: str, drill: Any, record: dict[str, Any]) -> None:
    job = backups.config.backups.jobs.get(drill.job)
    if job is None:
        raise BackupError(f"backup job {drill.job!r} is not configured")
    entry = await backups.catalog.latest_good(drill.job)
    if entry is None:
        raise BackupError(f"job {drill.job!r} has no good backup to restore")
    record["backup"] = entry["id"]
    source = backups.source(job.source.type)
    identities = (
        encryption.load_identities(local_path(backups.base_dir, drill.identity))
        if drill.identity
        else None
    )
    destinations = backups.open_destinations(
        [d for d in entry.get("destinations", []) if d in backups.config.backups.destinations]
    )
    if not destinations:
        raise BackupError(f"none of the destinations of {entry['id']} is configured any more")
    try:
        if source.restores_to == "database":
            await _database_drill(
                backups, drill, job, entry, source, destinations, identities, record
            )
        else:
            await _directory_drill(
                backups, drill, job, entry, source, destinations, identities, record
            )
    finally:
        await backups.close_destinations(destinations)


async def _database_drill(backups, drill, job, entry, source, destinations, identities, record):
    if drill.scratch_dsn is None:
        raise BackupError("the drill has no scratch_dsn to restore into")
    scratch = pg.with_dbname(
        drill.scratch_dsn.get_secret_value(),
        pg.scratch_name("wk_drill", f"{record['drill']}_{record['id'].rsplit('-', 1)[-1]}"),
    )
    if await pg.database_exists(scratch):
        raise BackupError(f"scratch database {pg.dbname(scratch)!r} already exists")
    try:
        facts = await restore(
            manifest=manifest_of(entry),
            source=source,
            options=job.source,
            destinations=list(destinations.values()),
            target=scratch,
            identities=identities,
            base_dir=backups.base_dir,
        )
        record["restore"] = {k: v for k, v in facts.items() if k not in ("notes",)}
        counts = await pg.row_counts(scratch)
        record["rows"] = sum(counts.values())
        source_dsn = _secret(getattr(job.source, "dsn", None))
        record["checks"] = await _run_checks(backups, list(drill.verify), source_dsn, scratch)
        _judge(drill, record)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(60):
            try:
                await pg.drop_database(scratch)
            except Exception as exc:
                log.warning(
                    "could not drop the scratch database",
                    extra={"database": pg.dbname(scratch), "error": describe_error(exc)},
                )


async def _directory_drill(backups, drill, job, entry, source, destinations, identities, record):
    parent = (
        local_path(backups.base_dir, drill.scratch_dir)
        if drill.scratch_dir
        else Path(tempfile.gettempdir())
    )
    folder = parent / f"wk-drill-{record['id']}"
    try:
        facts = await restore(
            manifest=manifest_of(entry),
            source=source,
            options=job.source,
            destinations=list(destinations.values()),
            target=str(folder),
            identities=identities,
            base_dir=backups.base_dir,
        )
        record["restore"] = {k: v for k, v in facts.items() if k not in ("notes",)}
        record["checks"] = await _run_checks(backups, list(drill.verify), None, None)
        _judge(drill, record)
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))


def _judge(drill: Any, record: dict[str, Any]) -> None:
    failing = [c for c in record["checks"] if not c["ok"]]
    if failing:
        raise BackupError(
            "verify check(s) failed on the restored copy: "
            + "; ".join(f"{c['check']}: {c['message']}" for c in failing)
        )
    if drill.min_rows is not None and (record["rows"] or 0) < drill.min_rows:
        raise BackupError(
            f"the restored copy holds {record['rows'] or 0} rows, fewer than min_rows "
            f"{drill.min_rows}"
        )
