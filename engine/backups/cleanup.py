"""Deleting the backups a job's retention no longer keeps (`backup cleanup`, and after
each good run). Which ones go is decided in `retention.py`.

Part of `Backups` (service.py).
"""

from __future__ import annotations

import logging
from typing import Any

from watchkeeper.engine.backups import manifest as mf
from watchkeeper.engine.backups import retention
from watchkeeper.engine.backups.catalog import iso
from watchkeeper.engine.backups.pipeline import describe_error

log = logging.getLogger("watchkeeper.backups")


class BackupCleanup:
    """Retention applied: backups deleted from their destinations, then from the catalog.

    A part of `Backups`, which supplies the jobs, clock, catalog and destinations used
    here.
    """

    async def apply_retention(
        self, name: str, *, dry_run: bool = False, now: float | None = None
    ) -> list[dict[str, Any]]:
        """Delete the backups of job `name` its retention no longer keeps.

        Returns one row per deleted (or, with `dry_run`, deletable) backup:
        `{"id", "job", "started_at", "destinations", "deleted": bool, "error"}`.
        """
        job = self.jobs[name]
        now = self.clock.now() if now is None else now
        decision = retention.decide(
            await self.catalog.entries(name), job.retention, now, self.job_tz(job)
        )
        rows = []
        for entry in decision.delete:
            row = {
                "id": entry["id"],
                "job": name,
                "started_at": iso(entry.get("started_at")),
                "status": entry.get("status"),
                "destinations": list(entry.get("destinations") or []),
                "deleted": False,
                "error": None,
            }
            if not dry_run:
                row["error"] = await self._delete_backup(entry)
                row["deleted"] = row["error"] is None
            rows.append(row)
        return rows

    async def _delete_backup(self, entry: dict[str, Any]) -> str | None:
        """Remove a backup from its destinations and the catalog; return an error or None."""
        folder = mf.folder(entry["job"], entry["id"])
        configured = self.config.backups.destinations
        names = [d for d in entry.get("destinations") or [] if d in configured]
        errors = []
        destinations = self.open_destinations(names)
        try:
            for dest_name, destination in destinations.items():
                try:
                    keys = await destination.list(folder)
                    # the manifest first: a half-deleted folder must not look complete
                    keys.sort(key=lambda k: not k.endswith("/" + mf.MANIFEST))
                    await destination.delete(keys)
                except Exception as exc:
                    errors.append(f"{dest_name}: {describe_error(exc)}")
        finally:
            await self.close_destinations(destinations)
        if errors:
            return "; ".join(errors)
        await self.catalog.delete([entry["id"]])
        log.info("backup deleted by retention", extra={"job": entry["job"], "backup": entry["id"]})
        return None

    async def cleanup(
        self, *, dry_run: bool = False, jobs: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Apply every job's retention (`backup cleanup`)."""
        rows = []
        for name in jobs or list(self.jobs):
            rows += await self.apply_retention(name, dry_run=dry_run)
        return rows
