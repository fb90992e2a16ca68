"""Decide when schedules fire, in UTC, by the rules of DESIGN.md Semantics ► Time.

The scheduler, `plan`, maintenance windows, heartbeat deadlines and catch-up all use it.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import math
from datetime import UTC, datetime, timedelta, tzinfo

from watchkeeper.schema.cron import (  # croniter through it: see schema/cron.py
    NEVER_FIRES,
    PROBE_START,
    WINDOW_OVERLAP_MAX,
    Cron,
    CroniterBadDateError,
    compile_cron,
    cron_error,
    every_error,
    jitter_error,
    length_error,
    schedule_error,
    seconds_of,
    vixie_croniter,
    zone,
    zone_error,
)  # fmt: skip

_DAY = timedelta(days=1)

__all__ = [
    "NEVER_FIRES", "CronSeries", "EverySeries", "cron_error", "every_error", "format_instant",
    "jitter_error", "length_error", "previous_fire", "schedule_error", "series_for",
    "stable_fraction", "window_error", "windows", "zone", "zone_error",
]  # fmt: skip


def window_error(expr: str, duration: float | timedelta) -> str | None:
    """Return why `windows` cannot lay out a recurring window, or None.

    A window opening again and again before it closes (`* * * * *` for 30d) would make
    every question about one day walk tens of thousands of occurrences.
    """
    if problem := length_error(duration):
        return f"`duration` {problem}"
    if cron_error(expr):
        return None  # reported on the cron itself
    length = timedelta(seconds=seconds_of(duration))
    start = datetime(2026, 1, 5, tzinfo=UTC)
    opened = 0
    for at in CronSeries(expr, "UTC", start=start):
        if at > start + length or opened > WINDOW_OVERLAP_MAX:
            break
        opened += 1
    if opened > WINDOW_OVERLAP_MAX:
        return (
            f"`duration` holds more than {WINDOW_OVERLAP_MAX} starts of cron '{expr}': "
            "that many occurrences would be under way at once; shorten it or start it less often"
        )
    return None


def _spec(expr: str) -> Cron:
    result = compile_cron(expr)
    if isinstance(result, str):
        raise ValueError(f"cron {expr!r}: {result}")
    return result


def _tz(tz: str | tzinfo) -> tzinfo:
    if not isinstance(tz, str):
        return tz
    if problem := zone_error(tz):
        raise ValueError(problem)
    return zone(tz)


def stable_fraction(key: str) -> float:
    """Map `key` to a float in [0, 1) that is the same in every process and host."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    # 53 bits fit a float exactly, so the result can never round up to 1.0.
    return (int.from_bytes(digest, "big") >> 11) / (1 << 53)


