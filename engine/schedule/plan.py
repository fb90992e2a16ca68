"""What runs when: upcoming runs of checks, backups, drills and tasks, and maintenance windows.

The data behind `watchkeeper plan`, kept free of CLI code so that the scheduler and the
status page reuse it. All fire times come from `timetable` (DESIGN.md Semantics ► Time),
built with the same `series_for(schedule, key=..., start=...)` call the scheduler makes,
so the plan and the daemon agree to the second. A run a `pause` window covers is held,
as the daemon holds it (DESIGN.md Semantics ► Maintenance): skipped, the item running
once when the window ends.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from watchkeeper.engine.alerting.maintenance import window_covers_backup, window_covers_check
from watchkeeper.engine.config.instances import check_schedule
from watchkeeper.engine.schedule import timetable
from watchkeeper.schema.units import format_duration

__all__ = [
    "KINDS", "PlanItem", "Scheduled", "maintenance_windows", "plan", "scheduled",
]  # fmt: skip

KIND_ORDER = {"maintenance": 0, "backup": 1, "drill": 2, "task": 3, "check": 4}
"""Order of items due at the same instant: a window opens before what runs inside it."""
KINDS = ("check", "backup", "drill", "task", "maintenance")
"""What a plan lists, as `--kind` names it."""
FREQUENT = 7
"""Runs a week above which a cron item is summarised as one row when asked to collapse."""
HELD_COUNT_LIMIT = 10_000
"""Runs of one held stretch counted, at most (a 30-day pause of an every-second check)."""

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
    labels: Any = field(default=None, compare=False)  # a check's, with defaults.labels
    job: str | None = None  # the backup job a drill restores (a window naming it pauses it)
    location: str | None = None  # a located check's run from one location

    @property
    def key(self) -> str:
        """Return the key that phase-locks `every` and fixes jitter (see Semantics ► Time).

        A check instance's key is its name (`name@environment` with environments); other
        kinds are prefixed (`backup:database`) so a job named like a check does not share
        its phase.
        """
        if self.kind == "check":
            key = f"{self.name}@{self.environment}" if self.environment else self.name
            return f"{key}/{self.location}" if self.location else key
        return f"{self.kind}:{self.name}"

    def series(self, start: datetime) -> timetable.CronSeries | timetable.EverySeries:
        """Return the fire times strictly after `start`, as the scheduler computes them."""
        return timetable.series_for(
            self.schedule, key=self.key, start=start, default_tz=self.timezone
        )

    def in_scope_of(self, window: Any) -> bool:
        """Return whether a window's scope takes in this item (its effect aside).

        As the daemon decides: checks by name, labels and environment; backups by job; a
        drill by its own name or its job's; tasks never.
        """
        if self.kind == "check":
            return window_covers_check(window, self.name, self.environment, self.labels)
        if self.kind == "backup":
            return window_covers_backup(window, self.name)
        if self.kind == "drill":
            return window_covers_backup(window, self.name) or (
                self.job is not None and window_covers_backup(window, self.job)
            )
        return False


@dataclass(frozen=True, slots=True)
class Hold:
    """A stretch a `pause` window (or several back to back) keeps an item from running."""

    start: datetime
    end: datetime  # UTC: when the item runs once instead
    window: str  # the name of the window that opened it


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One row of the plan; `at` and `until` are UTC, shown in `zone`."""

    kind: str
    name: str
    at: datetime
    zone: tzinfo
    environment: str | None = None
    until: datetime | None = None
    every: float | None = None  # seconds, for a schedule summarised as one row (a cron's gap)
    per_day: float | None = None  # runs a day, for a schedule summarised as one row
    cron: str | None = None  # a cron schedule summarised as one row (`collapse`)
    held_until: datetime | None = None  # a held run: when the item runs once instead
    held_by: str | None = None  # the `pause` window holding it
    held_runs: int | None = None  # a summarised item's held stretch: the runs it holds
    effect: str | None = None  # a maintenance window's: mute or pause
    location: str | None = None  # a located check's run from one location

    @property
    def summary(self) -> bool:
        """True for a row standing for many runs (an `every` schedule, a collapsed cron)."""
        return self.per_day is not None or self.every is not None

    @property
    def local_at(self) -> datetime:
        """Return `at` in the item's own timezone."""
        return self.at.astimezone(self.zone)

    @property
    def local_until(self) -> datetime | None:
        """Return `until` in the item's own timezone."""
        return None if self.until is None else self.until.astimezone(self.zone)

    @property
    def local_held_until(self) -> datetime | None:
        """Return `held_until` in the item's own timezone."""
        return None if self.held_until is None else self.held_until.astimezone(self.zone)

    def to_json(self) -> dict[str, str]:
        """Return the `plan --format json` row (DESIGN.md), absent optional keys omitted."""
        row = {"kind": self.kind, "name": self.name}
        if self.environment is not None:
            row["environment"] = self.environment
        if self.location is not None:
            row["location"] = self.location
        row["at"] = _local_text(self.at, self.zone)
        if self.until is not None:
            row["until"] = _local_text(self.until, self.zone)
        if self.every is not None:
            row["every"] = format_duration(self.every)
        if self.held_until is not None:
            row["held_until"] = _local_text(self.held_until, self.zone)
        return row


