"""`watchkeeper plan`: upcoming runs and maintenance windows, through the real CLI."""

from __future__ import annotations

import re
import textwrap
from datetime import datetime, timedelta

import pytest

from watchkeeper.engine.schedule import timetable
from watchkeeper.schema.schedule import Schedule

HEAD = """
version: 1
notifiers:
  console: {type: log}
environments:
  production: {base_url: https://example.com}
  staging: {base_url: https://staging.example.com}
"""


def config(body: str = "") -> str:
    return HEAD + textwrap.dedent(body)


def plan_json(cli, write_config, body: str, *args: str) -> list[dict]:
    write_config(config(body))
    result = cli("plan", "--format", "json", *args)
    assert result.code == 0, result.output
    return result.json()


def at(row: dict) -> datetime:
    return datetime.fromisoformat(row["at"])


# --- DST and cron rules (DESIGN.md Semantics ► Time) ----------------------------------


def test_daily_berlin_job_runs_once_on_each_changeover_day(cli, write_config):
    body = """
    checks:
      nightly:
        probe: tcp
        host: localhost
        port: 5432
        schedule: {cron: "30 2 * * *", timezone: Europe/Berlin}
    """
    spring = plan_json(cli, write_config, body, "--from", "2026-03-28T00:00:00Z", "--next", "3d")
    fall = plan_json(cli, write_config, body, "--from", "2026-10-24T00:00:00Z", "--next", "3d")
    # 02:30 does not exist on 2026-03-29: the run moves to the first instant after the gap.
    assert [r["at"] for r in spring] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    # 02:30 happens twice on 2026-10-25: only the first (summer time) runs.
    assert [r["at"] for r in fall] == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]


def test_every_15_minutes_runs_through_both_repeated_hours(cli, write_config):
    body = """
    checks:
      often:
        probe: tcp
        host: localhost
        port: 80
        schedule: {cron: "*/15 * * * *", timezone: Europe/Berlin}
    """
    rows = plan_json(cli, write_config, body, "--from", "2026-10-25T00:00:00Z", "--next", "2h")
    assert [r["at"] for r in rows] == [
        f"2026-10-25T02:{m:02d}:00+0{h}:00" for h in (2, 1) for m in (0, 15, 30, 45)
    ]
    assert [at(r) for r in rows] == sorted(at(r) for r in rows)


def test_nth_weekday_windows_resolve_to_the_right_dates(cli, write_config):
    body = """
    maintenance:
      - name: database-maintenance
        schedule: {cron: "0 2 * * SUN#1", timezone: UTC}
        duration: 2h
      - name: dependency-updates
        schedule: {cron: "0 9 * * TUE#2"}
        duration: 4h
    """
    rows = plan_json(cli, write_config, body, "--from", "2026-11-20T00:00:00Z", "--next", "30d")
    assert rows == [
        {
            "kind": "maintenance",
            "name": "database-maintenance",
            "at": "2026-12-06T02:00:00+00:00",
            "until": "2026-12-06T04:00:00+00:00",
        },
        {
            "kind": "maintenance",
            "name": "dependency-updates",
            "at": "2026-12-08T09:00:00+00:00",
            "until": "2026-12-08T13:00:00+00:00",
        },
    ]


def test_window_crossing_midnight_is_shown_while_under_way(cli, write_config):
    body = """
    maintenance:
      - name: nightly
        schedule: {cron: "0 23 * * *"}
        duration: 3h
    """
    rows = plan_json(cli, write_config, body, "--from", "2026-12-02T01:00:00Z", "--next", "1d")
    assert rows == [
        {
            "kind": "maintenance",
            "name": "nightly",
            "at": "2026-12-01T23:00:00+00:00",
            "until": "2026-12-02T02:00:00+00:00",
        },
        {
            "kind": "maintenance",
            "name": "nightly",
            "at": "2026-12-02T23:00:00+00:00",
            "until": "2026-12-03T02:00:00+00:00",
        },
    ]


def test_one_off_window_is_listed_only_when_it_overlaps(cli, write_config):
    body = """
    maintenance:
      - {name: migration, start: 2026-12-10T01:00:00Z, end: 2026-12-10T03:00:00Z}
    """
    inside = plan_json(cli, write_config, body, "--from", "2026-12-10T02:00:00Z", "--next", "1h")
    after = plan_json(cli, write_config, body, "--from", "2026-12-10T03:00:00Z", "--next", "1d")
    assert inside == [
        {
            "kind": "maintenance",
            "name": "migration",
            "at": "2026-12-10T01:00:00+00:00",
            "until": "2026-12-10T03:00:00+00:00",
        }
    ]
    assert after == []


# --- what is listed, and how --------------------------------------------------------


