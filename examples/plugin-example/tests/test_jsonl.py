"""The `jsonl` notifier, sent notices the way the daemon's outbox sends them."""

from __future__ import annotations

import json

import pytest

from watchkeeper.engine.notifier import DeliveryError
from watchkeeper.engine.pytest_plugin import make_notice

CONFIG = """
    version: 1
    notifiers:
      audit: {type: jsonl, path: NOTICES}
    routes:
      - match: {}
        notify: [audit]
    """


def config_for(monitor_config, path: str, **kwargs):
    return monitor_config(CONFIG.replace("NOTICES", path), **kwargs)


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_appends_one_json_line_per_notice(monitor_config, send_notice, tmp_path):
    config = config_for(monitor_config, "notices.jsonl")
    firing = send_notice(config, "audit")
    resolved = send_notice(config, "audit", make_notice("resolved"))
    lines = read_lines(tmp_path / "notices.jsonl")
    assert [line["status"] for line in lines] == ["firing", "resolved"]
    assert [line["notice_id"] for line in lines] == [firing.id, resolved.id]
    assert lines[0]["notifier"] == "audit"
    alert = lines[0]["alerts"][0]
    assert (alert["check"], alert["severity"], alert["status"]) == (
        "api-health",
        "critical",
        "firing",
    )
    assert lines[1]["alerts"][0]["resolved_at"]


def test_an_unwritable_path_is_a_retryable_failure(monitor_config, send_notice):
    config = config_for(monitor_config, "no-such-dir/notices.jsonl")
    with pytest.raises(DeliveryError) as caught:
        send_notice(config, "audit")
    assert caught.value.retryable
    assert "cannot append to" in str(caught.value)


def test_secrets_never_reach_the_file(monitor_config, send_notice, tmp_path):
    secret = "hunter2-0123456789"
    config = monitor_config(
        """
        version: 1
        checks:
          api:
            probe: http
            url: https://app.example.com/
            headers: {Authorization: "${API_TOKEN}"}
        notifiers:
          audit: {type: jsonl, path: notices.jsonl}
        routes:
          - match: {}
            notify: [audit]
        """,
        env={"API_TOKEN": secret},
    )
    send_notice(config, "audit", make_notice(summary=f"401 with token {secret}"))
    text = (tmp_path / "notices.jsonl").read_text()
    assert secret not in text
    assert "401 with token" in text


def test_unknown_options_are_refused(config_problems):
    problems = config_problems(
        """
        version: 1
        notifiers:
          audit: {type: jsonl, path: notices.jsonl, fsync: true}
        """
    )
    assert len(problems) == 1, problems
    assert problems[0].startswith("monitor.yaml:3:45: notifiers.audit.fsync: unknown key"), problems
