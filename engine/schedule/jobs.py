"""What the daemon schedules and how a due job runs: checks, backups, drills and tasks,
held by pause windows and caught up at start-up.

A part of `Daemon` (engine/daemon.py), which holds the scheduler and the runtime.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from watchkeeper.engine.config.instances import Instance
from watchkeeper.engine.reports.report import task_report
from watchkeeper.engine.schedule.scheduler import Job

log = logging.getLogger("watchkeeper.daemon")


class Jobs:
    """The daemon's jobs on the scheduler."""

    def schedule_all(self) -> None:
        for instance in self.runtime.instances.values():
            self._schedule(instance)
        self._schedule_jobs()

    def _schedule_jobs(self) -> None:
        """(Re)schedule tasks, backups and drills; keys match `plan` (`task:NAME`...)."""
        for key in [k for k in self.scheduler.jobs if k.startswith(("task:", "backup:", "drill:"))]:
            self.scheduler.remove(key)
        tz = self.config.defaults.timezone or "UTC"
        for kind, entries in (
            ("task", self.config.tasks),
            ("backup", self.config.backups.jobs),
            ("drill", self.config.backups.drills),
        ):
            for name, entry in entries.items():
                self.scheduler.add(
                    f"{kind}:{name}", kind, entry.schedule, target=name, default_tz=tz
                )

    async def catch_up(self) -> None:
        """Run once each cron task whose run was missed while no daemon ran."""

        from watchkeeper.engine.schedule.timetable import previous_fire

        now = self.clock.now()
        for name, task in self.config.tasks.items():
            if task.schedule.cron is None:
                continue
            key = f"task:{name}"
            doc = await self.store.get("jobs", key)
            tz = task.schedule.timezone or self.config.defaults.timezone or "UTC"
            due = previous_fire(task.schedule.cron, tz, datetime.fromtimestamp(now, UTC))
            if doc is None:
                await self.store.put("jobs", {key: {"last_scheduled": now}})
            elif due is not None and doc.get("last_scheduled", 0) < due.timestamp():
                log.info(
                    "running a task missed while no daemon ran",
                    extra={"task": name, "due": due.isoformat()},
                )
                await self._run_task(name, due.timestamp())

    def _gate(self, job: Job, scheduled: float) -> bool:
        """Skip runs a pause window covers; they run once when the window ends."""
        if not self.config.maintenance:
            return True
        if job.kind in ("backup", "drill"):
            if self.backups.paused(job.target, scheduled):
                self.paused_jobs[job.key] = job
                return False
            return True
        if job.kind != "check":
            return True
        instance = job.target
        window = self.maintenance.paused(
            scheduled, instance.check, instance.environment, instance.labels
        )
        if window is None:
            return True
        self.paused_jobs[job.key] = job
        return False

    def _heartbeat_paused(self, key: str, at: float) -> bool:
        instance = self.runtime.instances.get(key)
        return (
            instance is not None
            and self.maintenance.paused(at, instance.check, instance.environment, instance.labels)
            is not None
        )

    async def _window_boundary(self, at: float) -> None:
        """A window started or ended: run what a pause skipped, extend heartbeat deadlines."""
        for key, job in list(self.paused_jobs.items()):
            if job.kind in ("backup", "drill"):
                still = self.backups.paused(job.target, at)
            else:
                instance = job.target
                still = (
                    self.maintenance.paused(
                        at, instance.check, instance.environment, instance.labels
                    )
                    is not None
                )
            if not still:
                del self.paused_jobs[key]
                self.scheduler.start_now(job)
        self.heartbeats.credit_pauses(self.maintenance, at)

    def _schedule(self, instance: Instance) -> None:
        if instance.schedule is None:
            return
        self.scheduler.add(
            f"check:{instance.key}",
            "check",
            instance.schedule,
            target=instance,
            default_tz=instance.timezone,
            series_key=instance.key,
        )

    async def _run_job(self, job: Job, scheduled: float) -> None:
        if job.kind == "check":
            await self.run_check(job.target)
        elif job.kind == "task":
            await self._run_task(job.target, scheduled)
        elif job.kind in ("backup", "drill") and self.dry_run:
            log.info(f"dry run: {job.kind} not run", extra={job.kind: job.target})
        elif job.kind == "backup":
            await self.backups.run_job(job.target, scheduled=scheduled)
        elif job.kind == "drill":
            await self.backups.run_drill(job.target, scheduled=scheduled)

    async def _run_task(self, name: str, scheduled: float) -> None:
        # one post per scheduled time, however many daemons share the store
        if await self.store.insert_once(
            "claims", f"task|{name}|{scheduled:.0f}", {"at": self.clock.now()}
        ):
            await self.alerting.post_task(name, report=await task_report(self, name))
        self.writer.put("jobs", f"task:{name}", {"last_scheduled": scheduled})

    async def run_check(self, instance: Instance) -> None:
        """Run one check now and take its result through the runtime."""
        result = await self.executor.run(instance)
        await self.runtime.ingest(instance, result)
