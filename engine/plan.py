"""What runs when: upcoming runs of checks, backups, drills and tasks, and maintenance windows.

The data behind `watchkeeper plan`, kept free of CLI code so that the scheduler and the
status page reuse it. All fire times come from `timetable` (DESIGN.md Semantics ► Time),
built with the same `series_for(schedule, key=..., start=...)` call the scheduler makes,
so the plan and the daemon agree to the second.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from watchkeeper.engine import timetable
from watchkeeper.engine.instances import check_schedule
from watchkeeper.schema.units import format_duration

__all__ = ["PlanItem", "Scheduled", "maintenance_windows", "plan", "scheduled"]
"""When a check runs that sets no `schedule` and inherits none from `defaults`."""

KIND_ORDER = {"maintenance": 0, "backup": 1, "drill": 2, "task": 3, "check": 4}
"""Order of items due at the same instant: a window opens before what runs inside it."""

# Series yield fire times strictly after their start; a plan includes a run at its start.
_JUST_BEFORE = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Scheduled:
    """One thing run on a schedule: a check instance, backup job, drill or task."""

    kind: str
    name: str
    environment: str | None
    schedule: Any  # a `Schedule`: `every` or `cron` (+ timezone, jitter)
    timezone: str  # the zone a cron schedule is read in (and times are shown in)

    @property
    def key(self) -> str:
        """Return the key that phase-locks `every` and fixes jitter (see Semantics ► Time).

        A check instance's key is its name (`name@environment` with environments); other
        kinds are prefixed (`backup:database`) so a job named like a check does not share
        its phase.
        """
        if self.kind == "check":
            return f"{self.name}@{self.environment}" if self.environment else self.name
        return f"{self.kind}:{self.name}"

    def series(self, start: datetime) -> timetable.CronSeries | timetable.EverySeries:
        """Return the fire times strictly after `start`, as the scheduler computes them."""
        return timetable.series_for(
            self.schedule, key=self.key, start=start, default_tz=self.timezone
        )


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One row of the plan; `at` and `until` are UTC, shown in `zone`."""

    kind: str
    name: str
    at: datetime
    zone: tzinfo
    environment: str | None = None
    until: datetime | None = None
    every: float | None = None  # seconds, for an `every` schedule summarised as one row

    @property
    def local_at(self) -> datetime:
        """Return `at` in the item's own timezone."""
        return self.at.astimezone(self.zone)

    @property
    def local_until(self) -> datetime | None:
        """Return `until` in the item's own timezone."""
        return None if self.until is None else self.until.astimezone(self.zone)

    def to_json(self) -> dict[str, str]:
        """Return the `plan --format json` row (DESIGN.md), absent optional keys omitted."""
        row = {"kind": self.kind, "name": self.name}
        if self.environment is not None:
            row["environment"] = self.environment
        row["at"] = _local_text(self.at, self.zone)
        if self.until is not None:
            row["until"] = _local_text(self.until, self.zone)
        if self.every is not None:
            row["every"] = format_duration(self.every)
        return row


@functools.lru_cache(maxsize=4096)
def _local_text(at: datetime, zone: tzinfo) -> str:
    # rows of one shared series repeat the same instant thousands of times
    return timetable.format_instant(at.astimezone(zone))


def _order(item: PlanItem) -> tuple:
    return (item.at, KIND_ORDER[item.kind], item.name, item.environment or "")


def _zone_name(*candidates: str | None) -> str:
    return next((c for c in candidates if c), "UTC")


def scheduled(config: Any, reg: Any = None) -> list[Scheduled]:
    """Return everything the daemon runs on a schedule, with its schedule and timezone.

    Disabled checks and passive ones (heartbeat, composite: evaluated, never run) are left
    out. A check's zone is its schedule's `timezone`, else the check's `timezone`, else
    `defaults.timezone`, else UTC; backups, drills and tasks skip the check's own step.
    """
    from watchkeeper.engine.plugins import registry

    probes = (reg or registry()).types.get("probe", {})
    defaults = config.defaults
    found = []
    for name, check in config.checks.items():
        if not check.enabled or getattr(probes.get(check.probe), "passive", False):
            continue
        schedule, tz = check_schedule(check, defaults)
        for environment in check.environments or [None]:
            found.append(Scheduled("check", name, environment, schedule, tz))
    sections = (
        ("backup", config.backups.jobs),
        ("drill", config.backups.drills),
        ("task", config.tasks),
    )
    for kind, entries in sections:
        for name, entry in entries.items():
            tz = _zone_name(entry.schedule.timezone, defaults.timezone)
            found.append(Scheduled(kind, name, None, entry.schedule, tz))
    return found


def maintenance_windows(config: Any, *, start: datetime, end: datetime) -> list[PlanItem]:
    """Return the maintenance windows overlapping [start, end), one under way included."""
    default_tz = _zone_name(config.defaults.timezone)
    items = []
    for window in config.maintenance:
        if window.schedule is not None:
            tz = timetable.zone(_zone_name(window.schedule.timezone, default_tz))
            spans = timetable.windows(
                window.schedule.cron, tz, window.duration, start=start, end=end
            )
        else:
            tz = timetable.zone(default_tz)
            overlaps = window.start < end and window.end > start
            spans = [(window.start, window.end)] if overlaps else []
        items.extend(
            PlanItem(
                "maintenance", window.name, opened.astimezone(UTC), tz, until=closed.astimezone(UTC)
            )
            for opened, closed in spans
        )
    return sorted(items, key=_order)


def _runs(series: Iterator[datetime], members: list[Scheduled], end: datetime):
    """Yield one row per member at each fire time of a series shared by the members."""
    zones = [timetable.zone(m.timezone) for m in members]
    for at in series:
        if at >= end:
            return
        for member, zone in zip(members, zones, strict=True):
            yield PlanItem(member.kind, member.name, at, zone, member.environment)


def plan(config: Any, *, start: datetime, end: datetime, reg: Any = None) -> Iterator[PlanItem]:
    """Yield what is due in [start, end) of a validated config, in time order, lazily.

    A cron schedule yields a row per run; an `every` schedule one row, its first run, with
    `every` set. Maintenance windows come with their end, including one that opened before
    `start` and is still under way. Rows due at one instant are ordered by kind, name and
    environment. Runs are computed as rows are consumed, so stopping early caps the work.
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    sources: list[Iterable[PlanItem]] = [maintenance_windows(config, start=start, end=end)]
    summaries: list[PlanItem] = []
    shared: dict[tuple, list[Scheduled]] = {}
    for entry in scheduled(config, reg):
        schedule = entry.schedule
        if schedule.every is not None:
            first = entry.series(start - _JUST_BEFORE).peek()
            if first < end:
                zone = timetable.zone(entry.timezone)
                summaries.append(
                    PlanItem(
                        entry.kind, entry.name, first, zone, entry.environment, every=schedule.every
                    )
                )
        elif schedule.jitter:
            sources.append(_runs(entry.series(start - _JUST_BEFORE), [entry], end))
        else:
            # Without jitter a cron series does not depend on its key: compute it once for
            # every entry sharing the expression and zone (10,000 `*/5` checks, one series).
            shared.setdefault((entry.kind, schedule.cron, entry.timezone), []).append(entry)
    sources.append(sorted(summaries, key=_order))
    for members in shared.values():
        members.sort(key=lambda m: (m.name, m.environment or ""))
        sources.append(_runs(members[0].series(start - _JUST_BEFORE), members, end))
    return heapq.merge(*sources, key=_order)
