"""The daemon: one anyio task group running the scheduler, heartbeats, the state writer and
the rest, with reload on SIGHUP or a changed config file and a bounded, clean shutdown.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from watchkeeper.engine.alerting import events
from watchkeeper.engine.alerting.actions import ActionRunner
from watchkeeper.engine.alerting.alerting import Alerting
from watchkeeper.engine.alerting.maintenance import Maintenance
from watchkeeper.engine.alerting.outbox import Outbox
from watchkeeper.engine.backups import Backups
from watchkeeper.engine.config.instances import Instance, expand
from watchkeeper.engine.config.problems import ConfigError, Problem
from watchkeeper.engine.config.process import (
    KEEPS_RUNNING,
    ConfigLimitError,
    aload_config_isolated,
)
from watchkeeper.engine.config.validation import Validation
from watchkeeper.engine.plugins import Registry, registry
from watchkeeper.engine.reports import slo
from watchkeeper.engine.reports.report import task_report
from watchkeeper.engine.run.executor import LocalExecutor, ProcessExecutor
from watchkeeper.engine.run.heartbeats import Heartbeats
from watchkeeper.engine.run.intake import Intake
from watchkeeper.engine.run.runtime import Runtime
from watchkeeper.engine.run.writer import StateWriter
from watchkeeper.engine.schedule.clock import Clock
from watchkeeper.engine.schedule.scheduler import Job, Scheduler
from watchkeeper.engine.state import rollups
from watchkeeper.engine.state.configured import create_store
from watchkeeper.engine.state.housekeeping import housekeeping
from watchkeeper.engine.state.replicas import Membership, default_name

log = logging.getLogger("watchkeeper.daemon")

WATCH_INTERVAL = 2.0
GRACEFUL_HTTP = 6.0


def _accepted(validation: Validation) -> list[str]:
    """Keep what a running daemon needs of a read config — its files, to watch them — and
    let go of the parsed YAML (kept for line numbers: some 40 MB at 10,000 checks)."""
    files = list(validation.loaded.files) if validation.loaded else [validation.path]
    validation.loaded = None
    return files


def _version() -> str:
    from importlib.metadata import version

    return version("watchkeeper")


def worker_count(setting: int | str, runs_per_second: float = 0.0, *, isolate: bool = False) -> int:
    """Resolve `engine.workers`.

    auto: one worker, plus one per 1,500 runs a second the config asks for, at most one
    per CPU beyond the first and at most 4 — a worker costs some 60 MB, and one keeps up
    with a few thousand HTTP checks a second. With `isolate` (a third-party probe is in
    use: the built-ins never block their event loop, a plugin might) at least two, so
    runs go on in one worker while the other is stuck until it is replaced.
    """
    if setting == "auto":
        cpus = max(1, (os.cpu_count() or 1) - 1)
        count = max(1, min(4, cpus, 1 + int(runs_per_second // 1500)))
        return max(count, 2) if isolate else count
    return int(setting)


def runs_per_second(instances: Any) -> float:
    """Estimate how many probe runs a second a set of instances asks for."""
    from watchkeeper.engine.schedule.timetable import runs_per_week

    total = 0.0
    for instance in instances.values():
        schedule = instance.schedule
        if schedule is None:
            continue
        if schedule.every:
            total += 1.0 / schedule.every
        else:
            total += runs_per_week(schedule.cron, instance.timezone) / (7 * 86400.0)
    return total


class Daemon:
    """Run a monitor.yaml until told to stop."""

    def __init__(
        self,
        validation: Validation,
        *,
        reg: Registry | None = None,
        clock: Clock | None = None,
        executor: Any = None,
        dry_run: bool = False,
        printer: Any = None,
        replica: str | None = None,
    ):
        self.validation = validation
        self.config_files = _accepted(validation)
        self.path = Path(validation.path)
        self.base_dir = validation.base_dir
        self.config = validation.config
        self.reg = reg or registry()
        self.clock = clock or Clock()
        self.dry_run = dry_run
        self.store = create_store(self.config, self.reg, self.base_dir)
        self.writer = StateWriter(self.store)
        self.runtime = Runtime(
            self.config,
            self.reg,
            self.store,
            self.clock,
            base_dir=self.base_dir,
            writer=self.writer,
        )
        self.executor = executor or self._executor()
        self.scheduler = Scheduler(
            self.clock,
            self._run_job,
            concurrency=self.config.engine.concurrency,
            gate=self._gate,
        )
        self.heartbeats = Heartbeats(self.runtime)
        self.maintenance = Maintenance(self.config)
        self.outbox = Outbox(
            self.store,
            self.clock,
            self.config,
            self.reg,
            self.base_dir,
            dry_run=dry_run,
            printer=printer,
        )
        self.alerting = Alerting(
            self.runtime,
            self.outbox,
            maintenance=self.maintenance,
            actions=ActionRunner(self.runtime, self.base_dir, Path(self.path).resolve()),
        )
        self.alerting.boundary_handlers.append(self._window_boundary)
        self.intake = Intake(self.runtime)  # alerts posted to `POST /api/v2/alerts`
        self.heartbeats.paused = self._heartbeat_paused
        self.paused_jobs: dict[str, Job] = {}  # skipped by a pause window: run once at its end
        self.backups = Backups(
            config=self.config,
            store=self.store,
            clock=self.clock,
            base_dir=self.base_dir,
            runtime=self.runtime,
            maintenance=self.maintenance,
            reg=self.reg,
        )
        # daemons sharing a postgres or redis store act as one (Semantics ► Replicas)
        self.membership: Membership | None = None
        if getattr(self.store, "shared", False):
            name = replica or default_name()
            self.membership = Membership(
                self.store,
                self.clock,
                name,
                self.config.state.lease_time,
                on_change=self._rebalance,
                info=self._replica_info,
            )
            self.runtime.replica = self.outbox.replica = self.alerting.replica = name
        self.ready = anyio.Event()
        self.stopping = anyio.Event()
        self._mtime = self._config_mtime()
        self.reloads = 0
        self.last_reload: dict[str, Any] | None = None  # the outcome, for /health and status
        self._reload_lock = anyio.Lock()  # SIGHUP, the API and the watcher take turns

    def _executor(self) -> Any:
        setting = self.config.engine.workers
        if setting == 0:
            return LocalExecutor(self.reg, self.base_dir)
        if setting == "auto":
            # sized when the workers start, from the instances the runtime has built by then
            return ProcessExecutor(self.reg, self.base_dir, self._auto_workers)
        return ProcessExecutor(self.reg, self.base_dir, worker_count(setting))

    def _auto_workers(self) -> int:
        instances = self.runtime.all_instances
        probes = {i.probe_type for i in instances.values() if not i.passive}
        isolate = not all(self.reg.is_builtin("probe", probe) for probe in probes)
        return worker_count("auto", runs_per_second(instances), isolate=isolate)

    # -- start-up ---------------------------------------------------------------------------

    async def start(self, role: str = "daemon") -> None:
        """Open the store and restore state; raise StoreError when that is impossible."""
        await self.store.open(role=role)
        if self.membership is not None:
            await self.membership.join()
            if len(self.membership.members) > 1:
                # the others notice a new member at their next look: wait for that, so no
                # check runs on two replicas while ownership moves
                await anyio.sleep(self.membership.poll_interval * 1.5)
                await self.membership.refresh()
            self.writer.epoch = self.membership.epoch
            self.runtime.owns = self.membership.owns
            self.outbox.members = lambda: self.membership.members
        await self.runtime.load()
        await self.heartbeats.load()

    def _replica_info(self) -> dict[str, Any]:
        return {
            "instances": len(self.runtime.instances),
            "started": self.runtime.started_at,
            "version": _version(),
        }

    async def _rebalance(self) -> None:
        """Membership changed: take the new fencing epoch and this replica's new share."""
        assert self.membership is not None
        # let go of what moved away before writing under the new epoch: a late result of a
        # check another replica now owns must not overwrite that replica's state
        gained, lost = await self.runtime.rebalance()
        self.writer.epoch = self.membership.epoch
        await self.outbox.load()  # deliveries a departed replica left now fall to us
        # workers learn the new share before any of it is started
        await self.executor.load(self.runtime.instances)
        for key in lost:
            self.scheduler.remove(f"check:{key}")
            self.paused_jobs.pop(f"check:{key}", None)
        for key in gained:
            self._schedule(self.runtime.instances[key])
            job = self.scheduler.jobs.get(f"check:{key}")
            if job is not None:
                self.scheduler.start_now(job)  # a taken-over check runs at once
        await self.heartbeats.load()
        await self.alerting.load()
        log.info(
            "checks rebalanced",
            extra={
                "gained": len(gained),
                "lost": len(lost),
                "owned": len(self.runtime.instances),
                "members": self.membership.members,
            },
        )

    async def _watch_remote(self) -> None:
        """Keep the up state of parents and members that other replicas own fresh."""
        assert self.membership is not None
        while True:
            try:
                await self.runtime.refresh_remote()
                for key in list(self.runtime.instances):
                    if self.runtime.instances[key].probe_type == "composite":
                        await self.runtime.evaluate_composite(key, self.clock.now())
            except Exception as exc:
                log.warning("cannot read other replicas' state", extra={"error": str(exc)})
            await anyio.sleep(max(1.0, self.membership.lease_time / 5))

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
        from datetime import UTC, datetime

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

    # -- the daemon -------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT; reload on SIGHUP or when the config file changes."""
        from watchkeeper.engine.api import bind_http
        from watchkeeper.engine.observe.sentry import init_sentry, sentry_checkins

        init_sentry(self.config)
        await self.start()
        self.schedule_all()
        try:
            # bound before anything runs: a taken address is a clear start-up error
            http = bind_http(self)
            async with anyio.create_task_group() as tg:
                if hasattr(self.executor, "serve"):
                    await tg.start(self.executor.serve, name="probe workers")
                await self.executor.load(self.runtime.instances)
                await tg.start(self.writer.run, name="state writer")
                await tg.start(self.outbox.run, name="outbox")
                await tg.start(self.alerting.run, name="alerting")
                await tg.start(self.intake.run, name="alert intake")
                await tg.start(self.heartbeats.run, name="heartbeats")
                await tg.start(housekeeping, self, name="housekeeping")
                if self.membership is not None:
                    await tg.start(self.membership.run, name="membership")
                    tg.start_soon(self._watch_remote, name="replica state")
                await self.catch_up()
                await tg.start(self.scheduler.run, name="scheduler")
                tg.start_soon(self._signals, tg, name="signals")
                tg.start_soon(self._watch_config, name="config watcher")
                await tg.start(http.serve, name="http server")
                tg.start_soon(sentry_checkins, self, name="sentry check-ins")
                await tg.start(rollups.run, self, name="rollups")
                await tg.start(slo.run, self, name="slos")
                # catch-up can take hours (a missed dump): never inline
                if not self.dry_run:
                    tg.start_soon(self.backups.catch_up, self.clock.now(), name="backup catch-up")
                tg.start_soon(self._backups_overdue, name="backup overdue")
                self.ready.set()
                await events.emit(self.reg.manager, "watchkeeper_startup", config=self.config)
                log.info(
                    "daemon started",
                    extra={
                        "config": str(self.path),
                        "checks": len(self.runtime.instances),
                        "store": self.config.state.type,
                        "pid": os.getpid(),
                    },
                )
                await self.stopping.wait()
                self.scheduler.stop(self.config.engine.shutdown_grace)
                await self.scheduler.finished.wait()
                # the HTTP server closes its connections itself (it saw `stopping`); cutting
                # them off mid-request is what a plain cancel would do
                with anyio.move_on_after(GRACEFUL_HTTP):
                    await http.done.wait()
                tg.cancel_scope.cancel()
        finally:
            await self.shutdown()

    async def _backups_overdue(self) -> None:
        while True:
            try:
                await self.backups.check_overdue(self.clock.now())
            except Exception as exc:
                log.warning("backup overdue check failed", extra={"error": str(exc)})
            await anyio.sleep(60)

    async def shutdown(self) -> None:
        """Flush what is buffered and close everything, whatever happened before."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(15):
            if self.ready.is_set():
                await events.emit(self.reg.manager, "watchkeeper_shutdown")
            await self.writer.flush()
            if self.membership is not None:
                await self.membership.leave()
            await self.executor.close()
            await self.store.close()
            log.info("daemon stopped", extra={"pending_writes": self.writer.pending()})

    def stop(self) -> None:
        self.stopping.set()

    async def _signals(self, tg) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("reload requested (SIGHUP)")
                    # beside this loop: a SIGTERM during a long reload still stops the daemon
                    tg.start_soon(self.reload, name="reload")
                else:
                    log.info("stopping", extra={"signal": signal.Signals(signum).name})
                    self.stop()

    # -- reload -----------------------------------------------------------------------------

    def _config_mtime(self) -> tuple[float, int] | None:
        try:
            files = self.config_files
            stats = [os.stat(f) for f in files]
        except OSError:
            return None
        return max(s.st_mtime for s in stats), sum(s.st_size for s in stats)

    async def _watch_config(self) -> None:
        while True:
            await anyio.sleep(WATCH_INTERVAL)
            current = self._config_mtime()
            if current is not None and current != self._mtime:
                self._mtime = current
                log.info("config file changed; reloading", extra={"config": str(self.path)})
                await self.reload()

    async def reload(self) -> bool:
        """Read the config again (in the child process) and switch to it, all or nothing.

        A refused file, or one whose applying raises, leaves the previous configuration
        running; either way the outcome is kept in `last_reload` for /health and the API.
        """
        async with self._reload_lock:
            return await self._reload()

    async def _reload(self) -> bool:
        at = time.time()
        try:
            validation = await aload_config_isolated(self.path, reg=self.reg)
        except (ConfigError, ConfigLimitError) as exc:
            for problem in exc.problems:
                log.error("reload rejected: " + problem.text())
            return self._refused(at, exc.problems)
        except OSError as exc:
            message = f"cannot read {self.path}: {exc.strerror or exc}"
            log.error("reload rejected: cannot read the config", extra={"error": str(exc)})
            return self._refused(at, [Problem.at(None, "", message)])
        except Exception as exc:  # the child's answer does not validate here, say
            log.exception("reload rejected: the config could not be taken in")
            message = f"the config could not be taken in: {type(exc).__name__}: {exc}"
            return self._refused(at, [Problem.at(None, "", message)])
        try:
            plan = self._prepare(validation.config)
        except Exception as exc:
            # nothing has changed yet: a refusal like an invalid file's
            log.exception("reload rejected: the config cannot be applied")
            message = f"the config cannot be applied: {type(exc).__name__}: {exc}"
            return self._refused(at, [Problem.at(None, "", message)])
        before = self._snapshot()
        try:
            added, removed, changed = await self._apply(validation, plan)
        except Exception as exc:
            log.exception("applying the reloaded config failed; rolling back")
            await self._roll_back(before)
            log.error("reload failed; the previous configuration keeps running")
            error = f"applying the config failed: {type(exc).__name__}: {exc}; {KEEPS_RUNNING}"
            self._record(at, False, error=error, problems=[Problem.at(None, "", error)])
            return False
        self.reloads += 1
        self._record(at, True, added=len(added), removed=len(removed), changed=len(changed))
        log.info(
            "config reloaded",
            extra={"added": len(added), "removed": len(removed), "changed": len(changed)},
        )
        return True

    def _record(self, at: float, ok: bool, **details: Any) -> None:
        when = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
        self.last_reload = {"at": when.replace("+00:00", "Z"), "ok": ok, **details}

    def _refused(self, at: float, problems: list[Problem]) -> bool:
        from watchkeeper.engine.observe.redaction import REDACTOR

        log.error(
            "reload rejected; the previous configuration keeps running",
            extra={"problems": len(problems)},
        )
        self._mtime = self._config_mtime()  # tried as it is now: once is enough
        errors = [p for p in problems if p.level == "error"] or problems
        error = REDACTOR.redact(errors[0].text()) if errors else "refused"
        self._record(at, False, error=error, problems=problems)
        return False

    def reload_outcome(self, *, detailed: bool = False) -> dict[str, Any] | None:
        """Return the last reload's outcome: `at`, `ok`, how many problems and, with
        `detailed` (the admin API), the `error` and each problem. /health, open to anyone,
        says no more than that a reload failed: file names, values and exception text stay
        behind the token, as probe messages do."""
        from dataclasses import asdict

        from watchkeeper.engine.observe.redaction import REDACTOR

        outcome = self.last_reload
        if outcome is None:
            return None
        shown = {k: v for k, v in outcome.items() if k != "problems"}
        if "error" in shown:
            shown["error"] = REDACTOR.redact(str(shown["error"]))
        problems = outcome.get("problems")
        if not detailed:
            shown.pop("error", None)
            return shown if problems is None else {**shown, "problems": len(problems)}
        if problems is None:
            return shown
        return {
            **shown,
            "problems": [
                {
                    **asdict(p),
                    "path": REDACTOR.redact(p.path),
                    "message": REDACTOR.redact(p.message),
                }
                for p in problems
            ],
        }

    def _prepare(self, config: Any) -> dict[str, Any]:
        """Build, without changing anything, what a config's applying could fail on: its
        check instances, each schedule's first fire time, its maintenance windows."""
        from watchkeeper.engine.schedule import timetable

        instances = expand(config, self.reg, replica=self.runtime.replica)
        start = datetime.fromtimestamp(self.clock.now(), UTC)
        for key, instance in instances.items():
            if instance.schedule is not None:
                series = timetable.series_for(
                    instance.schedule, key=key, start=start, default_tz=instance.timezone
                )
                next(series)
        tz = config.defaults.timezone or "UTC"
        for kind, entries in (
            ("task", config.tasks),
            ("backup", config.backups.jobs),
            ("drill", config.backups.drills),
        ):
            for name, entry in entries.items():
                next(timetable.series_for(entry.schedule, key=f"{kind}:{name}", start=start,
                                          default_tz=tz))  # fmt: skip
        maintenance = Maintenance(config)
        now = self.clock.now()
        maintenance.under_way(now)
        maintenance.next_boundary(now)
        return {"maintenance": maintenance}

    async def _apply(self, validation: Validation, plan: dict[str, Any]) -> tuple[list[str], ...]:
        """Switch every part of the daemon to a checked configuration."""
        if validation.config.state != self.config.state:
            log.warning("`state` changed: it applies after a restart")
        self.validation, self.config = validation, validation.config
        self.config_files = _accepted(validation)
        self._mtime = self._config_mtime()
        self.maintenance = self.alerting.maintenance = plan["maintenance"]
        self.outbox.config = self.config
        added, removed, changed = await self.runtime.apply(self.config)
        # workers learn the new checks and options before any of them is scheduled
        await self.executor.load(self.runtime.instances)
        for key in removed:
            self.scheduler.remove(f"check:{key}")
        for key in (*added, *changed):
            self.scheduler.remove(f"check:{key}")
            self._schedule(self.runtime.instances[key])
        # unchanged checks got new instance objects too: their jobs must run those
        for key, instance in self.runtime.instances.items():
            job = self.scheduler.jobs.get(f"check:{key}")
            if job is not None:
                job.target = instance
        self._schedule_jobs()
        self.backups.apply(self.config, maintenance=self.maintenance)
        # a window added while under way applies at once; alerts it no longer covers go out
        now = self.clock.now()
        self.alerting.started_at = self.alerting.last_announce = now  # announce what is due
        await self.alerting.rehold(now)
        await self.alerting.release(now)
        await self.heartbeats.load()
        return added, removed, changed

    _RUNTIME_STATE = ("config", "severities", "all_instances", "instances", "evaluators",
                      "latest", "composites")  # fmt: skip

    def _snapshot(self) -> dict[str, Any]:
        """Keep what `_apply` replaces, for `_roll_back`."""
        runtime = self.runtime
        state = {}
        for name in self._RUNTIME_STATE:
            value = getattr(runtime, name, None)
            state[name] = value.copy() if isinstance(value, dict | list) else value
        return {
            "daemon": (self.validation, self.config, list(self.config_files)),
            "maintenance": self.maintenance,
            "announce": (self.alerting.started_at, self.alerting.last_announce),
            "runtime": state,
            # unchanged checks' evaluators are kept and pointed at the new instances
            "evaluated": {k: e.instance for k, e in runtime.evaluators.items()},
            "jobs": {k: (j, j.target) for k, j in self.scheduler.jobs.items()},
        }

    async def _roll_back(self, before: dict[str, Any]) -> None:
        """Put the daemon back on the configuration it ran before a failed `_apply`.

        Each part is restored on its own, so one that fails does not keep the others on
        the new configuration. What `_apply` already told the world (alerts of removed
        checks resolved) stays told; those checks run again and alert anew if need be.
        """
        self.validation, self.config, self.config_files = before["daemon"]
        # the file as it is now has been tried: the watcher must not try it every 2 s
        self._mtime = self._config_mtime()
        self.maintenance = self.alerting.maintenance = before["maintenance"]
        self.outbox.config = self.config
        self.alerting.started_at, self.alerting.last_announce = before["announce"]
        runtime = self.runtime
        for name, value in before["runtime"].items():
            setattr(runtime, name, value)
        for key, instance in before["evaluated"].items():
            if key in runtime.evaluators:
                runtime.evaluators[key].instance = instance
        jobs = before["jobs"]

        def scheduler() -> None:
            for key in [k for k in self.scheduler.jobs if k.startswith("check:")]:
                if jobs.get(key, (None,))[0] is not self.scheduler.jobs[key]:
                    self.scheduler.remove(key)
            for key, (job, target) in jobs.items():
                job.target = target
                if key.startswith("check:") and self.scheduler.jobs.get(key) is not job:
                    # a fresh job on the old schedule: the same fire times (phase-locked)
                    self._schedule(target)
            self._schedule_jobs()

        now = self.clock.now()
        for what, step in (
            ("scheduler", scheduler),
            ("probe workers", lambda: self.executor.load(runtime.instances)),
            ("backups", lambda: self.backups.apply(self.config, maintenance=self.maintenance)),
            ("alert holds", lambda: self.alerting.rehold(now)),
            ("heartbeats", self.heartbeats.load),
        ):
            try:
                result = step()
                if hasattr(result, "__await__"):
                    await result
            except Exception:
                log.exception("rolling back the reload: restoring the " + what + " failed")

    # -- one pass ---------------------------------------------------------------------------

    async def run_once(self, *, deliver_for: float = 30.0) -> list[tuple[Instance, Any]]:
        """Run every scheduled check once (state kept in the store), send what is due, stop.

        Groups are sent at once (a pass cannot wait for group_wait); deliveries that still
        fail stay in the outbox and are retried by the next pass.
        """
        await self.start(role="daemon")
        await self.executor.load(self.runtime.instances)
        await self.outbox.load()
        await self.alerting.load()
        results: list[tuple[Instance, Any]] = []
        try:
            now = self.clock.now()
            await self.heartbeats.poll_store()
            await self.heartbeats.check_deadlines(now)
            limiter = anyio.CapacityLimiter(self.config.engine.concurrency)

            async def one(instance: Instance) -> None:
                async with limiter:
                    result = await self.executor.run(instance)
                    await self.runtime.ingest(instance, result)
                    results.append((instance, result))

            async with anyio.create_task_group() as tg:
                for instance in self.runtime.instances.values():
                    if instance.schedule is not None:
                        tg.start_soon(one, instance, name=f"check {instance.key}")
            await self.alerting.fire_due(self.clock.now())
            for group in list(self.alerting.groups.values()):
                await self.alerting.flush(group, self.clock.now())
            await self.outbox.drain(deliver_for)
        finally:
            await self.shutdown()
        return results


def load_daemon(path: str | os.PathLike[str], **kwargs: Any) -> Daemon:
    """Read a config the way `watchkeeper run` does (in a child process) and build its
    daemon; raise ConfigError if it is invalid."""
    from watchkeeper.engine.config.process import load_config_isolated

    return Daemon(load_config_isolated(path), **kwargs)
