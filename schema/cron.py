"""The schedule grammar: five-field cron (classic Vixie rules), IANA timezone names, and
the spans a schedule may hold. The config's schema refuses what this module finds wrong,
and the engine's timetable builds series from what it accepts, so the two always agree.
"""

from __future__ import annotations

import difflib
import functools
import math
import platform
import re
import struct
import sys
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


def _pointer_size(
    executable: str = sys.executable, bits: str = "", linkage: str = ""
) -> tuple[str, str]:
    if executable != sys.executable or bits or linkage:
        return _architecture(executable, bits, linkage)
    return f"{struct.calcsize('P') * 8}bit", linkage


# croniter asks `platform.architecture()` at import whether Python is 32-bit, and that runs
# `file` on the interpreter in a subprocess: tens of milliseconds of every start-up (and of
# `watchkeeper validate`). This interpreter's pointer size answers the question.
_architecture, platform.architecture = platform.architecture, _pointer_size
try:
    from croniter import (
        CroniterBadDateError,
        CroniterError,
        CroniterUnsupportedSyntaxError,
        croniter,
    )
finally:
    platform.architecture = _architecture

from watchkeeper.schema.text import shown  # noqa: E402

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
PROBE_START = datetime(2000, 1, 1)


class Cron(NamedTuple):
    text: str  # normalised 5-field expression croniter understands
    wild_hour: bool  # runs in both repeated hours of a fall-back night


def vixie_croniter(text: str, start: datetime) -> croniter:
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
def compile_cron(expr: str) -> Cron | str:
    """Parse a cron expression into a `Cron`, or return what is wrong with it."""
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
        cron = vixie_croniter(text, PROBE_START)
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
    return Cron(text, any(h.startswith("*") or "/" in h for h in hour))


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
    seconds = seconds_of(seconds)
    if math.isfinite(seconds) and 0 <= seconds < MIN_EVERY:
        return "must be at least 1ms"
    return _span_error(seconds, positive=True)


def jitter_error(seconds: float | timedelta) -> str | None:
    """Return why a jitter cannot shift a series (`must be ...`), or None."""
    return _span_error(seconds_of(seconds), positive=False)


def length_error(seconds: float | timedelta) -> str | None:
    """Return why a window length (or an announcement's lead) cannot be used, or None."""
    return _span_error(seconds_of(seconds), positive=True)


def schedule_error(schedule: object) -> str | None:
    """Return why `series_for` would refuse a schedule object (`every`/`cron`/`jitter`;
    the cron and timezone are checked on their own), or None."""
    every, jitter = getattr(schedule, "every", None), getattr(schedule, "jitter", None)
    if every is not None and (problem := every_error(every)):
        return f"`every` {problem}"
    if jitter is not None and (problem := jitter_error(jitter)):
        return f"`jitter` {problem}"
    return None


def _blame_field(fields: list[str], raw: list[str], exc: CroniterError) -> str:
    """Name the field croniter rejected, with what it expects there."""
    for i, field in enumerate(fields):
        name, written = FIELDS[i], raw[i]
        try:
            croniter(" ".join(field if j == i else "*" for j in range(5)), PROBE_START)
        except CroniterUnsupportedSyntaxError:
            return f"{name} '{written}' mixes plain weekdays with '#'; use one form"
        except CroniterError as err:
            if "step" in str(err):
                return f"{name} '{written}' has a bad step; expected */n with n >= 1"
            what = "is out of range" if "out of range" in str(err) else "is not valid"
            return f"{name} '{written}' {what}; expected {_EXPECTED[i]}"
    return f"invalid cron expression: {exc}"


@functools.lru_cache(maxsize=32768)
def cron_error(expr: str) -> str | None:
    """Return why a 5-field cron expression is invalid, or None when it is valid."""
    result = compile_cron(expr)
    return result if isinstance(result, str) else None


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


def seconds_of(value: float | timedelta | None) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value or 0)
