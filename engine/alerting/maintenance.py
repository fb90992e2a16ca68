"""Maintenance windows: which occurrences are under way, what they cover, when they announce.

Every time question goes through `timetable`, so a recurring window starts by the same
Unix cron and DST rules as any schedule, in its own timezone, and lasts `duration`
seconds of real time (a window crossing midnight or a DST change simply runs on).
An occurrence already under way at the instant asked about counts: that is how a
window under way when the daemon starts, or added by a reload, applies at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from watchkeeper.engine.schedule import timetable

__all__ = [
    "ActiveWindow", "Maintenance", "window_covers_backup", "window_covers_check",
]  # fmt: skip

DAY = 86400.0
CACHED_DAYS = 512
"""Days of occurrences kept; the engine asks about today, the API about the next weeks."""


@dataclass(frozen=True)
class ActiveWindow:
    """One occurrence of a maintenance window: [start, end) in UNIX seconds."""

    name: str
    start: float
    end: float
    effect: str  # "mute" | "pause"
    reason: str | None = None
    window: Any = field(default=None, compare=False, repr=False)  # the MaintenanceWindow

    @property
    def key(self) -> str:
        """Return an id for this occurrence, stable across restarts (outbox idempotency)."""
        return f"{self.name}@{_iso(self.start)}"

    def under_way(self, at: float) -> bool:
        """True when `at` falls inside this occurrence."""
        return self.start <= at < self.end

    def covers_check(self, check: str | None, environment: str | None, labels: Any) -> bool:
        """True when this occurrence's window scopes in the check instance."""
        return window_covers_check(self.window, check, environment, labels)

    def covers_backup(self, job: str) -> bool:
        """True when this occurrence's window scopes in the backup job."""
        return window_covers_backup(self.window, job)

    def public(self) -> dict[str, Any]:
        """Return the JSON shape used by the CLI and the API."""
        return {
            "name": self.name,
            "effect": self.effect,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "reason": self.reason,
        }


def window_covers_check(
    window: Any, check: str | None, environment: str | None, labels: Any = None
) -> bool:
    """Return whether a window's scope takes in a check instance (DESIGN ► Maintenance).

    No scope at all covers everything. Otherwise the window must set at least one of
    `checks`, `labels`, `environments`, and every one it sets must match: a window
    scoped only to `backups` covers no check.
    """
    if not window.scoped:
        return True
    if not (window.checks or window.labels or window.environments):
        return False
    if window.checks:
        names = {check} | ({f"{check}@{environment}"} if environment else set())
        if names.isdisjoint(window.checks):
            return False
    if window.labels:
        have = labels or {}
        if any(have.get(k) != v for k, v in window.labels.items()):
            return False
    return not window.environments or environment in window.environments


def window_covers_backup(window: Any, job: str) -> bool:
    """Return whether a window's scope takes in a backup job: listed, or no scope at all."""
    return not window.scoped or job in window.backups