@functools.lru_cache(maxsize=4096)
def _local_text(at: datetime, zone: tzinfo) -> str:
    # rows of one shared series repeat the same instant thousands of times
    return timetable.format_instant(at.astimezone(zone))


def _order(item: PlanItem) -> tuple:
    return (item.at, KIND_ORDER[item.kind], item.name, item.environment or "")


def _zone_name(*candidates: str | None) -> str:
    return next((c for c in candidates if c), "UTC")


def scheduled(
    config: Any,
    reg: Any = None,
    *,
    kinds: Collection[str] = KINDS,
    checks: Collection[str] | None = None,
) -> list[Scheduled]:
    """Return everything the daemon runs on a schedule, with its schedule and timezone.

    Disabled checks and passive ones (heartbeat, composite: evaluated, never run) are left
    out. A check's zone is its schedule's `timezone`, else the check's `timezone`, else
    `defaults.timezone`, else UTC; backups, drills and tasks skip the check's own step.
    Only `kinds` are listed, and of checks only those named in `checks` (as `name` or
    `name@environment`) when it is given.
    """
    from watchkeeper.engine.plugins import registry

    probes = (reg or registry()).types.get("probe", {})
    defaults = config.defaults
    found = []
    for name, check in config.checks.items() if "check" in kinds else ():
        if not check.enabled or getattr(probes.get(check.probe), "passive", False):
            continue
        schedule, tz = check_schedule(check, defaults)
        labels = {**(defaults.labels or {}), **(check.labels or {})}
        for environment in check.environments or [None]:
            if checks is not None and not _named(checks, name, environment):
                continue
            # a located check runs once per location, each on its own phase
            for location in check.locations.from_ if check.locations else [None]:
                found.append(
                    Scheduled("check", name, environment, schedule, tz, labels, location=location)
                )
    sections = (
        ("backup", config.backups.jobs),
        ("drill", config.backups.drills),
        ("task", config.tasks),
    )
    for kind, entries in sections:
        for name, entry in entries.items() if kind in kinds else ():
            tz = _zone_name(entry.schedule.timezone, defaults.timezone)
            job = entry.job if kind == "drill" else None
            found.append(Scheduled(kind, name, None, entry.schedule, tz, job=job))
    return found


def _named(names: Collection[str], check: str, environment: str | None) -> bool:
    return check in names or (environment is not None and f"{check}@{environment}" in names)


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
                "maintenance",
                window.name,
                opened.astimezone(UTC),
                tz,
                until=closed.astimezone(UTC),
                effect=window.effect,
            )
            for opened, closed in spans
        )
    return sorted(items, key=_order)


def _pauses(config: Any, *, start: datetime, end: datetime) -> list[tuple[datetime, datetime, Any]]:
    """Return (start, end, window) of every `pause` occurrence that can hold a run in
    [start, end), and of those that follow on back to back (the item runs only when the
    last of them ends)."""
    windows = [w for w in config.maintenance if w.effect == "pause"]
    if not windows:
        return []
    found: dict[tuple, tuple[datetime, datetime, Any]] = {}
    horizon = end
    # at most a few rounds: each looks past the latest end found for a window opening then
    for _ in range(32):
        grown = False
        for window, opened, closed in _occurrences(config, windows, start=start, end=horizon):
            if (window.name, opened) not in found:
                found[window.name, opened] = (opened, closed, window)
                grown = grown or closed >= horizon
        latest = max((closed for _, closed, _ in found.values()), default=horizon)
        if not grown or latest <= horizon:
            break
        horizon = latest + _JUST_BEFORE
    return sorted(found.values(), key=lambda o: (o[0], o[1], o[2].name))


