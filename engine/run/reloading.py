"""Reloading the daemon's configuration: watching its files, reading them in a child
process, applying the new config in place and rolling back what failed to apply.

A part of `Daemon` (engine/daemon.py), which holds the state a reload changes. The event
loop goes on probing and answering throughout: the child reads the file, a thread builds
the new check instances and their first fire times, and the switch on the loop is done
in slices of about 10 ms (`Slices`), so that no step of the loop waits for a reload.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import anyio

from watchkeeper.engine.alerting.maintenance import Maintenance
from watchkeeper.engine.config.instances import expand
from watchkeeper.engine.config.problems import ConfigError, Problem
from watchkeeper.engine.config.process import KEEPS_RUNNING, ConfigLimitError, aload_config_isolated
from watchkeeper.engine.config.validation import Validation
from watchkeeper.engine.observe.memory import release_free_memory
from watchkeeper.engine.run.reload import Slices

log = logging.getLogger("watchkeeper.daemon")

WATCH_INTERVAL = 2.0
SWITCH_INTERVAL = 0.0005
"""Seconds a thread holds the GIL while another waits for it, during a reload."""


def accepted_files(validation: Validation) -> list[str]:
    """Keep what a running daemon needs of a read config — its files, to watch them — and
    let go of the parsed YAML (kept for line numbers: some 40 MB at 10,000 checks)."""
    files = list(validation.loaded.files) if validation.loaded else [validation.path]
    validation.loaded = None
    return files


class Reloading:
    """The daemon's reloads: on SIGHUP, a changed file or `POST /api/reload`."""

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
            # no collector pass meanwhile: a reload of ten thousand checks makes enough
            # objects to set off a full one, which walks the whole heap in one step of
            # the event loop (a third of a second). Nothing is frozen afterwards: what the
            # reload replaced must stay collectable, or memory would grow with each one
            enabled = gc.isenabled()
            gc.disable()
            # the file is checked and the instances built in threads, which hold the GIL
            # while the loop waits for it after each system call: up to the switch
            # interval every time (5 ms: a loop step of a dozen sends took 100 ms)
            interval = sys.getswitchinterval()
            sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
            try:
                return await self._reload()
            finally:
                sys.setswitchinterval(interval)
                if enabled:
                    gc.enable()
                # the C allocator keeps what the reload freed mapped for reuse: handed back
                # to the system, RSS returns near its level (off the loop: the trim walks
                # the heap; the call releases the GIL)
                threading.Thread(target=release_free_memory, name="trim", daemon=True).start()

    async def _reload(self) -> bool:
        at = time.time()
        try:
            validation = await aload_config_isolated(
                self.path, reg=self.reg, running=self.config.checks, digests=self.check_digests
            )
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
            # off the event loop: expanding ten thousand checks takes a second
            plan = await anyio.to_thread.run_sync(self._prepare, validation.config)
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
        # the digests follow the running checks: the replaced models are let go, and the
        # next reload digests nothing (in a thread: all of them may have changed)
        await anyio.to_thread.run_sync(self.check_digests.of, self.config.checks)
        self._record(at, True, added=len(added), removed=len(removed), changed=len(changed))
        log.info(
            "config reloaded",
            extra={
                "added": len(added),
                "removed": len(removed),
                "changed": len(changed),
                # checks validated and built anew; the others run on as they were
                "rebuilt": validation.checks_sent,
            },
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
        check instances, each schedule's first fire time, its maintenance windows.

        Run in a thread: it touches nothing the event loop uses but the running config,
        which it only reads. A check whose model equals the running one's takes that
        model, so the daemon keeps one copy of what did not change.
        """
        from watchkeeper.engine.schedule import timetable

        running = self.config.checks
        checks = config.checks
        for name, check in checks.items():
            old = running.get(name)
            if old is not None and old is not check and old == check:
                checks[name] = old
        instances = expand(
            config,
            self.reg,
            replica=self.runtime.replica,
            running=self.runtime.all_instances,
            keep=self._kept_checks(config),
        )
        # the loop compares old and new instances by fingerprint: worked out here, each is
        # a read there (some 50 us a check, half a second at 10,000 on the loop otherwise)
        for running in (self.runtime.all_instances, self.runtime.instances):
            for instance in list(running.values()):
                instance.fingerprint  # noqa: B018 - computed once, kept by the instance
        start = datetime.fromtimestamp(self.clock.now(), UTC)
        running_instances = self.runtime.all_instances
        for key, instance in instances.items():
            if running_instances.get(key) is instance:
                continue  # kept: its schedule is running
            instance.fingerprint  # noqa: B018
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
        return {"maintenance": maintenance, "instances": instances}

    def _kept_checks(self, config: Any) -> set[str]:
        """Names of the checks whose instances the new config would build again just as
        they run: the check's model is the running one, and so is everything else an
        instance is made of (`defaults`, `environments`, the models of the checks it
        depends on, which pair it with their environments)."""
        running = self.config
        if config.defaults != running.defaults or config.environments != running.environments:
            return set()
        old, new = running.checks, config.checks
        kept = set()
        for name, check in new.items():
            if old.get(name) is not check:
                continue
            if check.depends_on and any(old.get(d) is not new.get(d) for d in check.depends_on):
                continue
            kept.add(name)
        return kept

    async def _apply(self, validation: Validation, plan: dict[str, Any]) -> tuple[list[str], ...]:
        """Switch every part of the daemon to a checked configuration, in slices."""
        slices = Slices()
        if validation.config.state != self.config.state:
            log.warning("`state` changed: it applies after a restart")
        self.validation, self.config = validation, validation.config
        self.config_files = accepted_files(validation)
        self._mtime = self._config_mtime()
        self.maintenance = self.alerting.maintenance = plan["maintenance"]
        self.outbox.config = self.config
        instances = plan.pop("instances")
        added, removed, changed = await self.runtime.apply(self.config, instances, slices)
        del instances
        runtime = self.runtime
        # workers learn the new checks and options before any of them is scheduled: all of
        # them when checks went away (their workers let go of them) or most changed; else
        # a check a worker does not know yet is sent with its first run
        if removed or len(added) + len(changed) > len(runtime.instances) // 10:
            await self.executor.load(runtime.instances)
        self._reload_jobs(added, removed, changed)
        await slices.checkpoint()
        # a check whose secrets alone changed is a new instance on its old job
        for key, instance in runtime.instances.items():
            job = self.scheduler.jobs.get(f"check:{key}")
            if job is not None and job.target is not instance:
                job.target = instance
            await slices.checkpoint()
        self._schedule_jobs()
        self.backups.apply(self.config, maintenance=self.maintenance)
        # a window added while under way applies at once; alerts it no longer covers go out
        now = self.clock.now()
        self.alerting.started_at = self.alerting.last_announce = now  # announce what is due
        await self.alerting.rehold(now)
        await self.alerting.release(now)
        await self.heartbeats.load()
        return added, removed, changed

    def _reload_jobs(self, added: list[str], removed: list[str], changed: list[str]) -> None:
        """Replace the jobs of removed, added and changed checks, in one step: a job that
        is due meanwhile runs once, on the old instance or the new one."""
        for key in removed:
            self.scheduler.remove(f"check:{key}")
        for key in (*added, *changed):
            instance = self.runtime.instances[key]
            if instance.schedule is None:
                self.scheduler.remove(f"check:{key}")
            else:  # replaces the job, keeping a run that fell due and was not yet released
                self._schedule(instance)

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