class Maintenance:
    """The maintenance windows of one validated config, asked about by instant.

    Occurrences are computed per UTC day and cached, so the engine can ask on every
    alert change; build a new object on reload.
    """

    def __init__(self, config: Any, *, default_tz: str = "UTC"):
        defaults = getattr(config, "defaults", None)
        self.default_tz = getattr(defaults, "timezone", None) or default_tz
        self.windows: list[Any] = list(getattr(config, "maintenance", None) or [])
        self._days: OrderedDict[int, tuple[ActiveWindow, ...]] = OrderedDict()
        self._spans_asked: OrderedDict[tuple[float, float], list[ActiveWindow]] = OrderedDict()
        self._boundary: tuple[float, float | None] | None = None  # (after, answer)

    def __bool__(self) -> bool:
        return bool(self.windows)

    # -- occurrences -----------------------------------------------------------------------

    def _timezone(self, window: Any) -> str:
        return window.schedule.timezone or self.default_tz

    def _spans(self, window: Any, start: float, end: float) -> list[tuple[float, float]]:
        """Return [start, end) of the window's occurrences overlapping [start, end)."""
        if window.schedule is None:
            opened, closed = window.start.timestamp(), window.end.timestamp()
            return [(opened, closed)] if opened < end and closed > start else []
        spans = timetable.windows(
            window.schedule.cron,
            self._timezone(window),
            window.duration,
            start=_dt(start),
            end=_dt(end),
        )
        return [(a.timestamp(), b.timestamp()) for a, b in spans]

    def _occurrences(self, windows: Iterable[Any], start: float, end: float) -> list[ActiveWindow]:
        found = [
            ActiveWindow(w.name, opened, closed, w.effect, w.reason, w)
            for w in windows
            for opened, closed in self._spans(w, start, end)
        ]
        found.sort(key=lambda o: (o.start, o.end, o.name))
        return found

    def occurrences(self, start: float, end: float) -> list[ActiveWindow]:
        """Return every occurrence overlapping [start, end), sorted by start."""
        if end <= start or not self.windows:
            return []
        # callers looping over many checks ask about the same span again and again
        found = self._spans_asked.get((start, end))
        if found is None:
            found = self._occurrences(self.windows, start, end)
            self._spans_asked[start, end] = found
            if len(self._spans_asked) > 16:
                self._spans_asked.popitem(last=False)
        return list(found)

    def _day(self, at: float) -> tuple[ActiveWindow, ...]:
        day = int(at // DAY)
        cached = self._days.get(day)
        if cached is None:
            cached = tuple(self.occurrences(day * DAY, (day + 1) * DAY))
            self._days[day] = cached
            if len(self._days) > CACHED_DAYS:
                self._days.popitem(last=False)
        return cached

    def under_way(self, at: float) -> list[ActiveWindow]:
        """Return every occurrence covering `at` (started at or before it, not yet ended)."""
        if not self.windows:
            return []
        return [o for o in self._day(at) if o.under_way(at)]

    # -- scope -----------------------------------------------------------------------------

    def covering_check(
        self, at: float, check: str | None, environment: str | None, labels: Any = None
    ) -> list[ActiveWindow]:
        """Return the occurrences under way at `at` whose scope takes in the check instance."""
        return [o for o in self.under_way(at) if o.covers_check(check, environment, labels)]

    def covering_backup(self, at: float, job: str) -> list[ActiveWindow]:
        """Return the occurrences under way at `at` whose scope takes in the backup job."""
        return [o for o in self.under_way(at) if o.covers_backup(job)]

    def muted(
        self, at: float, check: str | None, environment: str | None, labels: Any = None
    ) -> ActiveWindow | None:
        """Return the `mute` occurrence holding a check's alerts at `at`, ending last."""
        return _last(o for o in self.covering_check(at, check, environment, labels)
                     if o.effect == "mute")  # fmt: skip

    def paused(
        self, at: float, check: str | None, environment: str | None, labels: Any = None
    ) -> ActiveWindow | None:
        """Return the `pause` occurrence keeping a check from running at `at`, ending last."""
        return _last(o for o in self.covering_check(at, check, environment, labels)
                     if o.effect == "pause")  # fmt: skip

    def backup_paused(self, at: float, job: str) -> ActiveWindow | None:
        """Return the `pause` occurrence keeping a backup job from running at `at`, ending last.

        A `mute` window does not stop a backup; it only holds the job's alerts.
        """
        return _last(o for o in self.covering_backup(at, job) if o.effect == "pause")

    # -- timers ----------------------------------------------------------------------------

    def next_boundary(self, after: float) -> float | None:
        """Return the first start or end of any occurrence strictly after `after`, or None."""
        if self._boundary is not None:
            asked, answer = self._boundary
            # nothing starts or ends in (asked, answer], so the answer holds for later asks
            if asked <= after and (answer is None or after < answer):
                return answer
        answer = self._next_boundary(after)
        self._boundary = (after, answer)
        return answer

    def _next_boundary(self, after: float) -> float | None:
        found = [o.end for o in self.under_way(after) if o.end > after]
        for window in self.windows:
            if window.schedule is None:
                found += [
                    t for t in (window.start.timestamp(), window.end.timestamp()) if t > after
                ]
                continue
            series = timetable.CronSeries(
                window.schedule.cron, self._timezone(window), start=_dt(after)
            )
            try:
                found.append(series.peek().timestamp())
            except StopIteration:
                pass
        return min(found, default=None)

    def announcements(self, since: float, until: float) -> list[tuple[ActiveWindow, float]]:
        """Return (occurrence, announce_at) for announce times in (since, until], in time order."""
        found = []
        for window in self.windows:
            if window.announce is None:
                continue
            before = window.announce.before
            for o in self._occurrences([window], since + before, until + before + 1.0):
                announce_at = o.start - before
                if since < announce_at <= until:
                    found.append((o, announce_at))
        found.sort(key=lambda pair: (pair[1], pair[0].name))
        return found

    def announcements_due(self, at: float) -> list[tuple[ActiveWindow, float]]:
        """Return (occurrence, announce_at) whose announce time has come but not the start.

        For catching up at start-up or reload: a window added less than `before` ahead is
        announced at once. Deduplicate by `ActiveWindow.key`.
        """
        found = []
        for window in self.windows:
            if window.announce is None:
                continue
            before = window.announce.before
            for o in self._occurrences([window], at, at + before + 1.0):
                if o.start - before <= at < o.start:
                    found.append((o, o.start - before))
        found.sort(key=lambda pair: (pair[1], pair[0].name))
        return found


def _last(found: Iterable[ActiveWindow]) -> ActiveWindow | None:
    return max(found, key=lambda o: (o.end, o.name), default=None)


def _dt(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def _iso(at: float) -> str:
    return timetable.format_instant(_dt(at)).replace("+00:00", "Z")
