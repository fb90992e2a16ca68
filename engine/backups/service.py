"""`Backups`: what the daemon and the `backup` commands call — runs, drills, catch-up,
overdue alerts, retention, verification and restore, over one configuration and store.

The daemon owns scheduling: it calls `run_job`/`run_drill` at fire times (with
`scheduled`, which claims the run once across replicas), `catch_up` once at start-up,
`check_overdue` every minute, and asks `paused` before a scheduled run.

This module holds what every part shares: the configuration, sources, destinations and
maintenance pauses. The parts: `runs.py` (runs and drills, their claims and alerts),
`timers.py` (catch-up and overdue), `cleanup.py` (retention applied) and `readback.py`
(locate, verify, restore, list a destination).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio

from watchkeeper.engine.backups import crons
from watchkeeper.engine.backups.catalog import Catalog
from watchkeeper.engine.backups.cleanup import BackupCleanup
from watchkeeper.engine.backups.plugin import BackupDestination, BackupSource
from watchkeeper.engine.backups.readback import BackupReadBack
from watchkeeper.engine.backups.runs import (
    CLAIMS,
    RULE_FAILED,
    RULE_OVERDUE,
    BackupRuns,
    check_name,
)
from watchkeeper.engine.backups.timers import BackupTimers
from watchkeeper.engine.plugins import Registry, registry
from watchkeeper.engine.schedule.clock import Clock
from watchkeeper.engine.state.store import StateStore

__all__ = ["CLAIMS", "RULE_FAILED", "RULE_OVERDUE", "Backups", "check_name"]

log = logging.getLogger("watchkeeper.backups")


class Backups(BackupRuns, BackupTimers, BackupCleanup, BackupReadBack):
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