def test_interval_check_is_one_row_phase_locked_like_the_scheduler(cli, write_config):
    body = """
    defaults: {schedule: {every: 5m}}
    checks:
      api:
        probe: http
        url: https://example.com/health
      web:
        probe: http
        url: ${env.base_url}/
        environments: [production, staging]
        schedule: {every: 1m, jitter: 10s}
    """
    start = "2026-06-01T12:00:00+00:00"
    rows = plan_json(cli, write_config, body, "--from", start, "--next", "7d")
    assert len(rows) == 3  # one row each, not one per run
    by_key = {
        f"{r['name']}@{r['environment']}" if "environment" in r else r["name"]: r for r in rows
    }
    begin = datetime.fromisoformat(start) - timedelta(microseconds=1)
    for key, schedule, every in [
        ("api", Schedule(every=300), "5m"),
        ("web@production", Schedule(every=60, jitter=10), "1m"),
        ("web@staging", Schedule(every=60, jitter=10), "1m"),
    ]:
        row = by_key[key]
        # the scheduler builds the same series: the plan shows its first run
        expected = timetable.series_for(schedule, key=key, start=begin).peek()
        assert at(row) == expected.replace(microsecond=0)
        assert row["every"] == every
        assert set(row) <= {"kind", "name", "environment", "at", "every"}


def test_cron_check_with_environments_gives_a_row_per_environment(cli, write_config):
    body = """
    checks:
      api:
        probe: http
        url: ${env.base_url}/api/health
        environments: [production, staging]
        schedule: {cron: "0 * * * *"}
    """
    rows = plan_json(cli, write_config, body, "--from", "2026-06-01T00:30:00Z", "--next", "2h")
    assert rows == [
        {"kind": "check", "name": "api", "environment": env, "at": f"2026-06-01T0{h}:00:00+00:00"}
        for h in (1, 2)
        for env in ("production", "staging")
    ]


def test_timezone_resolution_schedule_then_check_then_defaults(cli, write_config):
    body = """
    defaults: {timezone: America/New_York}
    checks:
      own:
        probe: tcp
        host: localhost
        port: 1
        timezone: Asia/Tokyo
        schedule: {cron: "0 9 * * *", timezone: Europe/Berlin}
      check-zone:
        probe: tcp
        host: localhost
        port: 1
        timezone: Asia/Tokyo
        schedule: {cron: "0 9 * * *"}
      default-zone:
        probe: tcp
        host: localhost
        port: 1
        schedule: {cron: "0 9 * * *"}
    maintenance:
      - name: window
        schedule: {cron: "0 9 * * *"}
        duration: 1h
    """
    rows = plan_json(cli, write_config, body, "--from", "2026-06-01T00:00:00Z", "--next", "1d")
    assert [(r["name"], r["at"]) for r in rows] == [
        ("check-zone", "2026-06-01T09:00:00+09:00"),
        ("own", "2026-06-01T09:00:00+02:00"),
        ("window", "2026-06-01T09:00:00-04:00"),
        ("default-zone", "2026-06-01T09:00:00-04:00"),
    ]


def test_backups_drills_tasks_and_everything_sorted(cli, write_config):
    body = """
    checks:
      db:
        probe: tcp
        host: localhost
        port: 5432
        schedule: {cron: "0 */6 * * *"}
      disabled:
        probe: tcp
        host: localhost
        port: 1
        enabled: false
      nightly-backup-ran:
        probe: heartbeat
        expect_every: {cron: "0 2 * * *"}
        grace: 1h
      endpoints-down:
        probe: composite
        of: [db, disabled]
        failing: {at_least: 2}
    maintenance:
      - name: db-window
        schedule: {cron: "0 2 * * SUN"}
        duration: 2h
    backups:
      destinations:
        local: {type: local, path: backups}
      jobs:
        config:
          source: {type: files, paths: [monitor.yaml]}
          schedule: {cron: "0 2 * * *"}
          to: [local]
      drills:
        weekly-restore:
          job: config
          schedule: {cron: "0 4 * * MON"}
          scratch_dir: restore
    tasks:
      daily-review:
        schedule: {cron: "0 9 * * *"}
        notify: [console]
    """
    # 2026-06-07 is a Sunday
    rows = plan_json(cli, write_config, body, "--from", "2026-06-07T00:00:00Z", "--next", "1d")
    assert [(r["kind"], r["name"], r["at"][11:16]) for r in rows] == [
        ("check", "db", "00:00"),
        ("maintenance", "db-window", "02:00"),
        ("backup", "config", "02:00"),
        ("check", "db", "06:00"),
        ("task", "daily-review", "09:00"),
        ("check", "db", "12:00"),
        ("check", "db", "18:00"),
    ]
    monday = plan_json(cli, write_config, body, "--from", "2026-06-08T03:00:00Z", "--next", "2h")
    assert monday == [
        {"kind": "drill", "name": "weekly-restore", "at": "2026-06-08T04:00:00+00:00"}
    ]


def test_jittered_cron_runs_are_shifted_by_the_scheduler_offset(cli, write_config):
    body = """
    checks:
      spread:
        probe: tcp
        host: localhost
        port: 1
        schedule: {cron: "0 * * * *", jitter: 30s}
    """
    rows = plan_json(cli, write_config, body, "--from", "2026-06-01T00:00:00Z", "--next", "3h")
    begin = datetime.fromisoformat("2026-06-01T00:00:00+00:00") - timedelta(microseconds=1)
    series = timetable.series_for(Schedule(cron="0 * * * *", jitter=30), key="spread", start=begin)
    expected = [next(series).replace(microsecond=0) for _ in range(3)]
    assert [at(r) for r in rows] == expected


