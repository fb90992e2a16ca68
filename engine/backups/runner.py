"""One backup run: source ► pipeline ► destinations, then manifest and catalog entry.

The catalog entry is written `running` first, so a run cut short by a crash shows up (and
is marked failed at the next start-up). A failed run removes what it had written; a run
that lost some destinations keeps the complete copies (status `partial`) and removes
the broken ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from watchkeeper.engine.backups import manifest as mf
from watchkeeper.engine.backups.catalog import Catalog, new_id
from watchkeeper.engine.backups.pipeline import Pipeline, Progress, describe_error
from watchkeeper.engine.backups.plugin import (
    BackupDestination,
    BackupError,
    BackupSource,
    DumpContext,
)
from watchkeeper.schema.units import format_duration

log = logging.getLogger("watchkeeper.backups")


async def run_backup(
    *,
    name: str,
    job: Any,
    source: BackupSource,
    destinations: dict[str, BackupDestination],
    catalog: Catalog,
    base_dir: Path,
    now: Callable[[], float],
    scheduled: float | None = None,
    progress: Callable[[Progress], Any] | None = None,
) -> dict[str, Any]:
    """Run one backup of job `name` and return its catalog entry (never raises for it)."""
    started = now()
    backup_id = new_id(name, started, await catalog.ids())
    recipients = list(job.encrypt.recipients) if job.encrypt else []
    entry: dict[str, Any] = {
        "id": backup_id,
        "job": name,
        "source": job.source.type,
        "status": "running",
        "started_at": started,
        "finished_at": None,
        "scheduled": scheduled,
        "size_bytes": 0,
        "sha256": None,
        "destinations": [],
        "failed_destinations": {},
        "files": [],
        "encrypted": bool(recipients),
        "recipients": recipients,
        "error": None,
        "info": {},
    }
    await catalog.put(entry)
    log.info("backup started", extra={"job": name, "backup": backup_id})
    folder = mf.folder(name, backup_id)
    pipe: Pipeline | None = None
    error: str | None = None
    info: dict[str, Any] = {}
    deadline = anyio.fail_after(job.timeout)
    try:
        with deadline:
            pipe = Pipeline(
                job=name,
                folder=folder,
                destinations=destinations,
                recipients=recipients,
                progress=progress,
            )
            ctx = DumpContext(
                job=name,
                base_dir=base_dir,
                log=logging.getLogger(f"watchkeeper.backups.{job.source.type}"),
                file=pipe.file,
            )
            info = dict(await source.dump(job.source, ctx) or {})
            if not pipe.files:
                raise BackupError("the source wrote no files")
            manifest = mf.Manifest(
                id=backup_id,
                job=name,
                source=job.source.type,
                started_at=started,
                finished_at=now(),
                files=pipe.files,
                recipients=recipients,
                info=info,
            )
            # the manifest goes last: a folder with one holds a complete backup
            await pipe.put_small(mf.SUMS, mf.sums_text(pipe.files).encode())
            await pipe.put_small(mf.MANIFEST, manifest.to_json())
            if not pipe.alive:
                raise BackupError("every destination failed: " + pipe.failure_text())
    except TimeoutError as exc:
        error = describe_error(exc)
        if deadline.cancel_called:
            error = f"timed out after {format_duration(job.timeout)} (the job's `timeout`)"
    except Exception as exc:
        error = describe_error(exc)
    except BaseException:
        with anyio.CancelScope(shield=True):
            entry.update(status="failed", finished_at=now(), error="interrupted")
            await _remove(pipe, list(destinations), folder)
            await catalog.put(entry)
        raise
    entry["finished_at"] = now()
    entry["info"] = info
    if pipe is not None:
        entry["failed_destinations"] = dict(pipe.failed)
    if error is not None:
        entry.update(status="failed", error=error)
        with anyio.CancelScope(shield=True):
            await _remove(pipe, list(destinations), folder)
        log.error("backup failed", extra={"job": name, "backup": backup_id, "error": error})
    else:
        assert pipe is not None
        good = pipe.alive
        entry.update(
            status="ok" if not pipe.failed else "partial",
            destinations=good,
            files=[f.public() for f in pipe.files],
            size_bytes=sum(f.size for f in pipe.files),
            sha256=mf.Manifest(backup_id, name, "", 0, 0, pipe.files).sha256,
        )
        if pipe.failed:
            entry["error"] = "destination failed: " + pipe.failure_text()
            with anyio.CancelScope(shield=True):
                await _remove(pipe, list(pipe.failed), folder)
        log.log(
            logging.WARNING if pipe.failed else logging.INFO,
            "backup finished",
            extra={
                "job": name,
                "backup": backup_id,
                "status": entry["status"],
                "size_bytes": entry["size_bytes"],
                "seconds": round(entry["finished_at"] - started, 3),
            },
        )
    await catalog.put(entry)
    return entry


async def _remove(pipe: Pipeline | None, names: list[str], folder: str) -> None:
    """Delete what a run wrote at these destinations (best effort)."""
    if pipe is None:
        return
    for name in names:
        destination = pipe.destinations.get(name)
        if destination is None:
            continue
        try:
            with anyio.move_on_after(60):
                keys = sorted(set(pipe.written.get(name, [])) | set(await destination.list(folder)))
                await destination.delete(keys)
        except Exception as exc:
            log.warning(
                "could not remove an incomplete backup",
                extra={"destination": name, "folder": folder, "error": describe_error(exc)},
            )
