"""`Backups`: what the daemon and the `backup` commands call — runs, drills, catch-up,
overdue alerts, retention, verification and restore, over one configuration and store.

The daemon owns scheduling: it calls `run_job`/`run_drill` at fire times (with
`scheduled`, which claims the run once across replicas), `catch_up` once at start-up,
`check_overdue` every minute, and asks `paused` before a scheduled run.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from watchkeeper.engine.alerting import events
from watchkeeper.engine.backups import crons, monitor, retention
from watchkeeper.engine.backups import encryption as enc
from watchkeeper.engine.backups import manifest as mf
from watchkeeper.engine.backups import restore as rs
from watchkeeper.engine.backups import verify as vf
from watchkeeper.engine.backups.catalog import Catalog, is_good, iso
from watchkeeper.engine.backups.pipeline import Progress, describe_error
from watchkeeper.engine.backups.plugin import BackupDestination, BackupError, BackupSource
from watchkeeper.engine.backups.runner import run_backup
from watchkeeper.engine.plugins import Registry, registry
from watchkeeper.engine.schedule.clock import Clock
from watchkeeper.engine.state.store import StateStore

log = logging.getLogger("watchkeeper.backups")

CLAIMS = "claims"
RULE_FAILED = "failed"
RULE_OVERDUE = "overdue"


def check_name(kind: str, name: str) -> str:
    """Return the alert `check` of a backup job or drill: `backup:<job>`, `drill:<name>`."""
    return f"{kind}:{name}"


class Backups:
    """Backups of one configuration: runs, drills, alerts, retention, verify, restore."""

    def __init__(
        self,
        *,
        config: Any,
        store: StateStore,
        clock: Clock | None = None,
        base_dir: Path,
        runtime: Any = None,
        maintenance: Any = None,
        reg: Registry | None = None,
    ):
        self.store = store
        self.clock = clock or Clock()
        self.base_dir = Path(base_dir)
        self.runtime = runtime
        self.maintenance = maintenance
        self.reg = reg or registry()
        self.catalog = Catalog(store)
        self._running: dict[str, anyio.Lock] = {}
        self.config = config
        self.apply(config)

    # -- configuration ----------------------------------------------------------------------

    def apply(self, config: Any, *, maintenance: Any = None) -> None:
        """Take a reloaded configuration (and the daemon's new Maintenance, if given)."""
        self.config = config
        if maintenance is not None:
            self.maintenance = maintenance
        sentry = getattr(config, "sentry", None)
        dsn = sentry.dsn.get_secret_value() if sentry is not None and sentry.dsn else None
        old = getattr(self, "crons", None)
        if old is None or old.dsn != (dsn or None):
            if old is not None:
                old.close()
            self.crons = crons.Crons(dsn, environment=getattr(sentry, "environment", None))

    @property
    def jobs(self) -> dict[str, Any]:
        return self.config.backups.jobs

    @property
    def drills(self) -> dict[str, Any]:
        return self.config.backups.drills

    @property
    def default_tz(self) -> str:
        return getattr(self.config.defaults, "timezone", None) or "UTC"

    def job_tz(self, job: Any) -> str:
        return job.schedule.timezone or self.default_tz

    def source(self, type_name: str) -> BackupSource:
        return self.reg.get("backup source", type_name)()

    def open_destinations(self, names: list[str]) -> dict[str, BackupDestination]:
        """Instantiate configured destinations by name (KeyError for an unknown one)."""
        found = {}
        for name in names:
            options = self.config.backups.destinations[name]
            cls = self.reg.get("backup destination", options.type)
            found[name] = cls(options, name=name, base_dir=self.base_dir)
        return found

    async def close_destinations(self, destinations: dict[str, BackupDestination]) -> None:
        for destination in destinations.values():
            try:
                await destination.close()
            except Exception:
                log.debug("destination close failed", exc_info=True)

    def paused(self, name: str, at: float) -> bool:
        """Return whether a `pause` maintenance window scoped to backups holds this job/drill.

        A drill is paused by a window naming the drill or the job it restores.
        """
        if self.maintenance is None:
            return False
        names = [name]
        if name in self.drills and name not in self.jobs:
            names.append(self.drills[name].job)
        return any(self.maintenance.backup_paused(at, n) is not None for n in names)

    # -- runs -------------------------------------------------------------------------------

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

    # -- time -------------------------------------------------------------------------------

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

    # -- retention --------------------------------------------------------------------------

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

    # -- reading backups back ---------------------------------------------------------------

    async def locate(
        self, backup_id: str, *, only: str | None = None
    ) -> tuple[mf.Manifest, list[str]]:
        """Return a backup's reference manifest and the destinations to read it from.

        The catalog is the reference when it knows the id (a unique prefix will do); else
        every configured destination (or `only`) is searched for its manifest. Either way
        the manifest must pass `manifest.check` (else `manifest.Refused`).
        """
        entry = await self.catalog.resolve(backup_id)
        configured = self.config.backups.destinations
        if only is not None and only not in configured:
            raise BackupError(f"unknown destination {only!r} (configured: {', '.join(configured)})")
        if entry is not None:
            if not is_good(entry):
                raise BackupError(
                    f"backup {entry['id']} is {entry.get('status')}: it holds no copy"
                )
            names = [only] if only else [d for d in entry["destinations"] if d in configured]
            if not names:
                raise BackupError(
                    f"none of the destinations of {entry['id']} is configured any more"
                )
            reference = rs.manifest_of(entry)
            mf.check(reference)
            return reference, names
        reference: mf.Manifest | None = None
        holders: list[str] = []
        for name in [only] if only else list(configured):
            destinations = self.open_destinations([name])
            try:
                found = await rs.find_manifest(destinations[name], backup_id)
            except mf.Refused:
                raise
            except Exception as exc:
                log.warning(
                    "destination unreadable",
                    extra={"destination": name, "error": describe_error(exc)},
                )
                found = None
            finally:
                await self.close_destinations(destinations)
            if found is not None:
                reference = reference or found
                holders.append(name)
        if reference is not None:
            return reference, holders
        raise BackupError(f"no backup {backup_id!r} in the catalog or at any destination")

    async def verify(
        self, backup_id: str, *, identity: str | None = None, only: str | None = None
    ) -> tuple[mf.Manifest, list[vf.Finding]]:
        """Re-read a backup from each of its destinations and check every checksum.

        A manifest that fails `manifest.check` raises `BackupError("backup ID: ...;
        nothing was verified")`; archive members that break the restore checks are
        findings of their file.
        """
        try:
            reference, names = await self.locate(backup_id, only=only)
        except mf.Refused as exc:
            raise BackupError(rs.refusal(backup_id, exc, "verified")) from None
        identities = enc.load_identities(identity) if identity else None
        destinations = self.open_destinations(names)
        findings: list[vf.Finding] = []
        archives = self._archives(reference.source)
        try:
            for destination in destinations.values():
                try:
                    findings += await vf.verify_at(reference, destination, identities, archives)
                except Exception as exc:
                    findings.append(vf.Finding(destination.name, "*", False, describe_error(exc)))
        finally:
            await self.close_destinations(destinations)
        return reference, findings

    async def restore(
        self,
        backup_id: str,
        target: str,
        *,
        identity: str | None = None,
        only: str | None = None,
        clean: bool = False,
    ) -> dict[str, Any]:
        """Restore a backup into a database (DSN) or directory, from an intact copy."""
        try:
            reference, names = await self.locate(backup_id, only=only)
        except mf.Refused as exc:
            raise BackupError(rs.refusal(backup_id, exc, "restored")) from None
        identities = enc.load_identities(identity) if identity else None
        job = self.jobs.get(reference.job)
        source = self.source(reference.source)
        if job is not None and job.source.type == reference.source:
            options = job.source
        else:
            options = source.Options.model_construct()  # only restore-side defaults matter
        destinations = self.open_destinations(names)
        try:
            return await rs.restore(
                manifest=reference,
                source=source,
                options=options,
                destinations=list(destinations.values()),
                target=target,
                identities=identities,
                base_dir=self.base_dir,
                clean=clean,
            )
        finally:
            await self.close_destinations(destinations)

    def _archives(self, source_type: str) -> frozenset[str]:
        """Return the plain file names a source's backups hold as tar.gz archives."""
        try:
            return frozenset(getattr(self.source(source_type), "archives", ()))
        except Exception:
            return frozenset()

    async def list_destination(self, name: str) -> list[dict[str, Any]]:
        """Return the backups a destination holds, read from their manifests (no store)."""
        destinations = self.open_destinations([name])
        try:
            manifests = await rs.list_manifests(destinations[name])
        finally:
            await self.close_destinations(destinations)
        return [
            {
                "id": m.id,
                "job": m.job,
                "started_at": m.started_at,
                "finished_at": m.finished_at,
                "status": "ok",
                "size_bytes": m.size_bytes,
                "sha256": m.sha256,
                "destinations": [name],
                "encrypted": m.encrypted,
                "error": None,
            }
            for m in manifests
        ]
