"""How a located check turns what its locations saw into one verdict (engine/run/locations.py):
the quorum for `up`, `agg` for threshold rules, unknown locations never counted as down.

The instances come from a monitor.yaml through validation and expansion, as the daemon
builds them; the runtime path with real replicas is tested in test_locations.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from watchkeeper.engine.config.instances import expand, split_key
from watchkeeper.engine.config.validation import load_config
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run.evaluate import AlertBook, Evaluator
from watchkeeper.engine.run.locations import DOWN, UNKNOWN, UP, Seen, verdict


def instances(tmp_path, locations: str, thresholds: str = "[]") -> dict:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            checks:
              api:
                probe: http
                url: https://example.com/health
                schedule: {{every: 30s}}
                failure_threshold: 3
                thresholds: {thresholds}
                locations: {locations}
            """
        )
    )
    return expand(load_config(path).config, registry())


def seen(location: str, status: str, response_time: float | None = None, **kw) -> Seen:
    metrics = {} if response_time is None else {"response_time": response_time}
    at = None if status == UNKNOWN else 100.0
    return Seen(location, status, at=at, ok=status == UP, metrics=metrics, **kw)


def test_a_located_check_is_one_judge_and_one_run_per_location(tmp_path):
    found = instances(tmp_path, "{from: [eu, us, ap], quorum: 2}")
    assert sorted(found) == ["api", "api/ap", "api/eu", "api/us"]
    judge, run = found["api"], found["api/eu"]
    assert judge.schedule is None
    assert not judge.runs
    assert run.runs
    assert run.schedule.every == 30
    assert run.parent == "api"
    assert run.failure_threshold == 3  # each location counts its own failures
    assert judge.failure_threshold == 1  # the judge passes each verdict on at once
    assert split_key("api@production/eu") == ("api", "production")


def test_quorum_defaults_to_a_majority(tmp_path):
    assert instances(tmp_path, "{from: [eu, us, ap]}")["api"].locations.needed == 2
    assert instances(tmp_path, "{from: [eu, us, ap, sa]}")["api"].locations.needed == 3
    assert instances(tmp_path, "{from: [eu]}")["api"].locations.needed == 1


def test_down_only_when_the_quorum_sees_it_down(tmp_path):
    judge = instances(tmp_path, "{from: [eu, us, ap], quorum: 2}")["api"]
    one, where = verdict(
        judge, [seen("eu", DOWN, message="HTTP 503"), seen("us", UP), seen("ap", UP)]
    )
    assert one.ok
    assert where["down"] == ["eu"]
    two, where = verdict(
        judge, [seen("eu", DOWN, message="HTTP 503"), seen("us", DOWN), seen("ap", UP)]
    )
    assert not two.ok
    assert where == {"down": ["eu", "us"], "up": ["ap"], "unknown": [], "quorum": 2}
    assert two.message.startswith("HTTP 503 — down in eu, us (2 of 3, quorum 2)")
    assert two.metrics["locations_down"] == 2


def test_unknown_locations_never_count_as_down(tmp_path):
    judge = instances(tmp_path, "{from: [eu, us, ap], quorum: 2}")["api"]
    result, where = verdict(
        judge,
        [seen("eu", DOWN), seen("us", UNKNOWN, why="no replica in us"), seen("ap", UNKNOWN)],
    )
    assert result.ok
    assert where["unknown"] == ["us", "ap"]
    assert "unknown in us, ap" in result.message


def test_one_slow_location_does_not_fire_a_latency_rule(tmp_path):
    judge = instances(
        tmp_path,
        "{from: [eu, us, ap], quorum: 2}",
        "[{metric: response_time, above: 1s, severity: warning}]",
    )["api"]
    evaluator = Evaluator(judge, ["critical", "warning"], AlertBook())
    slow_in_one = [seen("eu", UP, 5.0), seen("us", UP, 0.1), seen("ap", UP, 0.2)]
    result, _ = verdict(judge, slow_in_one)
    assert result.metrics["response_time"] == 0.2  # the 2nd worst of three
    assert [c.kind for c in evaluator.evaluate(result, 1.0)] == []
    slow_in_two = [seen("eu", UP, 5.0), seen("us", UP, 3.0), seen("ap", UP, 0.2)]
    result, _ = verdict(judge, slow_in_two)
    assert result.metrics["response_time"] == 3.0
    assert [c.kind for c in evaluator.evaluate(result, 2.0)] == ["firing"]