def _occurrences(config: Any, windows: list[Any], *, start: datetime, end: datetime):
    default_tz = _zone_name(config.defaults.timezone)
    for window in windows:
        if window.schedule is not None:
            tz = timetable.zone(_zone_name(window.schedule.timezone, default_tz))
            for opened, closed in timetable.windows(
                window.schedule.cron, tz, window.duration, start=start, end=end
            ):
                yield window, opened.astimezone(UTC), closed.astimezone(UTC)
        elif window.start < end and window.end > start:
            yield window, window.start.astimezone(UTC), window.end.astimezone(UTC)


def _holds(entry: Scheduled, pauses: list[tuple[datetime, datetime, Any]]) -> list[Hold]:
    """Return the stretches the pause occurrences covering `entry` hold it, merged where
    one window opens before (or as) another closes."""
    holds: list[Hold] = []
    for opened, closed, window in pauses:
        if not entry.in_scope_of(window):
            continue
        if holds and opened <= holds[-1].end:
            if closed > holds[-1].end:
                holds[-1] = Hold(holds[-1].start, closed, holds[-1].window)
            continue
        holds.append(Hold(opened, closed, window.name))
    return holds


class _Held:
    """Answer "is a run at `at` held, and until when" for one item, by bisection."""

    __slots__ = ("holds", "starts")

    def __init__(self, holds: list[Hold]):
        self.holds = holds
        self.starts = [h.start for h in holds]

    def at(self, at: datetime) -> Hold | None:
        index = bisect.bisect_right(self.starts, at) - 1
        if index >= 0 and at < self.holds[index].end:
            return self.holds[index]
        return None


@functools.lru_cache(maxsize=256)
def _cadence(expr: str, tz: str) -> float | None:
    """Return the gap between a cron expression's runs when it is always the same (`*/5`:
    300 s), judged by its first 50 runs from a fixed week, else None."""
    series = timetable.CronSeries(expr, tz, start=datetime(2026, 1, 5, tzinfo=UTC))
    runs = list(itertools.islice(series, 50))
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(runs)}
    return gaps.pop() if len(gaps) == 1 else None


def _runs(
    series: Iterator[datetime], members: list[Scheduled], held: list[_Held | None], end: datetime
):
    """Yield one row per member at each fire time of a series shared by the members."""
    zones = [timetable.zone(m.timezone) for m in members]
    for at in series:
        if at >= end:
            return
        for member, zone, holding in zip(members, zones, held, strict=True):
            hold = holding.at(at) if holding is not None else None
            if hold is None:
                yield PlanItem(
                    member.kind, member.name, at, zone, member.environment, location=member.location
                )
            else:
                yield PlanItem(
                    member.kind,
                    member.name,
                    at,
                    zone,
                    member.environment,
                    location=member.location,
                    held_until=hold.end,
                    held_by=hold.window,
                )


def _held_runs(series: Any, until: datetime) -> tuple[datetime | None, int]:
    """Return a series' next run before `until` and how many it has before then (up to
    HELD_COUNT_LIMIT)."""
    at = series.peek()
    if at >= until:
        return None, 0
    count = 0
    for run in series:
        if run >= until or count >= HELD_COUNT_LIMIT:
            break
        count += 1
    return at, count


@functools.lru_cache(maxsize=1024)
def _held_cron_runs(cron: str, tz: str, first: datetime, until: datetime):
    """`_held_runs` of a cron without jitter, which is every entry's that shares it."""
    return _held_runs(timetable.CronSeries(cron, tz, start=first - _JUST_BEFORE), until)


def _held_stretches(
    entry: Scheduled, holds: list[Hold], *, start: datetime, end: datetime
) -> Iterator[PlanItem]:
    """Yield a row per held stretch of a summarised item that holds one of its runs in
    [start, end): its first held run, how many the stretch holds, when it runs instead."""
    zone = timetable.zone(entry.timezone)
    schedule = entry.schedule
    for hold in holds:
        first = max(hold.start, start)
        if first >= end:
            continue
        if schedule.every is None and not schedule.jitter:
            # a cron series without jitter is every entry's: 10,000 `*/5` checks under one
            # window count its runs once
            at, count = _held_cron_runs(schedule.cron, entry.timezone, first, hold.end)
        else:
            at, count = _held_runs(entry.series(first - _JUST_BEFORE), hold.end)
        if at is None or at >= end:
            continue
        yield PlanItem(
            entry.kind,
            entry.name,
            at,
            zone,
            entry.environment,
            location=entry.location,
            held_until=hold.end,
            held_by=hold.window,
            held_runs=count,
        )