def test_run_at_the_start_instant_is_included_and_end_excluded(cli, write_config):
    body = """
    checks:
      hourly:
        probe: tcp
        host: localhost
        port: 1
        schedule: {cron: "0 * * * *"}
    """
    rows = plan_json(cli, write_config, body, "--from", "2026-06-01T01:00:00Z", "--next", "2h")
    assert [r["at"] for r in rows] == ["2026-06-01T01:00:00+00:00", "2026-06-01T02:00:00+00:00"]


def test_from_without_offset_is_read_in_defaults_timezone(cli, write_config):
    body = """
    defaults: {timezone: Europe/Berlin}
    checks:
      hourly:
        probe: tcp
        host: localhost
        port: 1
        schedule: {cron: "0 * * * *", timezone: UTC}
    """
    rows = plan_json(cli, write_config, body, "--from", "2026-06-01T10:00", "--next", "1h")
    assert [r["at"] for r in rows] == ["2026-06-01T08:00:00+00:00"]


# --- output and errors ----------------------------------------------------------------


def test_text_output_is_a_table_grouped_by_day(cli, write_config):
    write_config(
        config("""
    checks:
      api:
        probe: http
        url: ${env.base_url}/api/health
        environments: [production, staging]
        schedule: {cron: "30 2 * * *", timezone: Europe/Berlin}
      fast:
        probe: tcp
        host: localhost
        port: 1
    maintenance:
      - name: nightly
        schedule: {cron: "0 23 * * *"}
        duration: 3h
    """)
    )
    result = cli("plan", "--from", "2026-10-25T00:00:00Z", "--next", "1d")
    assert result.code == 0, result.output
    out = result.stdout
    for text in ("api", "production", "staging", "fast", "every 5m", "nightly", "until"):
        assert text in out
    assert "Sat 2026-10-24" in out  # the window under way opened the day before
    assert "Sun 2026-10-25" in out
    assert re.search(r"02:30(:00)? CEST", out)  # each row in its own zone


def test_text_output_is_capped_and_says_so(cli, write_config):
    write_config(
        config("""
    checks:
      busy:
        probe: tcp
        host: localhost
        port: 1
        schedule: {cron: "* * * * *"}
    """)
    )
    # --all: a cron this frequent is otherwise one row with its rate (tests/test_plan_view.py)
    result = cli("plan", "--from", "2026-06-01T00:00:00Z", "--next", "1d", "--limit", "5", "--all")
    assert result.code == 0, result.output
    assert result.stdout.count("busy") == 5
    assert "first 5 rows" in result.stdout
    full = cli("plan", "--from", "2026-06-01T00:00:00Z", "--next", "1d", "--format", "json")
    assert len(full.json()) == 1440  # JSON is complete unless --limit is given
    capped = cli(
        "plan", "--from", "2026-06-01T00:00:00Z", "--next", "1d", "-f", "json", "--limit", "3"
    )
    assert [r["at"][11:16] for r in capped.json()] == ["00:00", "00:01", "00:02"]


def test_nothing_scheduled_is_said_plainly(cli, write_config):
    write_config(config())
    result = cli("plan", "--from", "2026-06-01T00:00:00Z")
    assert result.code == 0, result.output
    assert "Nothing runs" in result.stdout
    assert cli("plan", "--format", "json").json() == []


def test_unset_variables_are_only_warnings(cli, write_config):
    write_config(
        config("""
    checks:
      db:
        probe: postgres
        dsn: ${PLAN_TEST_UNSET_DSN}
        schedule: {cron: "0 3 * * *"}
    """)
    )
    result = cli("plan", "--from", "2026-06-01T00:00:00Z", "--next", "1d", "--format", "json")
    assert result.code == 0, result.output
    assert result.json() == [{"kind": "check", "name": "db", "at": "2026-06-01T03:00:00+00:00"}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--next", "soon"), "--next"),
        (("--next", "0s"), "--next"),
        (("--from", "next tuesday"), "--from"),
        (("--from", "2026-13-01T00:00:00Z"), "--from"),
        (("--limit", "-1"), "--limit"),
        (("--from", "0001-01-01T00:00:00Z"), "between 1970 and 9000"),
    ],
)
def test_bad_options_are_usage_errors(cli, write_config, args, message):
    write_config(config())
    result = cli("plan", *args)
    assert result.code == 2, result.output
    assert message in result.stderr


def test_invalid_config_exits_1_with_the_problem(cli, write_config):
    write_config(
        config("""
    checks:
      db:
        probe: tcp
        host: localhost
        port: 1
        schedule: {cron: "0 25 * * *"}
    """)
    )
    result = cli("plan")
    assert result.code == 1
    assert "monitor.yaml:" in result.stderr
    assert "checks.db.schedule.cron" in result.stderr
    assert "nothing planned" in result.stderr


def test_missing_config_exits_2(cli):
    result = cli("plan")
    assert result.code == 2
    assert "monitor.yaml" in result.stderr
