"""Rules and alerts (DESIGN.md Semantics ► Rules and alerts), driven from config text."""

from __future__ import annotations

import textwrap

import pytest

from watchkeeper.engine.config.instances import expand
from watchkeeper.engine.config.validation import validate
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run.evaluate import AlertBook, Evaluator
from watchkeeper.engine.run.probe import Result

SEVERITIES = ["critical", "high", "medium", "warning", "low", "info"]


def evaluator(tmp_path, check_yaml: str, key: str = "svc") -> Evaluator:
    path = tmp_path / "monitor.yaml"
    path.write_text("version: 1\nchecks:\n" + textwrap.indent(textwrap.dedent(check_yaml), "  "))
    result = validate(path)
    assert result.valid, [p.text() for p in result.problems]
    instances = expand(result.config, registry())
    return Evaluator(instances[key], SEVERITIES, AlertBook())


class Feed:
    """Feed results at one-minute steps and collect the alert changes."""

    def __init__(self, ev: Evaluator, start: float = 1_800_000_000.0):
        self.ev, self.at, self.log = ev, start, []

    def __call__(self, ok: bool = True, step: float = 60.0, **metrics: float):
        self.at += step
        changes = self.ev.evaluate(
            Result(ok=ok, message="ok" if ok else "boom", metrics=metrics), self.at
        )
        changes += self.ev.settle(self.at)
        self.log += [(c.kind, c.alert.rule, c.alert.severity) for c in changes]
        return [(c.kind, c.alert.rule, c.alert.severity) for c in changes]


def test_up_fires_after_failure_threshold_and_resolves_after_success_threshold(tmp_path):
    feed = Feed(
        evaluator(
            tmp_path,
            """
        svc: {probe: tcp, host: 127.0.0.1, port: 1, failure_threshold: 3,
              success_threshold: 2, severity: high}
    """,
        )
    )
    assert feed(ok=False) == [("pending", "up", "high")]
    assert feed(ok=False) == []
    assert feed(ok=False) == [("firing", "up", "high")]
    assert feed(ok=False) == []
    assert feed(ok=True) == []
    assert feed(ok=True) == [("resolved", "up", "high")]


def test_pending_that_recovers_is_discarded_and_a_new_incident_gets_a_new_id(tmp_path):
    ev = evaluator(tmp_path, "svc: {probe: tcp, host: h, port: 1, failure_threshold: 2}")
    feed = Feed(ev)
    feed(ok=False)
    first = ev.book.get_open("svc", "up").id
    assert feed(ok=True) == [("discarded", "up", "critical")]
    feed(ok=False)
    feed(ok=False)
    assert ev.book.get_open("svc", "up").id != first


def test_severity_tiers_sharing_a_name_are_one_alert_changing_severity(tmp_path):
    ev = evaluator(
        tmp_path,
        """
        svc:
          probe: tcp
          host: h
          port: 1
          thresholds:
            - {name: slow, metric: connect_time, above: 2s, severity: warning}
            - {name: slow, metric: connect_time, above: 5s, severity: high}
    """,
    )
    feed = Feed(ev)
    assert feed(connect_time=3) == [("firing", "slow", "warning")]
    alert_id = ev.book.get_open("svc", "slow").id
    assert feed(connect_time=6) == [("severity", "slow", "high")]
    assert ev.book.get_open("svc", "slow").id == alert_id
    assert feed(connect_time=3) == [("severity", "slow", "warning")]
    assert feed(connect_time=1) == [("resolved", "slow", "warning")]


def test_for_counts_breaching_evaluations_and_a_failed_run_leaves_counters(tmp_path):
    feed = Feed(
        evaluator(
            tmp_path,
            """
        svc:
          probe: tcp
          host: h
          port: 1
          thresholds: [{metric: connect_time, above: 1s, for: 3, severity: warning}]
    """,
        )
    )
    assert feed(connect_time=2) == [("pending", "connect_time", "warning")]
    feed(connect_time=2)
    feed(ok=False)  # fires `up`, but does not reset or advance the threshold counter
    assert ("firing", "connect_time", "warning") in feed(connect_time=2)


