"""Maintenance windows: time (cron + duration, DST, midnight, one-off) and scope."""

from __future__ import annotations

import textwrap
import time
from datetime import datetime

import pytest

from watchkeeper.engine.alerting.maintenance import Maintenance
from watchkeeper.engine.config.validation import validate

HEAD = """
version: 1
environments:
  production: {base_url: https://example.com}
  staging: {base_url: https://staging.example.com}
checks:
  api-health:
    probe: tcp
    host: localhost
    port: 443
    environments: [production, staging]
    labels: {team: web}
  database:
    probe: tcp
    host: localhost
    port: 5432
    labels: {team: data}
notifiers:
  monitoring: {type: log}
  deployments: {type: log}
backups:
  destinations:
    local: {type: local, path: backups}
  jobs:
    export:
      source: {type: files, paths: [monitor.yaml]}
      schedule: {cron: "0 2 * * *"}
      to: [local]
    config:
      source: {type: files, paths: [monitor.yaml]}
      schedule: {cron: "0 3 * * *"}
      to: [local]
"""


def t(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def build(write_config):
    """Build a Maintenance from the text of a `maintenance:` section (and optional extras)."""

    def make(body: str, extra: str = "") -> Maintenance:
        path = write_config(HEAD + textwrap.dedent(extra) + textwrap.dedent(body))
        result = validate(path)
        assert result.valid, "\n".join(p.text() for p in result.problems)
        return Maintenance(result.config)

    return make


def names(found) -> list[str]:
    return [w.name for w in found]


# --- time ----------------------------------------------------------------------------------


def test_first_sunday_window(build):
    m = build("""
    maintenance:
      - name: database-maintenance
        schedule: {cron: "0 2 * * SUN#1", timezone: UTC}
        duration: 2h
    """)
    assert names(m.under_way(t("2026-12-06T03:00:00Z"))) == ["database-maintenance"]
    assert names(m.under_way(t("2026-12-06T02:00:00Z"))) == ["database-maintenance"]
    assert m.under_way(t("2026-12-06T04:00:00Z")) == []  # the end is not inside
    assert m.under_way(t("2026-12-06T01:59:59Z")) == []
    assert m.under_way(t("2026-12-13T03:00:00Z")) == []  # second Sunday
    (window,) = m.under_way(t("2026-12-06T03:00:00Z"))
    assert (window.start, window.end) == (t("2026-12-06T02:00:00Z"), t("2026-12-06T04:00:00Z"))
    assert window.effect == "mute"
    assert window.key == "database-maintenance@2026-12-06T02:00:00Z"


def test_second_tuesday_window_in_default_timezone(build):
    m = build(
        """
    maintenance:
      - name: dependency-updates
        schedule: {cron: "0 9 * * TUE#2"}
        duration: 4h
    """,
        extra="defaults: {timezone: UTC}\n",
    )
    assert names(m.under_way(t("2026-12-08T12:59:00Z"))) == ["dependency-updates"]
    assert m.under_way(t("2026-12-01T10:00:00Z")) == []  # first Tuesday
    assert m.under_way(t("2026-12-15T10:00:00Z")) == []  # third Tuesday
    assert m.under_way(t("2026-12-08T13:00:00Z")) == []


def test_default_timezone_comes_from_defaults(build):
    m = build(
        """
    maintenance:
      - name: nightly
        schedule: {cron: "0 2 * * *"}
        duration: 1h
    """,
        extra="defaults: {timezone: Europe/Berlin}\n",
    )
    # 02:00 in Berlin in July is 00:00 UTC
    assert names(m.under_way(t("2026-07-01T00:30:00Z"))) == ["nightly"]
    assert m.under_way(t("2026-07-01T02:30:00Z")) == []


def test_window_crossing_midnight(build):
    m = build("""
    maintenance:
      - name: late
        schedule: {cron: "0 23 * * *", timezone: UTC}
        duration: 3h
    """)
    assert names(m.under_way(t("2026-12-07T01:00:00Z"))) == ["late"]
    (window,) = m.under_way(t("2026-12-07T01:00:00Z"))
    assert window.start == t("2026-12-06T23:00:00Z")
    assert window.end == t("2026-12-07T02:00:00Z")
    assert m.under_way(t("2026-12-07T02:00:00Z")) == []
    assert m.under_way(t("2026-12-07T22:59:59Z")) == []


def test_window_lasting_several_days(build):
    m = build("""
    maintenance:
      - name: freeze
        schedule: {cron: "0 0 1 * *", timezone: UTC}
        duration: 3d
    """)
    assert names(m.under_way(t("2026-12-03T23:59:00Z"))) == ["freeze"]
    assert m.under_way(t("2026-12-04T00:00:00Z")) == []


def test_berlin_window_across_spring_forward(build):
    m = build("""
    maintenance:
      - name: night
        schedule: {cron: "30 1 * * *", timezone: Europe/Berlin}
        duration: 3h
      - name: gap
        schedule: {cron: "30 2 * * *", timezone: Europe/Berlin}
        duration: 1h
    """)
    # 01:30 CET = 00:30Z; three hours of real time run to 03:30Z (05:30 CEST)
    (night,) = m.under_way(t("2026-03-29T03:29:00Z"))
    assert (night.start, night.end) == (t("2026-03-29T00:30:00Z"), t("2026-03-29T03:30:00Z"))
    # 02:30 does not exist that night: the window opens at 03:00 CEST = 01:00Z
    assert "gap" not in names(m.under_way(t("2026-03-29T00:59:00Z")))
    gap = [w for w in m.under_way(t("2026-03-29T01:00:00Z")) if w.name == "gap"]
    assert [(w.start, w.end) for w in gap] == [
        (t("2026-03-29T01:00:00Z"), t("2026-03-29T02:00:00Z"))
    ]


def test_berlin_window_across_fall_back(build):
    m = build("""
    maintenance:
      - name: night
        schedule: {cron: "0 2 * * *", timezone: Europe/Berlin}
        duration: 2h
    """)
    # 02:00 happens twice on 2026-10-25; a fixed hour opens once, at the first (00:00Z)
    (night,) = m.under_way(t("2026-10-25T01:30:00Z"))
    assert (night.start, night.end) == (t("2026-10-25T00:00:00Z"), t("2026-10-25T02:00:00Z"))
    assert m.under_way(t("2026-10-25T02:00:00Z")) == []
    # the next night is 02:00 CET = 01:00Z
    assert m.under_way(t("2026-10-26T00:59:00Z")) == []
    assert names(m.under_way(t("2026-10-26T01:00:00Z"))) == ["night"]


def test_one_off_window(build):
    m = build("""
    maintenance:
      - name: migration
        start: 2026-12-10T01:00:00Z
        end: 2026-12-10T03:00:00+00:00
        reason: move to the new cluster
    """)
    (window,) = m.under_way(t("2026-12-10T02:00:00Z"))
    assert (window.name, window.reason) == ("migration", "move to the new cluster")
    assert m.under_way(t("2026-12-10T03:00:00Z")) == []
    assert m.under_way(t("2026-12-10T00:59:59Z")) == []
    assert names(m.occurrences(t("2026-12-01T00:00:00Z"), t("2026-12-31T00:00:00Z"))) == [
        "migration"
    ]


def test_a_window_under_way_when_asked_is_found(build):
    """What makes a window under way at start-up or reload apply at once."""
    m = build("""
    maintenance:
      - name: long
        schedule: {cron: "0 22 * * *", timezone: UTC}
        duration: 6h
    """)
    # a daemon starting at 03:59 sees the window that opened at 22:00 the day before
    (window,) = m.under_way(t("2026-12-07T03:59:00Z"))
    assert window.start == t("2026-12-06T22:00:00Z")
    (window,) = m.occurrences(t("2026-12-07T03:59:00Z"), t("2026-12-07T04:30:00Z"))
    assert window.start == t("2026-12-06T22:00:00Z")


def test_occurrences_are_sorted_and_overlap_the_range(build):
    m = build("""
    maintenance:
      - name: b-daily
        schedule: {cron: "0 1 * * *", timezone: UTC}
        duration: 1h
      - name: a-once
        start: 2026-12-02T00:30:00Z
        end: 2026-12-02T05:00:00Z
    """)
    found = m.occurrences(t("2026-12-01T01:30:00Z"), t("2026-12-03T01:00:00Z"))
    assert [(w.name, w.start) for w in found] == [
        ("b-daily", t("2026-12-01T01:00:00Z")),
        ("a-once", t("2026-12-02T00:30:00Z")),
        ("b-daily", t("2026-12-02T01:00:00Z")),
    ]


# --- scope -----------------------------------------------------------------------------------


SCOPES = """
maintenance:
  - name: everything
    start: 2026-12-10T00:00:00Z
    end: 2026-12-11T00:00:00Z
  - name: db
    start: 2026-12-10T00:00:00Z
    end: 2026-12-11T00:00:00Z
    checks: [database]
  - name: api-prod
    start: 2026-12-10T00:00:00Z
    end: 2026-12-11T00:00:00Z
    checks: [api-health@production]
  - name: web
    start: 2026-12-10T00:00:00Z
    end: 2026-12-11T00:00:00Z
    labels: {team: web}
  - name: staging
    start: 2026-12-10T00:00:00Z
    end: 2026-12-11T00:00:00Z
    environments: [staging]
  - name: web-in-staging
    start: 2026-12-10T00:00:00Z
    end: 2026-12-11T00:00:00Z
    labels: {team: web}
    environments: [staging]
  - name: export-backup
    start: 2026-12-10T00:00:00Z
    end: 2026-12-11T00:00:00Z
    backups: [export]
    effect: pause
"""
NOON = t("2026-12-10T12:00:00Z")


def test_scope_by_checks_labels_and_environments(build):
    m = build(SCOPES)
    assert set(names(m.covering_check(NOON, "database", None, {"team": "data"}))) == {
        "everything",
        "db",
    }
    assert set(names(m.covering_check(NOON, "api-health", "production", {"team": "web"}))) == {
        "everything",
        "api-prod",
        "web",
    }
    assert set(names(m.covering_check(NOON, "api-health", "staging", {"team": "web"}))) == {
        "everything",
        "web",
        "staging",
        "web-in-staging",
    }
    # every scope key a window sets must match: staging alone is not enough
    assert set(names(m.covering_check(NOON, "other", "staging", {"team": "data"}))) == {
        "everything",
        "staging",
    }


def test_backups_only_window_covers_no_check_and_checks_window_no_backup(build):
    m = build(SCOPES)
    for found in (
        m.covering_check(NOON, "database", None, {}),
        m.covering_check(NOON, "x", None, None),
    ):
        assert "export-backup" not in names(found)
    assert set(names(m.covering_backup(NOON, "export"))) == {"everything", "export-backup"}
    assert names(m.covering_backup(NOON, "config")) == ["everything"]


def test_mute_and_pause(build):
    m = build("""
    maintenance:
      - name: quiet
        start: 2026-12-10T00:00:00Z
        end: 2026-12-10T06:00:00Z
        checks: [database]
      - name: stop
        start: 2026-12-10T00:00:00Z
        end: 2026-12-10T04:00:00Z
        checks: [database]
        backups: [export]
        effect: pause
    """)
    at = t("2026-12-10T01:00:00Z")
    assert m.muted(at, "database", None, {}).name == "quiet"
    assert m.paused(at, "database", None, {}).name == "stop"
    assert m.backup_paused(at, "export").name == "stop"
    assert m.backup_paused(at, "config") is None
    assert m.muted(at, "api-health", "production", {"team": "web"}) is None
    later = t("2026-12-10T05:00:00Z")
    assert m.paused(later, "database", None, {}) is None
    assert m.muted(later, "database", None, {}).name == "quiet"


def test_muted_returns_the_window_ending_last(build):
    m = build("""
    maintenance:
      - {name: short, start: "2026-12-10T00:00:00Z", end: "2026-12-10T02:00:00Z"}
      - {name: long, start: "2026-12-10T01:00:00Z", end: "2026-12-10T05:00:00Z"}
    """)
    assert m.muted(t("2026-12-10T01:30:00Z"), "database", None, {}).name == "long"


# --- announcements and timers ------------------------------------------------------------------


ANNOUNCED = """
maintenance:
  - name: database-maintenance
    schedule: {cron: "0 2 * * SUN#1", timezone: UTC}
    duration: 2h
    checks: [database]
    announce: {before: 24h, notify: [monitoring]}
  - name: unannounced
    schedule: {cron: "0 2 * * *", timezone: UTC}
    duration: 1h
"""


def test_announcement_24_hours_before(build):
    m = build(ANNOUNCED)
    found = m.announcements(t("2026-12-05T01:00:00Z"), t("2026-12-05T02:00:00Z"))
    assert [(w.name, w.start, at) for w, at in found] == [
        ("database-maintenance", t("2026-12-06T02:00:00Z"), t("2026-12-05T02:00:00Z"))
    ]
    # (since, until]: the instant itself belongs to the earlier span
    assert m.announcements(t("2026-12-05T02:00:00Z"), t("2026-12-05T03:00:00Z")) == []
    assert m.announcements(t("2026-12-06T00:00:00Z"), t("2026-12-31T00:00:00Z")) == []
    whole_year = m.announcements(t("2026-12-01T00:00:00Z"), t("2027-12-01T00:00:00Z"))
    assert len(whole_year) == 12
    assert whole_year[1][1] == t("2027-01-02T02:00:00Z")


def test_announcements_due_catch_up(build):
    m = build(ANNOUNCED)
    (due,) = m.announcements_due(t("2026-12-05T20:00:00Z"))
    assert due[0].name == "database-maintenance"
    assert due[1] == t("2026-12-05T02:00:00Z")
    assert m.announcements_due(t("2026-12-05T01:00:00Z")) == []
    assert m.announcements_due(t("2026-12-06T02:30:00Z")) == []  # started: too late


def test_next_boundary(build):
    m = build("""
    maintenance:
      - name: database-maintenance
        schedule: {cron: "0 2 * * SUN#1", timezone: UTC}
        duration: 2h
      - name: migration
        start: 2026-12-10T01:00:00Z
        end: 2026-12-10T03:00:00Z
    """)
    assert m.next_boundary(t("2026-12-06T01:00:00Z")) == t("2026-12-06T02:00:00Z")
    assert m.next_boundary(t("2026-12-06T02:00:00Z")) == t("2026-12-06T04:00:00Z")
    assert m.next_boundary(t("2026-12-06T03:00:00Z")) == t("2026-12-06T04:00:00Z")
    assert m.next_boundary(t("2026-12-06T04:00:00Z")) == t("2026-12-10T01:00:00Z")
    assert m.next_boundary(t("2026-12-10T01:00:00Z")) == t("2026-12-10T03:00:00Z")
    assert m.next_boundary(t("2026-12-10T03:00:00Z")) == t("2027-01-03T02:00:00Z")
    # answers are remembered, but asking about an earlier instant still works
    assert m.next_boundary(t("2026-12-20T00:00:00Z")) == t("2027-01-03T02:00:00Z")
    assert m.next_boundary(t("2026-12-06T03:30:00Z")) == t("2026-12-06T04:00:00Z")


def test_no_windows(build):
    m = build("")
    assert not m
    assert m.under_way(NOON) == []
    assert m.next_boundary(NOON) is None
    assert m.announcements(0, NOON) == []


def test_repeated_questions_are_cheap(build):
    m = build(ANNOUNCED + SCOPES.replace("maintenance:\n", ""))
    at = t("2026-12-06T03:00:00Z")
    started = time.perf_counter()
    for i in range(20_000):
        m.muted(at + i, "database", None, {"team": "data"})
    assert time.perf_counter() - started < 2.0
