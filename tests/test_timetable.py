"""Tests for engine/schedule/timetable.py: when schedules fire, in UTC, across DST."""

import itertools
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from watchkeeper.engine.schedule import timetable

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
_DAY = timedelta(days=1)


def z(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(series, until: datetime) -> list[datetime]:
    """Consume `series` up to (excluding) `until`."""
    return list(itertools.takewhile(lambda t: t < until, series))


def take(series, n: int) -> list[datetime]:
    return list(itertools.islice(series, n))


# --- Vixie rules across DST -------------------------------------------------------------


def test_fixed_hour_in_spring_forward_gap_runs_once_at_transition():
    got = fires(timetable.CronSeries("30 2 * * *", BERLIN, start=z(2026, 3, 27, 12)), z(2026, 4, 1))
    # 2026-03-29 02:30 does not exist in Berlin; it runs at 03:00 CEST = 01:00Z.
    assert got == [z(2026, 3, 28, 1, 30), z(2026, 3, 29, 1, 0), z(2026, 3, 30, 0, 30),
                   z(2026, 3, 31, 0, 30)]  # fmt: skip


def test_fixed_hour_in_fall_back_runs_once_at_first_occurrence():
    got = fires(timetable.CronSeries("30 2 * * *", BERLIN, start=z(2026, 10, 23, 12)),
                z(2026, 10, 28))  # fmt: skip
    # 02:30 happens twice on 2026-10-25; only the first (CEST, 00:30Z) runs.
    assert got == [z(2026, 10, 24, 0, 30), z(2026, 10, 25, 0, 30), z(2026, 10, 26, 1, 30),
                   z(2026, 10, 27, 1, 30)]  # fmt: skip


def test_wildcard_hour_runs_in_both_repeated_hours():
    series = timetable.CronSeries("*/15 * * * *", BERLIN, start=z(2026, 10, 24, 23, 59))
    got = fires(series, z(2026, 10, 25, 2))
    assert got == [z(2026, 10, 25, 0, 0) + timedelta(minutes=15 * i) for i in range(8)]


def test_start_inside_the_repeated_hour():
    # 00:50Z is the first 02:50; the second pass through 02:xx (01:00Z on) is still ahead.
    got = take(timetable.CronSeries("*/15 * * * *", BERLIN, start=z(2026, 10, 25, 0, 50)), 3)
    assert got == [z(2026, 10, 25, 1), z(2026, 10, 25, 1, 15), z(2026, 10, 25, 1, 30)]
    got = take(timetable.CronSeries("0 */2 * * *", BERLIN, start=z(2026, 10, 24, 23, 30)), 3)
    assert got == [z(2026, 10, 25, 0), z(2026, 10, 25, 1), z(2026, 10, 25, 3)]


def test_wildcard_hour_day_counts_and_no_duplicates():
    def local_day(year: int, month: int, day: int) -> list[datetime]:
        tz = ZoneInfo(BERLIN)
        start = datetime(year, month, day, tzinfo=tz).astimezone(UTC)
        end = datetime(year, month, day + 1, tzinfo=tz).astimezone(UTC)
        series = timetable.CronSeries("*/15 * * * *", BERLIN, start=start - timedelta(seconds=1))
        return fires(series, end)

    fall, spring = local_day(2026, 10, 25), local_day(2026, 3, 29)
    assert len(fall) == 25 * 4  # a 25-hour day, both 02:xx hours
    assert len(spring) == 23 * 4  # 02:00-02:45 all collapse onto 03:00, run once
    for got in (fall, spring):
        assert len(set(got)) == len(got)
        assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(got))


def test_hourly_new_york_across_both_2026_transitions():
    hourly = [timedelta(hours=1)]
    for start in (z(2026, 3, 7, 11, 59), z(2026, 10, 31, 11, 59)):  # DST: Mar 8 and Nov 1
        got = fires(timetable.CronSeries("0 * * * *", NEW_YORK, start=start), start + _DAY)
        # Every UTC hour exactly once: the gap hour merges, the repeated hour runs twice.
        assert len(got) == 24
        assert {b - a for a, b in itertools.pairwise(got)} == set(hourly)
    spring = fires(timetable.CronSeries("0 * * * *", NEW_YORK, start=z(2026, 3, 8, 5)),
                   z(2026, 3, 8, 9))  # fmt: skip
    assert spring == [z(2026, 3, 8, 6), z(2026, 3, 8, 7), z(2026, 3, 8, 8)]
    fall = fires(timetable.CronSeries("0 1 * * *", NEW_YORK, start=z(2026, 10, 31, 12)),
                 z(2026, 11, 2, 12))  # fmt: skip
    assert fall == [z(2026, 11, 1, 5), z(2026, 11, 2, 6)]  # 01:00 EDT only, then EST


