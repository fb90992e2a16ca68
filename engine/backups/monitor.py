"""When a backup was due, whether a run was missed, whether a job is overdue.

All time questions go through `timetable`, so cron and DST rules are those of every other
schedule. A job's first sighting (by any daemon) is remembered in the `jobs` collection
as `backup:<job>` / `drill:<name>` with `first_seen` and `last_scheduled`: nothing is
due before a job existed, so adding a job neither runs it at once nor alerts on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from watchkeeper.engine.schedule import timetable

JOBS = "jobs"
SLACK = 60.0
"""Seconds a run may start before its due time and still count for it (clock skew)."""


def state_key(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def _dt(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def previous_due(schedule: Any, at: float, *, default_tz: str, key: str) -> float | None:
    """Return the schedule's latest fire time at or before `at` (None: it never fired)."""
    if schedule.cron:
        tz = schedule.timezone or default_tz
        fired = timetable.previous_fire(
            schedule.cron, tz, _dt(at), jitter=schedule.jitter or 0.0, key=key
        )
        return None if fired is None else fired.timestamp()
    every = float(schedule.every)
    series = timetable.series_for(schedule, key=key, start=_dt(at - every), default_tz=default_tz)
    fire = series.peek().timestamp()
    return fire if fire <= at else fire - every


def missed(doc: dict[str, Any] | None, due: float | None) -> bool:
    """Return whether a scheduled run at `due` was missed, by the job's `jobs` document."""
    if doc is None or due is None:
        return False
    if due < doc.get("first_seen", 0.0):
        return False
    return doc.get("last_scheduled", 0.0) < due - 1.0


def overdue(latest_good_at: float | None, due: float | None, first_seen: float | None) -> bool:
    """Return whether no good backup exists for the run due at `due` (grace already applied)."""
    if due is None:
        return False
    if first_seen is not None and due < first_seen:
        return False
    return latest_good_at is None or latest_good_at < due - SLACK
