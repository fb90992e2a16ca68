"""The daemon: one anyio task group running the scheduler, heartbeats, the state writer and
the rest, with reload on SIGHUP or a changed config file and a bounded, clean shutdown.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import anyio

from watchkeeper.engine.alerting import events
from watchkeeper.engine.alerting.actions import ActionRunner
from watchkeeper.engine.alerting.alerting import Alerting
from watchkeeper.engine.alerting.maintenance import Maintenance
from watchkeeper.engine.alerting.outbox import Outbox
from watchkeeper.engine.backups import Backups
from watchkeeper.engine.config.check_digests import CheckDigests
from watchkeeper.engine.config.instances import Instance
from watchkeeper.engine.config.validation import Validation
from watchkeeper.engine.plugins import Registry, registry
from watchkeeper.engine.reports import slo
from watchkeeper.engine.run.executor import LocalExecutor, ProcessExecutor
from watchkeeper.engine.run.heartbeats import Heartbeats
from watchkeeper.engine.run.intake import Intake
from watchkeeper.engine.run.reloading import Reloading, accepted_files
from watchkeeper.engine.run.runtime import Runtime
from watchkeeper.engine.run.writer import StateWriter
from watchkeeper.engine.schedule.clock import Clock
from watchkeeper.engine.schedule.jobs import Jobs
from watchkeeper.engine.schedule.scheduler import Job, Scheduler
from watchkeeper.engine.state import rollups
from watchkeeper.engine.state.configured import create_store
from watchkeeper.engine.state.housekeeping import housekeeping
from watchkeeper.engine.state.replicas import Membership, default_name

log = logging.getLogger("watchkeeper.daemon")

GRACEFUL_HTTP = 6.0


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


class Daemon(Jobs, Reloading):
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
        location: str | None = None,
    ):
        self.validation = validation
        self.config_files = accepted_files(validation)
        self.path = Path(validation.path)
        self.base_dir = validation.base_dir
        self.config = validation.config
        # what a reload's child compares its checks with, to send only the changed ones
        self.check_digests = CheckDigests()
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
                location=location,
            )
            self.runtime.replica = self.outbox.replica = self.alerting.replica = name
        self.location = self.runtime.location = location
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
        probes = {i.probe_type for i in instances.values() if i.runs}
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
            self.runtime.owns_at = self.membership.owns_at
            self.runtime.live_locations = self.membership.live_locations
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
                    instance = self.runtime.instances.get(key)
                    if instance is None:
                        continue
                    if instance.probe_type == "composite":
                        await self.runtime.evaluate_composite(key, self.clock.now())
                    elif instance.locations is not None:
                        await self.runtime.judge_located(key, self.clock.now())
            except Exception as exc:
                log.warning("cannot read other replicas' state", extra={"error": str(exc)})
            await anyio.sleep(max(1.0, self.membership.lease_time / 5))

    # -- the daemon -------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT; reload on SIGHUP or when the config file changes."""
        from watchkeeper.engine.observe.memory import limit_arenas, release_free_memory
        from watchkeeper.engine.observe.sentry import init_sentry, sentry_checkins

        limit_arenas()  # before threads allocate: see observe/memory.py
        init_sentry(self.config)
        if hasattr(self.executor, "prestart"):
            # the worker process starts while the checks are built and scheduled
            await self.executor.prestart()
        # what start-up builds (instances, evaluators, jobs: some 100,000 objects at 10,000
        # checks) stays: a collector passing over it meanwhile would cost more than the
        # building, so it runs once the daemon is ready
        collecting = gc.isenabled()
        frozen = False
        gc.disable()
        try:
            await self.start()
        except BaseException:
            if collecting:
                gc.enable()
            await self.executor.close()  # the worker started early goes too
            raise
        try:
            self.schedule_all()
            # bound before anything runs: a taken address is a clear start-up error
            http = _bind_http(self)
        except BaseException:
            if collecting:
                gc.enable()
            raise
        try:
            async with anyio.create_task_group() as tg:
                # the checks first: each worker is sent them once it is up
                await self.executor.load(self.runtime.instances)
                if hasattr(self.executor, "serve"):
                    # ready does not wait for the workers to take their checks, nor the
                    # building of them for ready (/ready: the config is loaded, the store
                    # reachable, the checks scheduled): runs due meanwhile follow them
                    await tg.start(
                        functools.partial(self.executor.serve, after=self.ready),
                        name="probe workers",
                    )
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
                if collecting:
                    # what start-up built lives as long as the daemon (or until a reload
                    # replaces it, when counting references frees it; a full pass at this
                    # point finds a dozen objects to collect): moved out of the collector's
                    # way, a full pass walks what came after, 6 ms instead of 40-55 ms in
                    # one step of the loop at 10,000 checks
                    gc.freeze()
                    frozen = True
                    gc.enable()
                # what start-up built and let go of (the config as it arrived, the frames
                # of checks sent to workers) goes back to the system, off the loop
                threading.Thread(target=release_free_memory, name="trim", daemon=True).start()
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
            if collecting:
                gc.enable()
            if frozen:  # collectable again (a process that goes on, as tests do)
                gc.unfreeze()
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

    _RUNTIME_STATE = ("config", "severities", "all_instances", "instances", "evaluators",
                      "latest", "composites")  # fmt: skip

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


class _ServerOff:
    """The HTTP server of `server.enabled: false`: nothing to serve."""

    def __init__(self) -> None:
        self.done = anyio.Event()

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        self.done.set()
        task_status.started(None)


def _bind_http(daemon: Daemon) -> Any:
    # the API stack (hypercorn, starlette, jinja2, prometheus_client: ~7 MB) is imported
    # only for a server that runs
    if not daemon.config.server.enabled:
        logging.getLogger("watchkeeper.api").info("HTTP server off (server.enabled: false)")
        return _ServerOff()
    from watchkeeper.engine.api import bind_http

    return bind_http(daemon)


def load_daemon(path: str | os.PathLike[str], **kwargs: Any) -> Daemon:
    """Read a config the way `watchkeeper run` does (in a child process) and build its
    daemon; raise ConfigError if it is invalid."""
    from watchkeeper.engine.config.process import load_config_isolated

    return Daemon(load_config_isolated(path), **kwargs)