def test_every_minute_is_every_utc_minute_across_transitions():
    # Sanity and speed: 10,000 fires through the fall-back night (see bench/ for timing).
    series = timetable.CronSeries("*/1 * * * *", BERLIN, start=z(2026, 10, 20))
    got = take(series, 10_000)
    assert got[0] == z(2026, 10, 20, 0, 1)
    assert got[-1] == z(2026, 10, 20) + timedelta(minutes=10_000)
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(got))


def test_gap_of_a_whole_day():
    # Samoa skipped 2011-12-30: noon that day runs at the first instant after the gap.
    got = take(timetable.CronSeries("0 12 * * *", "Pacific/Apia", start=z(2011, 12, 29)), 3)
    assert got == [z(2011, 12, 29, 22), z(2011, 12, 30, 10), z(2011, 12, 30, 22)]


def test_half_hour_dst_zone_is_strictly_increasing():
    got = take(timetable.CronSeries("*/10 * * * *", "Australia/Lord_Howe",
                                    start=z(2026, 4, 4, 12)), 200)  # fmt: skip
    assert all(a < b for a, b in itertools.pairwise(got))


def test_result_does_not_depend_on_process_timezone(monkeypatch):
    expected = take(timetable.CronSeries("30 2 * * *", BERLIN, start=z(2026, 3, 27)), 4)
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        assert take(timetable.CronSeries("30 2 * * *", BERLIN, start=z(2026, 3, 27)), 4) == expected
    finally:
        monkeypatch.undo()
        time.tzset()


# --- cron syntax --------------------------------------------------------------------------


def test_first_sunday_of_month():
    got = take(timetable.CronSeries("0 2 * * SUN#1", "UTC", start=z(2026, 11, 20)), 3)
    assert got == [z(2026, 12, 6, 2), z(2027, 1, 3, 2), z(2027, 2, 7, 2)]


def test_second_tuesday_in_utc_and_across_dst():
    got = take(timetable.CronSeries("0 9 * * TUE#2", start=z(2026, 11, 20)), 3)
    assert got == [z(2026, 12, 8, 9), z(2027, 1, 12, 9), z(2027, 2, 9, 9)]
    berlin = take(timetable.CronSeries("0 9 * * TUE#2", BERLIN, start=z(2027, 3, 1)), 2)
    assert berlin == [z(2027, 3, 9, 8), z(2027, 4, 13, 7)]  # CET, then CEST


def test_last_day_of_month_including_leap_february():
    got = take(timetable.CronSeries("0 0 L * *", start=z(2027, 12, 15)), 4)
    assert got == [z(2027, 12, 31), z(2028, 1, 31), z(2028, 2, 29), z(2028, 3, 31)]


@pytest.mark.parametrize("expr", ["0 0 * * 5L", "0 0 * * FRIL", "0 0 * * fril", "0 0 * * L5"])
def test_last_weekday_of_month(expr):
    got = take(timetable.CronSeries(expr, start=z(2026, 11, 1)), 2)
    assert got == [z(2026, 11, 27), z(2026, 12, 25)]


def test_day_fields_follow_vixie_and_or_rules():
    # A day-of-month starting with '*' ANDs with day-of-week: odd-dated Mondays.
    odd_mondays = take(timetable.CronSeries("0 0 */2 * MON", start=z(2026, 11, 1)), 3)
    assert odd_mondays == [z(2026, 11, 9), z(2026, 11, 23), z(2026, 12, 7)]
    # Both restricted: either matches.
    either = take(timetable.CronSeries("0 0 1,15 * MON", start=z(2026, 11, 20)), 4)
    assert either == [z(2026, 11, 23), z(2026, 11, 30), z(2026, 12, 1), z(2026, 12, 7)]


@pytest.mark.parametrize("expr", [
    "@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@midnight",
    "*/5 * * * *", "0 2 * * SUN#1", "0 9 * * tue#2", "0 0 L * *", "0 0 * * 5L", "0 0 * * FRIL",
    "0 9-17/2 * JAN-MAR MON-FRI", "5 4 * * 0,7", "0 0 15W * *", "  0  0 * * *  ",
])  # fmt: skip
def test_cron_error_accepts(expr):
    assert timetable.cron_error(expr) is None