def plan(
    config: Any,
    *,
    start: datetime,
    end: datetime,
    reg: Any = None,
    kinds: Collection[str] = KINDS,
    checks: Collection[str] | None = None,
    collapse: bool = False,
    stretches: bool = False,
) -> Iterator[PlanItem]:
    """Yield what is due in [start, end) of a validated config, in time order, lazily.

    A cron schedule yields a row per run; an `every` schedule one row, its first run, with
    `every` set. Maintenance windows come with their end, including one that opened before
    `start` and is still under way. A run a `pause` window holds carries `held_until`, when
    the item runs once instead. Rows due at one instant are ordered by kind, name and
    environment. Runs are computed as rows are consumed, so stopping early caps the work.

    `kinds` and `checks` narrow the listing (see `scheduled`; windows are listed only
    while `maintenance` is among `kinds`, and with `checks` only those covering one of
    them). For people: with `collapse` a cron item running more than FREQUENT times a week
    is one row too (with its gap, or its cron), and summaries carry their runs a day;
    with `stretches` each summarised item gets a row per stretch a pause holds it (its
    first held run, `held_runs`), in place of `held_until` on the summary.
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    entries = scheduled(config, reg, kinds=kinds, checks=checks)
    pauses = _pauses(config, start=start, end=end)
    sources: list[Iterable[PlanItem]] = []
    if "maintenance" in kinds:
        windows = maintenance_windows(config, start=start, end=end)
        if checks is not None:
            chosen = [e for e in entries if e.kind == "check"]
            by_name = {w.name: w for w in config.maintenance}
            windows = [w for w in windows if any(e.in_scope_of(by_name[w.name]) for e in chosen)]
        sources.append(windows)
    summaries: list[PlanItem] = []
    held_rows: list[Iterable[PlanItem]] = []
    shared: dict[tuple, list[tuple[Scheduled, _Held | None]]] = {}
    for entry in entries:
        schedule = entry.schedule
        holds = _holds(entry, pauses) if pauses else []
        frequent = (
            collapse
            and schedule.every is None
            and timetable.runs_per_week(schedule.cron, entry.timezone) > FREQUENT
        )
        if schedule.every is not None or frequent:
            first = entry.series(start - _JUST_BEFORE).peek()
            if first >= end:
                continue
            zone = timetable.zone(entry.timezone)
            if schedule.every is not None:
                every, per_day, cron = schedule.every, 86400 / schedule.every, None
            else:
                every = _cadence(schedule.cron, entry.timezone)
                per_day = timetable.runs_per_week(schedule.cron, entry.timezone) / 7
                cron = schedule.cron
            hold = _Held(holds).at(first) if holds else None
            summaries.append(
                PlanItem(
                    entry.kind,
                    entry.name,
                    first,
                    zone,
                    entry.environment,
                    location=entry.location,
                    every=every,
                    per_day=per_day,
                    cron=cron,
                    held_until=None if hold is None or stretches else hold.end,
                    held_by=None if hold is None or stretches else hold.window,
                )
            )
            if stretches and holds:
                held_rows.append(_held_stretches(entry, holds, start=start, end=end))
        elif schedule.jitter:
            held = [_Held(holds) if holds else None]
            sources.append(_runs(entry.series(start - _JUST_BEFORE), [entry], held, end))
        else:
            # Without jitter a cron series does not depend on its key: compute it once for
            # every entry sharing the expression and zone (10,000 `*/5` checks, one series).
            shared.setdefault((entry.kind, schedule.cron, entry.timezone), []).append(
                (entry, _Held(holds) if holds else None)
            )
    # a summary before its held stretch starting at the same instant (merge is stable)
    sources.append(sorted(summaries, key=_order))
    sources.extend(held_rows)
    for pairs in shared.values():
        pairs.sort(key=lambda pair: (pair[0].name, pair[0].environment or ""))
        members = [entry for entry, _ in pairs]
        held = [holding for _, holding in pairs]
        sources.append(_runs(members[0].series(start - _JUST_BEFORE), members, held, end))
    return heapq.merge(*sources, key=_order)
