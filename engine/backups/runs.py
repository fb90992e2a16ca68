"""Running a backup job or drill now: the claim across replicas, the run, its alerts.

The daemon calls `run_job`/`run_drill` at a fire time (with `scheduled`); the `backup run`
and `backup drill` commands call them at once. Part of `Backups` (service.py).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import anyio

from watchkeeper.engine.alerting import events
from watchkeeper.engine.backups import crons, monitor
from watchkeeper.engine.backups.catalog import is_good
from watchkeeper.engine.backups.pipeline import Progress, describe_error
from watchkeeper.engine.backups.runner import run_backup

log = logging.getLogger("watchkeeper.backups")

CLAIMS = "claims"
RULE_FAILED = "failed"
RULE_OVERDUE = "overdue"


def check_name(kind: str, name: str) -> str:
    """Return the alert `check` of a backup job or drill: `backup:<job>`, `drill:<name>`."""
    return f"{kind}:{name}"


class BackupRuns:
    """Runs of backup jobs and drills: claimed once across replicas, checked in, alerted.

    A part of `Backups`, which supplies the configuration, store, clock, catalog,
    runtime and destinations used here.
    """

    async def _claim(self, kind: str, name: str, scheduled: float) -> bool:
        holder = f"{socket.gethostname()}:{os.getpid()}"
        return await self.store.insert_once(
            CLAIMS, f"{kind}|{name}|{scheduled:.0f}", {"at": self.clock.now(), "holder": holder}
        )

    async def _mark_scheduled(self, kind: str, name: str, scheduled: float) -> None:
        key = monitor.state_key(kind, name)
        doc = await self.store.get(monitor.JOBS, key) or {"first_seen": scheduled}
        doc["last_scheduled"] = max(scheduled, doc.get("last_scheduled", 0.0))
        await self.store.put(monitor.JOBS, {key: doc})

    async def run_job(
        self,
        name: str,
        *,
        scheduled: float | None = None,
        progress: Callable[[Progress], Any] | None = None,
    ) -> dict[str, Any]:
        """Run backup job `name` now and return its catalog entry.

        With `scheduled` (the fire time) the run is first claimed insert-once as
        `backup|<job>|<scheduled>`; a run another replica claimed returns
        `{"id": None, "job", "status": "claimed", "scheduled"}`. A failed backup is
        recorded and alerted, never raised; an unknown job raises KeyError.
        """
        job = self.jobs[name]
        if scheduled is not None:
            if not await self._claim("backup", name, scheduled):
                return {"id": None, "job": name, "status": "claimed", "scheduled": scheduled}
            await self._mark_scheduled("backup", name, scheduled)
        lock = self._running.setdefault(name, anyio.Lock())
        async with lock:
            slug = f"backup-{name}"
            config = crons.monitor_config(job, self.default_tz)
            check_in = await self.crons.checkin(slug, "in_progress", config=config)
            destinations = {}
            try:
                destinations = self.open_destinations(list(job.to))
                entry = await run_backup(
                    name=name,
                    job=job,
                    source=self.source(job.source.type),
                    destinations=destinations,
                    catalog=self.catalog,
                    base_dir=self.base_dir,
                    now=self.clock.now,
                    scheduled=scheduled,
                    progress=progress,
                )
            finally:
                await self.close_destinations(destinations)
            await self.crons.checkin(
                slug,
                "ok" if entry["status"] == "ok" else "error",
                check_in_id=check_in,
                duration=(entry["finished_at"] or entry["started_at"]) - entry["started_at"],
                config=config,
            )
            if is_good(entry):
                try:
                    await self.apply_retention(name)
                except Exception as exc:
                    log.warning(
                        "retention failed", extra={"job": name, "error": describe_error(exc)}
                    )
            await self._alert_run(name, entry)
            if self.reg is not None:
                await events.emit(self.reg.manager, "watchkeeper_backup_finished", backup=entry)
        return entry

    async def _alert_run(self, name: str, entry: dict[str, Any]) -> None:
        if self.runtime is None:
            return
        job = self.jobs.get(name)
        if job is None:
            return
        status = entry["status"]
        if status == "failed":
            summary = f"backup {name} failed: {entry.get('error')}"
        elif status == "partial":
            summary = f"backup {name} is incomplete: {entry.get('error')}"
        else:
            summary = f"backup {name} succeeded ({entry['id']})"
        await self.runtime.condition(
            RULE_FAILED,
            active=status != "ok",
            severity=job.severity,
            summary=summary,
            check=check_name("backup", name),
            labels={**job.labels, "job": name},
        )
        if is_good(entry):
            await self.runtime.condition(
                RULE_OVERDUE,
                active=False,
                severity=job.severity,
                summary=f"backup {name} succeeded ({entry['id']})",
                check=check_name("backup", name),
            )

    async def run_drill(self, name: str, *, scheduled: float | None = None) -> dict[str, Any]:
        """Run drill `name` now and return its record (claimed like `run_job`)."""
        from watchkeeper.engine.backups.drills import run_drill

        drill = self.drills[name]
        if scheduled is not None:
            if not await self._claim("drill", name, scheduled):
                return {"id": None, "drill": name, "status": "claimed", "scheduled": scheduled}
            await self._mark_scheduled("drill", name, scheduled)
        record = await run_drill(self, name, scheduled=scheduled)
        if self.runtime is not None:
            await self.runtime.condition(
                RULE_FAILED,
                active=record["status"] != "ok",
                severity=drill.severity,
                summary=(
                    f"restore drill {name} failed: {record['error']}"
                    if record["status"] != "ok"
                    else f"restore drill {name} passed ({record['backup']})"
                ),
                check=check_name("drill", name),
                labels={"job": drill.job, "drill": name},
            )
        return record