def _aware(dt: datetime, what: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {dt!r}")
    return dt.astimezone(UTC)


def _transition(tz: tzinfo, before: datetime, after: datetime) -> datetime:
    """Return the first instant in (before, after] that has `after`'s UTC offset."""
    target = after.astimezone(tz).utcoffset()
    lo, hi = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while hi - lo > 1:  # tz transitions fall on whole seconds
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _instants(naive: datetime, tz: tzinfo, both: bool) -> tuple[datetime, ...]:
    """Map a local wall-clock time to the UTC instants it fires at, earliest first."""
    first = naive.replace(tzinfo=tz).astimezone(UTC)
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return (first,)
    if first < second:  # repeated (fall-back) time: fold 0 is the first occurrence
        return (first, second) if both else (first,)
    # Gap (spring-forward): fold 0 lands after the gap and fold 1 before it.
    return (_transition(tz, second, first),)


def _offsets(tz: tzinfo, at: datetime) -> list[timedelta]:
    # Offsets in force a day either side bound the local times that map near `at`.
    return [x.astimezone(tz).utcoffset() or timedelta() for x in (at - _DAY, at, at + _DAY)]


def previous_fire(expr: str, tz: str | tzinfo, before: datetime, *,
                  jitter: float = 0.0, key: str = "") -> datetime | None:  # fmt: skip
    """Return the most recent fire time <= `before`, or None if there is none."""
    spec, zi = _spec(expr), _tz(tz)
    shift = timedelta(seconds=stable_fraction(key + "|jitter") * seconds_of(jitter))
    limit = _aware(before, "before") - shift
    # No local time later than limit + the largest nearby offset can map to <= limit.
    latest = (limit + max(_offsets(zi, limit))).replace(tzinfo=None)
    cron = vixie_croniter(spec.text, latest + timedelta(seconds=1))
    best = None
    while True:
        try:
            naive = cron.get_prev(datetime)
        except CroniterBadDateError:
            break
        every = _instants(naive, zi, both=True)
        for t in every if spec.wild_hour else every[:1]:
            if t <= limit and (best is None or t > best):
                best = t
        # every[-1] never decreases with the local time, so nothing earlier can win.
        if best is not None and every[-1] <= best:
            break
    return None if best is None else best + shift


class _Series:
    """Share the iterator API; subclasses supply peek(), _step() and _seek(after)."""

    def __iter__(self) -> _Series:
        return self

    def __next__(self) -> datetime:
        t = self.peek()
        self._step()
        return t

    def advance_past(self, t: datetime) -> None:
        """Skip to the first fire time strictly after `t`."""
        for _ in range(16):  # the usual case: a few ticks behind, step over them
            if self.peek() > t:
                return
            self._step()
        self._seek(t)  # far behind (suspend, clock jump): re-aim the cursor instead


class CronSeries(_Series):
    """Iterate the UTC instants, strictly after `start`, at which a cron expression fires."""

    previous_fire = staticmethod(previous_fire)

    def __init__(self, expr: str, tz: str | tzinfo = "UTC", *, start: datetime,
                 jitter: float = 0.0, key: str = "") -> None:  # fmt: skip
        spec = _spec(expr)
        if problem := jitter_error(jitter):
            raise ValueError(f"jitter {problem}, got {jitter!r} seconds")
        self.expr = expr
        self.tz = _tz(tz)
        self.jitter_offset = stable_fraction(key + "|jitter") * seconds_of(jitter)
        self._shift = timedelta(seconds=self.jitter_offset)
        self._both = spec.wild_hour
        # One croniter over naive local times (calendar only); only its cursor moves.
        self._cron = vixie_croniter(spec.text, PROBE_START)
        self._seek(start)

    def _seek(self, after: datetime) -> None:
        """Restart the series at the first fire strictly after `after`."""
        self._after = _aware(after, "start") - self._shift
        self._frontier = self._after
        self._heap: list[datetime] = []
        self._peeked: datetime | None = None
        # Fold-1 instants of earlier local times may still lie after `after`,
        # so start from the smallest offset in force around it.
        earliest = self._after + min(_offsets(self.tz, self._after))
        self._cron.set_current(earliest.replace(tzinfo=None))

    def _pull(self) -> datetime:
        while True:
            # Every instant yet to come is >= the frontier, so these are final.
            if self._heap and self._heap[0] <= self._frontier:
                t = heapq.heappop(self._heap)
                if t > self._after:  # also drops gap times that collapse onto one instant
                    self._after = t
                    return t
                continue
            try:
                naive = self._cron.get_next(datetime)
            except CroniterBadDateError:
                raise StopIteration from None
            instants = _instants(naive, self.tz, self._both)
            self._frontier = instants[0]
            for t in instants:
                heapq.heappush(self._heap, t)

    def peek(self) -> datetime:
        """Return the next fire time without consuming it."""
        if self._peeked is None:
            self._peeked = self._pull() + self._shift
        return self._peeked

    def _step(self) -> None:
        self.peek()
        self._peeked = None


class EverySeries(_Series):
    """Iterate fire times `epoch + phase + k*every`, phase-locked to a hash of `key`."""

    def __init__(self, every: float, *, key: str, start: datetime, jitter: float = 0.0) -> None:
        every = seconds_of(every)
        if problem := every_error(every):
            raise ValueError(f"every {problem}, got {every!r} seconds")
        if problem := jitter_error(jitter):
            raise ValueError(f"jitter {problem}, got {jitter!r} seconds")
        self.every = every
        # Jitter beyond one period would only wrap around, so cap it below `every`.
        self.jitter_offset = stable_fraction(key + "|jitter") * min(seconds_of(jitter), every)
        self.phase = (stable_fraction(key) * every + self.jitter_offset) % every
        self._seek(start)

    def _at(self, k: int) -> datetime:
        return datetime.fromtimestamp(self.phase + k * self.every, UTC)

    def _seek(self, after: datetime) -> None:
        after = _aware(after, "start")
        k = math.floor((after.timestamp() - self.phase) / self.every) + 1
        # Float division can be off by one either way; settle it on the datetimes.
        while self._at(k) <= after:
            k += 1
        while self._at(k - 1) > after:
            k -= 1
        self._k = k

    def peek(self) -> datetime:
        """Return the next fire time without consuming it."""
        return self._at(self._k)

    def _step(self) -> None:
        self._k += 1


def series_for(schedule: object, *, key: str, start: datetime,
               default_tz: str = "UTC") -> CronSeries | EverySeries:  # fmt: skip
    """Build the series for a schedule object with `every`/`cron`/`timezone`/`jitter`."""
    cron, every = getattr(schedule, "cron", None), getattr(schedule, "every", None)
    jitter = seconds_of(getattr(schedule, "jitter", None))
    if cron and every:
        raise ValueError("schedule sets both 'every' and 'cron'; expected one")
    if cron:
        tz = getattr(schedule, "timezone", None) or default_tz
        return CronSeries(cron, tz, start=start, jitter=jitter, key=key)
    if every:
        return EverySeries(every, key=key, start=start, jitter=jitter)
    raise ValueError("schedule sets neither 'every' nor 'cron'; expected one")


def windows(expr: str, tz: str | tzinfo, duration: float, *, start: datetime,
            end: datetime) -> list[tuple[datetime, datetime]]:  # fmt: skip
    """Return the cron-started windows of `duration` seconds that overlap [start, end)."""
    if problem := length_error(duration):
        raise ValueError(f"window duration {problem}, got {duration!r}")
    length = timedelta(seconds=seconds_of(duration))
    end = _aware(end, "end")
    found = []
    # A window that opened up to `duration` ago is still under way at `start`.
    for opened in CronSeries(expr, tz, start=_aware(start, "start") - length):
        if opened >= end:
            break
        found.append((opened, opened + length))
    return found


def format_instant(dt: datetime) -> str:
    """Format an aware datetime as ISO-8601 with its offset, to the second."""
    _aware(dt, "instant")
    return dt.isoformat(timespec="seconds")


@functools.lru_cache(maxsize=256)
def runs_per_week(expr: str, tz: str = "UTC") -> int:
    """Return how often a cron expression fires in a week (capped at 20,000): how many
    runs a window holds, how hard a config works its daemon."""
    start = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday: any week is as good
    horizon = start + timedelta(days=7)
    count = 0
    for at in CronSeries(expr, tz, start=start):
        if at > horizon or count > 20_000:
            break
        count += 1
    return count