@pytest.mark.parametrize(("expr", "words"), [
    ("* * * *", ["expected 5 fields (minute hour day-of-month month day-of-week), got 4"]),
    ("0 0 * * * *", ["got 6", "seconds"]),
    ("61 * * * *", ["minute", "'61'", "out of range", "0-59"]),
    ("0 24 * * *", ["hour", "0-23"]),
    ("0 0 * * FUN", ["day-of-week", "'FUN'", "SUN-SAT"]),
    ("0 0 * JANN *", ["month", "JAN-DEC"]),
    ("*/0 * * * *", ["minute", "step"]),
    ("0 22-2 * * *", ["backwards", "'22-23,0-2'"]),
    ("0 0 * * FRI-MON", ["backwards", "'FRI-SAT,SUN-MON'"]),
    ("H * * * *", ["minute", "jitter"]),
    ("0 0 * * MON,SUN#1", ["day-of-week", "#"]),
    ("0 0 30 2 *", ["never fires", "'30'", "'2'"]),
    ("0 0 1,,2 * *", ["day-of-month", "empty"]),
    ("@fortnightly", ["unknown shortcut", "@daily"]),
    ("", ["got 0"]),
])  # fmt: skip
def test_cron_error_explains(expr, words):
    message = timetable.cron_error(expr)
    assert message is not None
    for word in words:
        assert word in message


def test_cron_error_parses_each_expression_once():
    expr = "7 3 * * *"
    timetable.cron_error(expr)
    hits = timetable.cron_error.cache_info().hits
    for _ in range(100):
        timetable.cron_error(expr)
    assert timetable.cron_error.cache_info().hits == hits + 100