def test_fewer_values_than_the_quorum_give_no_value(tmp_path):
    judge = instances(tmp_path, "{from: [eu, us, ap], quorum: 2}")["api"]
    result, _ = verdict(judge, [seen("eu", UP, 5.0), seen("us", UNKNOWN), seen("ap", DOWN)])
    assert "response_time" not in result.metrics


@pytest.mark.parametrize(
    ("agg", "expected"), [("worst", 5.0), ("best", 0.1), ("median", 0.2), ("mean", 5.3 / 3)]
)
def test_agg_over_locations(tmp_path, agg, expected):
    judge = instances(tmp_path, f"{{from: [eu, us, ap], agg: {agg}}}")["api"]
    result, _ = verdict(judge, [seen("eu", UP, 5.0), seen("us", UP, 0.1), seen("ap", UP, 0.2)])
    assert result.metrics["response_time"] == pytest.approx(expected)


def test_a_rule_on_a_low_value_takes_the_lowest_as_worst(tmp_path):
    judge = instances(
        tmp_path,
        "{from: [eu, us, ap], quorum: 2}",
        "[{metric: certificate_expiry, below: 14d, severity: warning}]",
    )["api"]
    values = [
        Seen(loc, UP, at=1.0, ok=True, metrics={"certificate_expiry": d * 86400})
        for loc, d in (("eu", 3.0), ("us", 40.0), ("ap", 41.0))
    ]
    result, _ = verdict(judge, values)
    # only one location is served the old certificate
    assert result.metrics["certificate_expiry"] == 40.0 * 86400


def validate(tmp_path, locations: str, probe: str = "probe: http\n    url: https://e.com") -> str:
    (tmp_path / "monitor.yaml").write_text(
        f"version: 1\nchecks:\n  api:\n    {probe}\n    locations: {locations}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "watchkeeper.engine", "validate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    return out.stdout + out.stderr


def test_validate_refuses_a_quorum_the_locations_cannot_reach(tmp_path):
    out = validate(tmp_path, "{from: [eu, us], quorum: 3}")
    assert "checks.api.locations.quorum: quorum 3 is more than the 2 location(s)" in out
    assert "monitor.yaml:6:" in out


def test_validate_refuses_locations_on_host_and_passive_checks(tmp_path):
    assert "watches the host of each replica" in validate(tmp_path, "{from: [eu]}", "probe: system")
    assert "is not run from anywhere" in validate(
        tmp_path, "{from: [eu]}", "probe: heartbeat\n    expect_every: {every: 1h}"
    )
    assert "listed twice" in validate(tmp_path, "{from: [eu, eu]}")
    assert "from" in validate(tmp_path, "{from: []}")


def test_run_refuses_a_location_that_is_not_a_name(tmp_path):
    (tmp_path / "monitor.yaml").write_text("version: 1\nchecks: {}\n")
    out = subprocess.run(
        [sys.executable, "-m", "watchkeeper.engine", "run", "--location", "eu west"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--location 'eu west'" in out.stderr


def test_plan_lists_each_location_on_the_phase_the_daemon_uses(tmp_path):
    import json

    from watchkeeper.engine.schedule.timetable import series_for
    from watchkeeper.schema.schedule import Schedule

    (tmp_path / "monitor.yaml").write_text(
        "version: 1\nchecks:\n  api:\n    probe: http\n    url: https://e.com\n"
        "    schedule: {every: 1m}\n    locations: {from: [eu, us]}\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "watchkeeper.engine",
            "plan",
            "--format",
            "json",
            "--from",
            "2026-12-07T00:00:00Z",
            "--next",
            "2m",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(out.stdout)
    assert sorted(r["location"] for r in rows) == ["eu", "us"]
    from datetime import UTC, datetime

    start = datetime(2026, 12, 7, tzinfo=UTC)
    for row in rows:
        # the daemon schedules `api/eu` under that key: the plan shows the same instant
        series = series_for(Schedule(every=60.0), key=f"api/{row['location']}", start=start)
        first = next(iter(series))
        assert datetime.fromisoformat(row["at"]) == first.replace(microsecond=0)
        assert row["every"] == "1m"
