"""Decide when schedules fire, in UTC, by the rules of DESIGN.md Semantics ► Time.

The scheduler, `plan`, maintenance windows, heartbeat deadlines and catch-up all use it.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import heapq
import math
import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, CroniterError, CroniterUnsupportedSyntaxError, croniter

__all__ = [
    "CronSeries", "EverySeries", "cron_error", "every_error", "format_instant", "jitter_error",
    "length_error", "previous_fire", "schedule_error", "series_for", "stable_fraction",
    "window_error", "windows", "zone", "zone_error",
]  # fmt: skip

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_EXPECTED = (
    "0-59", "0-23", "1-31, L (last day) or 15W (nearest weekday)", "1-12 or JAN-DEC",
    "0-7 or SUN-SAT, SUN#2 (nth weekday) or FRIL / 5L (last weekday)",
)  # fmt: skip
_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
            "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
            "@annually": "0 0 1 1 *"}  # fmt: skip
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES = ({}, {}, {}, {m: i for i, m in enumerate(_MONTHS, 1)}, {d: i for i, d in enumerate(_DAYS)})
_BOUNDS = (("0", "59"), ("0", "23"), ("1", "31"), ("1", "12"), ("0", "6"))
_NAME_BOUNDS = ((), (), (), ("JAN", "DEC"), ("SUN", "SAT"))
_RANGE = re.compile(r"^(\w+)-(\w+)(/\d+)?$")
_LAST_WEEKDAY = re.compile(r"^([0-7]|SUN|MON|TUE|WED|THU|FRI|SAT)L$")
_HASHED = re.compile(r"^[HR](?:\(|/|$)")  # croniter's H(ashed) and R(andom) are not repeatable
# Fixed calendar start for validation, so "does it ever fire" has one answer.
_PROBE_START = datetime(2000, 1, 1)
_DAY = timedelta(days=1)


class _Cron(NamedTuple):
    text: str  # normalised 5-field expression croniter understands
    wild_hour: bool  # runs in both repeated hours of a fall-back night


def _croniter(text: str, start: datetime) -> croniter:
    # implement_cron_bug gives Vixie's rule: if day-of-month or day-of-week starts
    # with '*', the two fields are ANDed; croniter's default would OR them.
    return croniter(text, start, day_or=True, implement_cron_bug=True)


def _check_field(i: int, field: str) -> str | None:
    """Return what croniter would accept but Vixie cron or watchkeeper would not."""
    name = FIELDS[i]
    for item in field.split(","):
        if not item:
            return f"{name} '{field}' has an empty list item"
        if _HASHED.match(item.upper()):
            return f"{name} '{item}': hashed/random values are not supported; use jitter"
        # croniter wraps a backwards range around; Vixie cron rejects it.
        if m := _RANGE.match(item.upper()):
            lo, hi = (_NAMES[i].get(x, int(x) if x.isdigit() else None) for x in (m[1], m[2]))
            hi = 7 if i == 4 and m[2] == "SUN" else hi  # MON-SUN means MON-7, as in Vixie
            if lo is not None and hi is not None and lo > hi:
                first, last = _NAME_BOUNDS[i] if m[1].isalpha() else _BOUNDS[i]
                split = f"{m[1]}-{last}{m[3] or ''},{first}-{m[2]}{m[3] or ''}"
                return f"{name} range '{item}' runs backwards; write it as '{split}'"
    return None


@functools.lru_cache(maxsize=32768)
def _compile(expr: str) -> _Cron | str:
    """Parse a cron expression into a `_Cron`, or return what is wrong with it."""
    if not isinstance(expr, str):
        return f"expected a cron expression string, got {type(expr).__name__}"
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in _ALIASES:
            return f"unknown shortcut '{text}'; expected one of {', '.join(_ALIASES)}"
        text = _ALIASES[text.lower()]
    raw = text.split()
    if len(raw) != 5:
        extra = "; seconds and years are not supported" if len(raw) in (6, 7) else ""
        return f"expected 5 fields ({' '.join(FIELDS)}), got {len(raw)}{extra}"
    for i, field in enumerate(raw):
        if problem := _check_field(i, field):
            return problem
    fields = [f.upper() for f in raw]
    # croniter spells "last Friday" L5; accept the common 5L / FRIL spellings too.
    fields[4] = ",".join(
        f"L{_NAMES[4].get(m[1], m[1])}" if (m := _LAST_WEEKDAY.match(item)) else item
        for item in fields[4].split(",")
    )
    text = " ".join(fields)
    try:
        cron = _croniter(text, _PROBE_START)
        # Only a restricted month can rule out every day (Feb 30); skip the search otherwise.
        if fields[3] != "*" and (fields[2], fields[4]) != ("*", "*"):
            cron.get_next(datetime)
    except CroniterBadDateError:
        return f"never fires: no date has day-of-month '{fields[2]}' in month '{fields[3]}'"
    except CroniterError as exc:
        return _blame_field(fields, raw, exc)
    if (fields[2], fields[4]) != ("*", "*") and not _fires_soon(text):
        return NEVER_FIRES
    hour = fields[1].split(",")
    return _Cron(text, any(h.startswith("*") or "/" in h for h in hour))


NEVER_YEARS = 5
NEVER_FIRES = f"never fires (no run in the next {NEVER_YEARS} years)"


def _fires_soon(text: str) -> bool:
    """True when an expression restricting days fires within NEVER_YEARS from now.

    Both day fields restricted can rule out every date (`*/100` is the 1st, which is never
    the 4th Monday): the daemon would find no next run. One search with croniter's own
    bound: for a normal expression it stops at the first match, a few steps away; for an
    impossible one it gives up after NEVER_YEARS + 1 years of months (milliseconds).
    """
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    try:
        cron = croniter(
            text, now, day_or=True, implement_cron_bug=True,
            max_years_between_matches=NEVER_YEARS + 1,
        )  # fmt: skip
        return cron.get_next(datetime) <= now + timedelta(days=366 * NEVER_YEARS)
    except (CroniterBadDateError, OverflowError, ValueError):
        return False


# The longest span a time may be pushed by (an `every`, a jitter, a window's length): what
# lies further than the horizon a cron must fire within is no schedule, and a datetime
# shifted by much more overflows.
LONGEST = NEVER_YEARS * 366 * 86400.0
MIN_EVERY = 0.001
WINDOW_OVERLAP_MAX = 1000
"""Occurrences of one recurring window that may be under way at once (each one is kept)."""


def _span_error(seconds: float, *, positive: bool) -> str | None:
    if not math.isfinite(seconds):
        return f"must be a finite duration, got {seconds!r}"
    if seconds < 0 or (positive and seconds == 0):
        return "must be longer than 0s" if positive else "cannot be negative"
    if seconds > LONGEST:
        return f"must be at most {NEVER_YEARS * 366}d (the {NEVER_YEARS}-year horizon)"
    return None


def every_error(seconds: float | timedelta) -> str | None:
    """Return why an `every` interval cannot be scheduled (`must be ...`), or None.

    `EverySeries` refuses exactly this; `validate` asks the same question.
    """
    seconds = _seconds(seconds)
    if math.isfinite(seconds) and 0 <= seconds < MIN_EVERY:
        return "must be at least 1ms"
    return _span_error(seconds, positive=True)


def jitter_error(seconds: float | timedelta) -> str | None:
    """Return why a jitter cannot shift a series (`must be ...`), or None."""
    return _span_error(_seconds(seconds), positive=False)


def length_error(seconds: float | timedelta) -> str | None:
    """Return why a window length (or an announcement's lead) cannot be used, or None."""
    return _span_error(_seconds(seconds), positive=True)


def schedule_error(schedule: object) -> str | None:
    """Return why `series_for` would refuse a schedule object (`every`/`cron`/`jitter`;
    the cron and timezone are checked on their own), or None."""
    every, jitter = getattr(schedule, "every", None), getattr(schedule, "jitter", None)
    if every is not None and (problem := every_error(every)):
        return f"`every` {problem}"
    if jitter is not None and (problem := jitter_error(jitter)):
        return f"`jitter` {problem}"
    return None


def window_error(expr: str, duration: float | timedelta) -> str | None:
    """Return why `windows` cannot lay out a recurring window, or None.

    A window opening again and again before it closes (`* * * * *` for 30d) would make
    every question about one day walk tens of thousands of occurrences.
    """
    if problem := length_error(duration):
        return f"`duration` {problem}"
    if cron_error(expr):
        return None  # reported on the cron itself
    length = timedelta(seconds=_seconds(duration))
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


def _blame_field(fields: list[str], raw: list[str], exc: CroniterError) -> str:
    """Name the field croniter rejected, with what it expects there."""
    for i, field in enumerate(fields):
        name, shown = FIELDS[i], raw[i]
        try:
            croniter(" ".join(field if j == i else "*" for j in range(5)), _PROBE_START)
        except CroniterUnsupportedSyntaxError:
            return f"{name} '{shown}' mixes plain weekdays with '#'; use one form"
        except CroniterError as err:
            if "step" in str(err):
                return f"{name} '{shown}' has a bad step; expected */n with n >= 1"
            what = "is out of range" if "out of range" in str(err) else "is not valid"
            return f"{name} '{shown}' {what}; expected {_EXPECTED[i]}"
    return f"invalid cron expression: {exc}"


@functools.lru_cache(maxsize=32768)
def cron_error(expr: str) -> str | None:
    """Return why a 5-field cron expression is invalid, or None when it is valid."""
    result = _compile(expr)
    return result if isinstance(result, str) else None


def _spec(expr: str) -> _Cron:
    result = _compile(expr)
    if isinstance(result, str):
        raise ValueError(f"cron {expr!r}: {result}")
    return result


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """Return the IANA zone called `name`."""
    return ZoneInfo(name)


# IANA names are letters, digits, `_ + -` and `/` (Europe/Berlin, Etc/GMT+1): anything
# else (`..`, a leading `/`, NUL or control characters, a 300-character name) is refused
# before zoneinfo turns it into a path, where it could only fail with an OS error
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_ZONE_NAME_MAX = 64  # the longest name in the database has 32 characters
ZONE_EXPECTED = "(expected an IANA name such as Europe/Berlin)"


@functools.lru_cache(maxsize=1024)
def zone_error(name: str) -> str | None:
    """Return why `name` is not an IANA timezone (with a suggestion), or None."""
    from watchkeeper.engine.config.problems import shown

    plausible = isinstance(name, str) and len(name) <= _ZONE_NAME_MAX
    if plausible and _ZONE_NAME.fullmatch(name):
        try:
            zone(name)
            return None
        except (ZoneInfoNotFoundError, ValueError, OSError):  # also a folder (`Europe`)
            pass
    hint = f" {ZONE_EXPECTED}"
    if plausible and str(name).isprintable():
        # Listing every zone reads the whole tz database: only done on an error.
        by_lower = {z.lower(): z for z in available_timezones()}
        close = difflib.get_close_matches(str(name).lower(), by_lower, n=1, cutoff=0.6)
        if close:
            hint = f"; did you mean '{by_lower[close[0]]}'?"
    return f"unknown timezone '{shown(name)}'{hint}"


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


def _seconds(value: float | timedelta | None) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value or 0)


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
    shift = timedelta(seconds=stable_fraction(key + "|jitter") * _seconds(jitter))
    limit = _aware(before, "before") - shift
    # No local time later than limit + the largest nearby offset can map to <= limit.
    latest = (limit + max(_offsets(zi, limit))).replace(tzinfo=None)
    cron = _croniter(spec.text, latest + timedelta(seconds=1))
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
        self.jitter_offset = stable_fraction(key + "|jitter") * _seconds(jitter)
        self._shift = timedelta(seconds=self.jitter_offset)
        self._both = spec.wild_hour
        # One croniter over naive local times (calendar only); only its cursor moves.
        self._cron = _croniter(spec.text, _PROBE_START)
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
        every = _seconds(every)
        if problem := every_error(every):
            raise ValueError(f"every {problem}, got {every!r} seconds")
        if problem := jitter_error(jitter):
            raise ValueError(f"jitter {problem}, got {jitter!r} seconds")
        self.every = every
        # Jitter beyond one period would only wrap around, so cap it below `every`.
        self.jitter_offset = stable_fraction(key + "|jitter") * min(_seconds(jitter), every)
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
    jitter = _seconds(getattr(schedule, "jitter", None))
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
    length = timedelta(seconds=_seconds(duration))
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