def test_series_rejects_bad_input():
    with pytest.raises(ValueError, match="minute"):
        timetable.CronSeries("61 * * * *", start=z(2026, 1, 1))
    with pytest.raises(ValueError, match="Europe/Berlin"):
        timetable.CronSeries("0 * * * *", "Europe/Berln", start=z(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        timetable.CronSeries("0 * * * *", start=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="every"):
        timetable.EverySeries(0, key="x", start=z(2026, 1, 1))


# --- zones and hashing ----------------------------------------------------------------------


def test_zone_error_suggests_the_closest_zone():
    assert timetable.zone_error(BERLIN) is None
    assert "did you mean 'Europe/Berlin'" in timetable.zone_error("Europe/Berln")
    assert "did you mean 'Europe/Berlin'" in timetable.zone_error("europe/berlin")
    assert "unknown timezone" in timetable.zone_error("Nowhere/At_All")
    assert timetable.zone(BERLIN) is timetable.zone(BERLIN)


def test_stable_fraction_is_pinned_across_processes():
    # Replicas on other hosts must agree: this value may never change.
    assert timetable.stable_fraction("api-health@production") == 0.011484014903434203
    values = [timetable.stable_fraction(f"check-{i}") for i in range(1000)]
    assert all(0 <= v < 1 for v in values)
    assert len(set(values)) == 1000


# --- every ------------------------------------------------------------------------------------


def test_every_series_agree_whatever_their_start():
    key = "api-health@production"
    early = timetable.EverySeries(300, key=key, start=z(2026, 1, 1))
    late_start = z(2026, 1, 1, 0, 17, 3, 500000)
    late = timetable.EverySeries(300, key=key, start=late_start)
    got = take(late, 20)
    assert got == [t for t in take(early, 30) if t > late_start][:20]
    assert all(b - a == timedelta(seconds=300) for a, b in itertools.pairwise(got))
    periods = (got[0].timestamp() - early.phase) / 300  # on the phase-locked grid
    assert periods == pytest.approx(round(periods), abs=1e-6)


def test_every_series_different_keys_get_different_phases():
    phases = {timetable.EverySeries(60, key=f"check-{i}", start=z(2026, 1, 1)).phase
              for i in range(50)}  # fmt: skip
    assert len(phases) == 50
    assert all(0 <= p < 60 for p in phases)


def test_jitter_is_deterministic_and_below_every():
    a = timetable.EverySeries(60, key="db", start=z(2026, 1, 1), jitter=600)
    b = timetable.EverySeries(60, key="db", start=z(2026, 2, 1), jitter=600)
    assert a.jitter_offset == b.jitter_offset
    assert 0 <= a.jitter_offset < 60
    assert 0 <= a.phase < 60
    assert a.phase != timetable.EverySeries(60, key="db", start=z(2026, 1, 1)).phase


def test_cron_jitter_shifts_every_fire_by_the_same_offset():
    one = take(timetable.CronSeries("0 * * * *", start=z(2026, 1, 1), jitter=60, key="a"), 3)
    two = take(timetable.CronSeries("0 * * * *", start=z(2026, 1, 1), jitter=60, key="a"), 3)
    other = take(timetable.CronSeries("0 * * * *", start=z(2026, 1, 1), jitter=60, key="b"), 3)
    assert one == two
    assert one != other
    offsets = {t - t.replace(minute=0, second=0, microsecond=0) for t in one}
    assert len(offsets) == 1
    offset = offsets.pop()
    assert timedelta() <= offset < timedelta(seconds=60)
    # "Strictly after start" applies to the jittered time.
    just_before = z(2026, 1, 1, 5) + offset - timedelta(microseconds=1)
    series = timetable.CronSeries("0 * * * *", start=just_before, jitter=60, key="a")
    assert next(series) == z(2026, 1, 1, 5) + offset


# --- peeking, skipping, looking back ------------------------------------------------------


def test_peek_and_advance_past():
    series = timetable.CronSeries("*/5 * * * *", start=z(2026, 1, 1))
    assert series.peek() == series.peek() == z(2026, 1, 1, 0, 5)
    series.advance_past(z(2026, 1, 1))  # already past: nothing skipped
    assert next(series) == z(2026, 1, 1, 0, 5)
    series.advance_past(z(2026, 1, 1, 0, 20))  # a few ticks: stepped over
    assert next(series) == z(2026, 1, 1, 0, 25)
    series.advance_past(z(2026, 3, 1, 12, 2))  # far behind: re-aimed
    assert next(series) == z(2026, 3, 1, 12, 5)
    every = timetable.EverySeries(60, key="k", start=z(2026, 1, 1))
    every.advance_past(z(2026, 5, 1))
    assert z(2026, 5, 1) < every.peek() <= z(2026, 5, 1, 0, 1)


def test_previous_fire():
    assert timetable.previous_fire("0 2 * * *", "UTC", z(2026, 5, 10, 1, 59)) == z(2026, 5, 9, 2)
    assert timetable.previous_fire("0 2 * * *", "UTC", z(2026, 5, 10, 2)) == z(2026, 5, 10, 2)
    assert timetable.CronSeries.previous_fire("0 2 * * SUN#1", "UTC", z(2027, 1, 1)) == z(
        2026, 12, 6, 2)  # fmt: skip
    # Fall-back night: a wildcard hour's second 02:15 (01:15Z) is the latest...
    assert timetable.previous_fire("*/15 * * * *", BERLIN, z(2026, 10, 25, 1, 20)) == z(
        2026, 10, 25, 1, 15)  # fmt: skip
    # ...but a fixed hour only ever ran at the first 02:30 (00:30Z).
    assert timetable.previous_fire("30 2 * * *", BERLIN, z(2026, 10, 25, 1, 45)) == z(
        2026, 10, 25, 0, 30)  # fmt: skip


@pytest.mark.parametrize(("expr", "tz", "around"), [
    ("*/15 * * * *", BERLIN, z(2026, 10, 25)), ("30 2 * * *", BERLIN, z(2026, 10, 25)),
    ("*/15 * * * *", BERLIN, z(2026, 3, 29)), ("0 * * * *", NEW_YORK, z(2026, 11, 1, 4)),
    ("0 1 * * *", NEW_YORK, z(2026, 11, 1, 4)), ("*/20 1-3 * * *", NEW_YORK, z(2026, 3, 8, 4)),
])  # fmt: skip
def test_previous_fire_agrees_with_the_forward_series(expr, tz, around):
    start, end = around - _DAY, around + _DAY
    forward = fires(timetable.CronSeries(expr, tz, start=start), end)
    for t in (around - timedelta(hours=4) + timedelta(minutes=7 * i) for i in range(70)):
        expected = max((f for f in forward if f <= t), default=None)
        assert timetable.previous_fire(expr, tz, t) == expected, t


# --- windows, series_for, formatting --------------------------------------------------------


def test_window_across_midnight_is_still_under_way():
    hours3 = 3 * 3600
    got = timetable.windows("0 23 * * *", "UTC", hours3, start=z(2026, 6, 2, 1),
                            end=z(2026, 6, 2, 5))  # fmt: skip
    assert got == [(z(2026, 6, 1, 23), z(2026, 6, 2, 2))]
    got = timetable.windows("0 23 * * *", BERLIN, hours3, start=z(2026, 6, 1, 22, 30),
                            end=z(2026, 6, 3))  # fmt: skip
    assert got == [(z(2026, 6, 1, 21), z(2026, 6, 2)), (z(2026, 6, 2, 21), z(2026, 6, 3))]
    # Half-open: a window ending at `start`, or opening at `end`, does not overlap.
    assert timetable.windows("0 23 * * *", "UTC", hours3, start=z(2026, 6, 2, 2),
                             end=z(2026, 6, 2, 23)) == []  # fmt: skip


def test_maintenance_window_first_sunday():
    got = timetable.windows("0 2 * * SUN#1", "UTC", 7200, start=z(2026, 12, 6, 3),
                            end=z(2027, 1, 31))  # fmt: skip
    assert got == [(z(2026, 12, 6, 2), z(2026, 12, 6, 4)), (z(2027, 1, 3, 2), z(2027, 1, 3, 4))]


def test_series_for_builds_the_right_series():
    start = z(2026, 6, 1, 12)
    cron = SimpleNamespace(every=None, cron="0 2 * * *", timezone=None, jitter=None)
    series = timetable.series_for(cron, key="backup", start=start, default_tz=BERLIN)
    assert isinstance(series, timetable.CronSeries)
    assert next(series) == z(2026, 6, 2, 0)
    every = SimpleNamespace(every=300.0, cron=None, timezone=None, jitter=0)
    series = timetable.series_for(every, key="api", start=start)
    assert isinstance(series, timetable.EverySeries)
    assert take(series, 2) == take(timetable.EverySeries(300, key="api", start=start), 2)
    assert isinstance(timetable.series_for(SimpleNamespace(cron="@daily"), key="x", start=start),
                      timetable.CronSeries)  # fmt: skip
    with pytest.raises(ValueError, match="neither"):
        timetable.series_for(SimpleNamespace(every=None, cron=None), key="x", start=start)


def test_format_instant():
    moment = datetime(2026, 3, 29, 1, 0, 0, 123456, tzinfo=UTC)
    assert timetable.format_instant(moment) == "2026-03-29T01:00:00+00:00"
    local = moment.astimezone(ZoneInfo(BERLIN))
    assert timetable.format_instant(local) == "2026-03-29T03:00:00+02:00"
    with pytest.raises(ValueError, match="timezone-aware"):
        timetable.format_instant(datetime(2026, 1, 1))


# --- against a brute-force reference ----------------------------------------------------------


def reference(expr: str, tz_name: str, start: datetime, end: datetime) -> list[datetime]:
    """Walk every UTC minute and apply DESIGN.md's rules directly (hour/minute fields only)."""
    tz = ZoneInfo(tz_name)
    fields = croniter.expand(expr)[0]
    minutes = set(range(60)) if fields[0] == ["*"] else set(fields[0])
    hours = set(range(24)) if fields[1] == ["*"] else set(fields[1])
    wild_hour = expr.split()[1].startswith("*") or "/" in expr.split()[1]
    out = set()
    for u in (start.replace(second=0, microsecond=0) + timedelta(minutes=i)
              for i in range(int((end - start).total_seconds() // 60) + 1)):  # fmt: skip
        wall = u.astimezone(tz).replace(tzinfo=None, fold=0)
        following = (u + timedelta(minutes=1)).astimezone(tz).replace(tzinfo=None)
        # Wall-clock minutes skipped between u and u + 1 minute run at u + 1 minute.
        for k in range(max(1, int((following - wall).total_seconds() // 60))):
            w = wall + timedelta(minutes=k)
            first_time = wall.replace(tzinfo=tz).astimezone(UTC) == u
            if w.minute in minutes and w.hour in hours and (k or wild_hour or first_time):
                out.add(u + timedelta(minutes=1 if k else 0))
    return sorted(t for t in out if start < t < end)


@pytest.mark.parametrize("expr", ["*/15 * * * *", "30 2 * * *", "0,30 1-3 * * *",
                                  "*/7 */2 * * *", "59 1 * * *", "*/20 23,0 * * *"])  # fmt: skip
@pytest.mark.parametrize(("tz", "around"), [
    (BERLIN, z(2026, 3, 29, 1)), (BERLIN, z(2026, 10, 25, 1)), (NEW_YORK, z(2026, 11, 1, 6)),
    ("Australia/Lord_Howe", z(2026, 4, 4, 15)), ("America/Santiago", z(2026, 4, 5, 3)),
    ("America/Santiago", z(2026, 9, 6, 4)),
])  # fmt: skip
def test_matches_a_minute_by_minute_reference(expr, tz, around):
    start, end = around - timedelta(hours=4, seconds=1), around + timedelta(hours=4)
    got = fires(timetable.CronSeries(expr, tz, start=start), end)
    assert got == reference(expr, tz, start, end)


def test_a_duration_reads_the_same_as_seconds_or_as_a_timedelta():
    from watchkeeper.schema.cron import seconds_of

    assert seconds_of(timedelta(minutes=2, seconds=3)) == seconds_of(123.0) == 123.0
    assert seconds_of(None) == 0.0
