"""Retention on fabricated series of dated backups: keep_days, GFS, the last good backup,
failed runs, timezones; and `backup cleanup` deleting real copies from a destination.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

from watchkeeper.engine.backups.retention import decide
from watchkeeper.schema.backups import Retention

NOW = datetime(2026, 12, 31, 12, 0, tzinfo=UTC)


def entry(when: datetime, status: str = "ok", suffix: str = "") -> dict:
    return {
        "id": f"db-{when:%Y%m%dT%H%M%SZ}{suffix}",
        "job": "db",
        "status": status,
        "started_at": when.timestamp(),
    }


def daily(days: int, hour: int = 2) -> list[dict]:
    """One good backup a day at `hour`, for the `days` days up to NOW."""
    start = (NOW - timedelta(days=days - 1)).replace(hour=hour, minute=0)
    return [entry(start + timedelta(days=i)) for i in range(days)]


def kept(entries: list[dict], **rules) -> list[str]:
    decision = decide(entries, Retention(**rules), NOW.timestamp())
    return sorted(i for i in decision.keep)


def deleted(entries: list[dict], **rules) -> list[str]:
    return sorted(e["id"] for e in decide(entries, Retention(**rules), NOW.timestamp()).delete)


def test_keep_days_keeps_the_last_n_days():
    series = daily(60)
    keep = kept(series, keep_days=30)
    assert len(keep) == 30
    assert min(keep) == f"db-{(NOW - timedelta(days=29)):%Y%m%d}T020000Z"


def test_keep_daily_keeps_the_newest_of_each_day():
    series = [*daily(10), entry(NOW.replace(hour=1)), entry(NOW.replace(hour=11))]
    keep = kept(series, keep_daily=3)
    assert keep == sorted(
        [f"db-{NOW:%Y%m%d}T110000Z", f"db-{NOW - timedelta(days=1):%Y%m%d}T020000Z",
         f"db-{NOW - timedelta(days=2):%Y%m%d}T020000Z"]
    )  # fmt: skip


def test_gfs_keeps_daily_weekly_and_monthly():
    series = daily(400)
    keep = kept(series, keep_daily=7, keep_weekly=4, keep_monthly=12)
    days = {datetime.strptime(k[3:11], "%Y%m%d").date() for k in keep}
    last7 = {(NOW - timedelta(days=i)).date() for i in range(7)}
    assert last7 <= days
    # the newest backup of each of the 12 most recent months: the last day of each month
    month_ends = [d for d in days if (d + timedelta(days=1)).day == 1]
    assert len(month_ends) >= 11
    # weekly: the newest of each ISO week, i.e. Sundays (or today)
    sundays = [d for d in days if d.isoweekday() == 7]
    assert len(sundays) >= 3
    assert len(keep) <= 7 + 4 + 12


def test_periods_without_backups_do_not_count():
    # backups stopped for two months; GFS still keeps three months' worth
    series = [entry(datetime(2026, m, 15, 2, tzinfo=UTC)) for m in range(1, 10)]
    assert kept(series, keep_monthly=3) == [
        "db-20260715T020000Z", "db-20260815T020000Z", "db-20260915T020000Z"
    ]  # fmt: skip


def test_the_last_good_backup_is_never_deleted():
    old = [entry(NOW - timedelta(days=90)), entry(NOW - timedelta(days=80))]
    newer_failures = [entry(NOW - timedelta(days=i), "failed") for i in range(1, 5)]
    series = old + newer_failures
    keep = kept(series, keep_days=7)
    assert f"db-{NOW - timedelta(days=80):%Y%m%dT%H%M%SZ}" in keep
    assert deleted(series, keep_days=7) == [f"db-{NOW - timedelta(days=90):%Y%m%dT%H%M%SZ}"]


def test_partial_backups_count_as_good():
    series = [entry(NOW - timedelta(days=2)), entry(NOW - timedelta(days=1), "partial")]
    assert kept(series, keep_daily=1) == [f"db-{NOW - timedelta(days=1):%Y%m%dT%H%M%SZ}"]


def test_failed_runs_go_once_older_than_the_oldest_kept_backup():
    series = [
        *daily(5),
        entry(NOW - timedelta(days=10), "failed", "-f1"),
        entry(NOW - timedelta(hours=1), "failed", "-f2"),
    ]
    gone = deleted(series, keep_days=3)
    assert f"db-{NOW - timedelta(days=10):%Y%m%dT%H%M%SZ}-f1" in gone
    assert f"db-{NOW - timedelta(hours=1):%Y%m%dT%H%M%SZ}-f2" not in gone


def test_running_entries_are_never_touched():
    series = [*daily(3), entry(NOW - timedelta(days=30), "running")]
    assert all("running" not in e.get("status", "") for e in decide(
        series, Retention(keep_daily=1), NOW.timestamp()).delete)  # fmt: skip


def test_no_retention_keeps_everything():
    series = daily(100)
    assert decide(series, None, NOW.timestamp()).delete == []


def test_days_are_those_of_the_jobs_timezone():
    # 23:30 UTC is already the next day in Berlin: two backups, two Berlin days
    series = [entry(datetime(2026, 12, 30, 22, 0, tzinfo=UTC)),
              entry(datetime(2026, 12, 30, 23, 30, tzinfo=UTC))]  # fmt: skip
    utc = decide(series, Retention(keep_daily=2), NOW.timestamp(), "UTC")
    berlin = decide(series, Retention(keep_daily=2), NOW.timestamp(), "Europe/Berlin")
    assert len(utc.keep) == 1
    assert len(berlin.keep) == 2


def test_cleanup_deletes_old_copies_and_dry_run_deletes_nothing(cli, write_config, tmp_path):
    write_config(
        textwrap.dedent(
            """
            version: 1
            state: {type: sqlite, path: state.db}
            backups:
              destinations:
                local: {type: local, path: backups}
              jobs:
                config:
                  source: {type: files}
                  schedule: {cron: "0 2 * * *"}
                  to: [local]
            """
        )
    )
    ids = []
    for _ in range(3):
        result = cli("backup", "run", "config", "--format", "json")
        assert result.code == 0, result.output
        ids.append(result.json()[0]["id"])
    # retention arrives later: keep only the newest day's newest backup
    config = (tmp_path / "monitor.yaml").read_text()
    (tmp_path / "monitor.yaml").write_text(
        config.replace("      to: [local]", "      to: [local]\n      retention: {keep_daily: 1}")
    )
    dry = cli("backup", "cleanup", "--dry-run", "--format", "json")
    assert dry.code == 0, dry.output
    assert sorted(r["id"] for r in dry.json()) == sorted(ids[:2])
    assert all(not r["deleted"] for r in dry.json())
    assert len(list((tmp_path / "backups" / "config").iterdir())) == 3
    done = cli("backup", "cleanup")
    assert done.code == 0, done.output
    assert "deleted" in done.stdout
    assert [p.name for p in (tmp_path / "backups" / "config").iterdir()] == [ids[2]]
    listed = cli("backup", "list", "--format", "json").json()
    assert [e["id"] for e in listed] == [ids[2]]
