"""The `file_age` probe, configured in a monitor.yaml and run the way the daemon runs it."""

from __future__ import annotations

import os
import time

import anyio
from watchkeeper_example import FileAgeProbe

from watchkeeper.engine.declared_metrics import undeclared
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.testing import acheck_cancelled, contract_problems, fired_alerts

HOUR = 3600


def touch(path, *, age: float, size: int = 10):
    """Write a file of `size` bytes last modified `age` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_installed_through_its_entry_point():
    assert registry().get("probe", "file_age") is FileAgeProbe
    plugin = next(p for p in registry().plugins if "file_age" in p.types.get("probe", []))
    assert plugin.name == "example"
    assert plugin.origin.startswith("watchkeeper-example-plugin ")


def test_keeps_the_probe_contract():
    assert contract_problems(FileAgeProbe) == []


def test_measures_the_age_and_size_of_a_file(monitor_config, run_check, tmp_path):
    touch(tmp_path / "report.csv", age=2 * HOUR, size=1234)
    config = monitor_config(
        """
        version: 1
        checks:
          report: {probe: file_age, path: report.csv}
        """
    )
    result = run_check(config, "report")
    assert result.ok, result.message
    assert abs(result.metrics["file_age"] - 2 * HOUR) < 60
    assert result.metrics["file_size"] == 1234
    assert result.message == "report.csv changed 2h ago (1234 bytes)"
    assert undeclared(FileAgeProbe, result) == []  # it reports what it declares


def test_the_newest_match_of_a_pattern_counts(monitor_config, run_check, tmp_path):
    touch(tmp_path / "backups" / "db-1.dump", age=72 * HOUR)
    touch(tmp_path / "backups" / "db-2.dump", age=HOUR)
    config = monitor_config(
        """
        version: 1
        checks:
          backup-fresh: {probe: file_age, path: "backups/db-*.dump"}
        """
    )
    result = run_check(config, "backup-fresh")
    assert result.ok, result.message
    assert result.details["path"].endswith("db-2.dump")
    assert result.metrics["file_age"] < 2 * HOUR


def test_no_matching_file_fails_the_check(monitor_config, run_check):
    config = monitor_config(
        """
        version: 1
        checks:
          backup-fresh: {probe: file_age, path: "backups/*.dump"}
        """
    )
    result = run_check(config, "backup-fresh")
    assert not result.ok
    assert result.message == "no file matches backups/*.dump"


def test_a_file_below_min_size_fails_with_its_metrics(monitor_config, run_check, tmp_path):
    touch(tmp_path / "db.dump", age=60, size=10)
    config = monitor_config(
        """
        version: 1
        checks:
          backup-fresh: {probe: file_age, path: db.dump, min_size: 1KB}
        """
    )
    result = run_check(config, "backup-fresh")
    assert not result.ok
    assert result.message == "db.dump has 10 bytes, fewer than 1000"
    assert result.metrics["file_size"] == 10


def test_a_stale_backup_fires_the_threshold(monitor_config, run_check, tmp_path):
    """The seed's "verify backup completion": the newest dump older than a day alerts."""
    touch(tmp_path / "db.dump", age=30 * HOUR)
    rule = {"metric": "file_age", "above": "1d", "severity": "high"}
    config = monitor_config(
        """
        version: 1
        checks:
          backup-fresh:
            probe: file_age
            path: db.dump
            thresholds: [{metric: file_age, above: 1d, severity: high}]
        """
    )
    result = run_check(config, "backup-fresh")
    assert result.ok, result.message
    assert [alert.severity for alert in fired_alerts(result, [rule])] == ["high"]


def test_a_misspelled_key_is_reported_where_it_is(config_problems):
    problems = config_problems(
        """
        version: 1
        checks:
          report: {probe: file_age, path: report.csv, min_sise: 1KB}
        """
    )
    assert len(problems) == 1, problems
    assert problems[0].startswith("monitor.yaml:3:"), problems
    assert "min_sise" in problems[0], problems
    assert "did you mean 'min_size'" in problems[0], problems


def test_cancellation_stops_it_at_once(tmp_path):
    outcome = anyio.run(
        lambda: acheck_cancelled("file_age", {"path": str(tmp_path / "x")}, after=0.2)
    )
    # a file check is quick: it may finish before the cancellation, never swallow it
    assert outcome.cancelled or outcome.returned is not None
    assert outcome.elapsed < 1