def test_for_as_a_duration(tmp_path):
    feed = Feed(
        evaluator(
            tmp_path,
            """
        svc:
          probe: tcp
          host: h
          port: 1
          thresholds: [{metric: connect_time, above: 1s, for: 5m, severity: warning}]
    """,
        )
    )
    feed(connect_time=2)
    for _ in range(4):
        assert feed(connect_time=2) == []
    assert feed(connect_time=2) == [("firing", "connect_time", "warning")]


def test_windowed_percentile(tmp_path):
    feed = Feed(
        evaluator(
            tmp_path,
            """
        svc:
          probe: tcp
          host: h
          port: 1
          thresholds: [{metric: connect_time, agg: p95, window: 10m, above: 2s,
                        severity: warning}]
    """,
        )
    )
    for _ in range(9):
        feed(connect_time=0.1)
    assert feed(connect_time=3) == [("firing", "connect_time:p95:10m", "warning")]


def test_error_rate_respects_min_samples_and_window(tmp_path):
    feed = Feed(
        evaluator(
            tmp_path,
            """
        svc:
          probe: tcp
          host: h
          port: 1
          failure_threshold: 100
          min_samples: 5
          thresholds: [{metric: error_rate, window: 10m, above: 30%, severity: critical}]
    """,
        )
    )
    assert feed(ok=False) == [("pending", "up", "critical")]  # only `up` reacts: 1 sample
    for _ in range(3):
        feed(ok=False)
    assert ("firing", "error_rate:avg:10m", "critical") in feed(ok=True)


def test_where_selects_a_labelled_instance(tmp_path):
    ev = evaluator(
        tmp_path,
        """
        svc:
          probe: system
          thresholds: [{metric: disk_usage, where: {path: /data}, above: 90%, severity: high}]
    """,
    )
    feed = Feed(ev)
    result = Result(ok=True)
    result.sample("disk_usage", 0.95, path="/")
    result.sample("disk_usage", 0.5, path="/data")
    assert ev.evaluate(result, feed.at + 60) == []
    result = Result(ok=True)
    result.sample("disk_usage", 0.5, path="/")
    result.sample("disk_usage", 0.95, path="/data")
    changes = ev.evaluate(result, feed.at + 120)
    assert [(c.kind, c.alert.rule) for c in changes] == [("firing", "disk_usage{path=/data}")]


def test_flapping_is_notified_once_and_once_when_stable(tmp_path):
    feed = Feed(
        evaluator(
            tmp_path,
            """
        svc: {probe: tcp, host: h, port: 1, flap_threshold: 4, flap_window: 1h}
    """,
        )
    )
    kinds = []
    for _ in range(6):
        kinds += feed(ok=False) + feed(ok=True)
    assert kinds.count(("flapping", "up", "critical")) == 1
    assert [k for k in kinds if k[0] == "firing"] == [("firing", "up", "critical")] * 2
    # calm for an hour: stable again, resolved once
    quiet = []
    for _ in range(70):
        quiet += feed(ok=True)
    assert quiet == [("resolved", "up", "critical")]


@pytest.mark.parametrize("failure_threshold", [1, 2])
def test_state_round_trips_through_its_document(tmp_path, failure_threshold):
    ev = evaluator(
        tmp_path,
        f"svc: {{probe: tcp, host: h, port: 1, failure_threshold: {failure_threshold + 1}}}",
    )
    feed = Feed(ev)
    for _ in range(failure_threshold):
        feed(ok=False)
    restored = Evaluator(ev.instance, SEVERITIES, ev.book, ev.state_doc(), ev.history)
    changes = restored.evaluate(Result(ok=False), feed.at + 60)
    assert [c.kind for c in changes] == ["firing"]
