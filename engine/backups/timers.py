"""What the daemon's timers ask of backups: catch-up at start-up, overdue every minute.

Part of `Backups` (service.py).
"""

from __future__ import annotations

import logging

from watchkeeper.engine.backups import monitor
from watchkeeper.engine.backups.catalog import is_good, iso
from watchkeeper.engine.backups.runs import RULE_FAILED, RULE_OVERDUE, check_name

log = logging.getLogger("watchkeeper.backups")


class BackupTimers:
    """Runs missed while no daemon ran, runs left unfinished, and backups gone overdue.

    A part of `Backups`, which supplies the jobs, store, catalog, runtime and the runs
    (`run_job`, `run_drill`) used here.
    """

    async def catch_up(self, now: float) -> list[str]:
        """Run once each cron job and drill whose last due run was missed while no daemon ran.

        Also marks runs left `running` by a dead process as failed. Jobs run before drills
        (a drill then tests the fresh backup), one at a time; a job seen for the first time
        is only recorded. Returns the names run. Call it from a task, not inline: a backup
        may take hours.
        """
        await self._close_interrupted(now)
        ran: list[str] = []
        for kind, items in (("backup", self.jobs), ("drill", self.drills)):
            for name, item in items.items():
                if not item.schedule.cron:
                    continue
                key = monitor.state_key(kind, name)
                doc = await self.store.get(monitor.JOBS, key)
                if doc is None:
                    await self.store.put(
                        monitor.JOBS, {key: {"first_seen": now, "last_scheduled": now}}
                    )
                    continue
                due = monitor.previous_due(item.schedule, now, default_tz=self.default_tz, key=key)
                if not monitor.missed(doc, due) or self.paused(name, now):
                    continue
                assert due is not None
                if kind == "backup" and await self._ran_since(name, due):
                    await self._mark_scheduled(kind, name, due)
                    continue
                log.info(
                    f"running a {kind} missed while no daemon ran",
                    extra={kind: name, "due": iso(due)},
                )
                if kind == "backup":
                    result = await self.run_job(name, scheduled=due)
                else:
                    result = await self.run_drill(name, scheduled=due)
                if result.get("status") != "claimed":
                    ran.append(name)
        return ran

    async def _ran_since(self, name: str, at: float) -> bool:
        return any(
            (e.get("started_at") or 0.0) >= at - monitor.SLACK
            for e in await self.catalog.entries(name)
        )

    async def _close_interrupted(self, now: float) -> None:
        for entry in await self.catalog.entries():
            if entry.get("status") != "running":
                continue
            job = self.jobs.get(entry["job"])
            limit = (job.timeout if job else 6 * 3600.0) + 300.0
            if (entry.get("started_at") or 0.0) + limit < now:
                entry.update(
                    status="failed", finished_at=now, error="interrupted: no process finished it"
                )
                await self.catalog.put(entry)

    async def check_overdue(self, now: float) -> None:
        """Raise `overdue` for jobs with no good backup since their last due run + grace.

        Clears `overdue` (and a `failed` alert, when the newest run is good — e.g. a
        manual `backup run` succeeded) as soon as a good backup exists.
        """
        if self.runtime is None:
            return
        for name, job in self.jobs.items():
            if self.paused(name, now):
                continue
            key = monitor.state_key("backup", name)
            doc = await self.store.get(monitor.JOBS, key) or {}
            due = monitor.previous_due(
                job.schedule, now - job.grace, default_tz=self.default_tz, key=key
            )
            entries = await self.catalog.entries(name)
            good = next((e for e in entries if is_good(e)), None)
            late = monitor.overdue(
                good["started_at"] if good else None, due, doc.get("first_seen", now)
            )
            last_good = f"last good backup {good['id']}" if good else "no good backup yet"
            await self.runtime.condition(
                RULE_OVERDUE,
                active=late,
                severity=job.severity,
                summary=(
                    f"backup {name} is overdue: none since the run due {iso(due)}; {last_good}"
                    if late
                    else f"backup {name} is up to date ({last_good})"
                ),
                check=check_name("backup", name),
                labels={**job.labels, "job": name},
            )
            finished = [e for e in entries if e.get("status") != "running"]
            if finished and finished[0].get("status") == "ok":
                await self.runtime.condition(
                    RULE_FAILED,
                    active=False,
                    severity=job.severity,
                    summary=f"backup {name} succeeded ({finished[0]['id']})",
                    check=check_name("backup", name),
                )
