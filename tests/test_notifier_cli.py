"""`watchkeeper notify test NOTIFIER` through the real CLI against real receivers."""

from __future__ import annotations

import pytest

from tests.receivers import HttpRecorder, Reply, SmtpRecorder, free_port

TOKEN = "cli-secret-token-5150"
PASSWORD = "cli-smtp-password-777"

CONFIG = """
version: 1
notifiers:
  hook: {type: webhook, url: "${HOOK_URL}"}
  alerts:
    type: slack
    webhook_url: ${SLACK_WEBHOOK}
    channel: "#alerts"
    templates:
      title: "Hello from {{ notifier }}: {{ alerts | length }} sample alert"
  console: {type: log, level: error}
  dev-team:
    type: email
    to: [dev@example.com]
    smtp_url: ${SMTP_URL}
"""


@pytest.fixture
def receiver():
    with HttpRecorder(Reply(200, "ok")) as recorder:
        yield recorder


@pytest.fixture
def env(receiver):
    return {
        "HOOK_URL": receiver.url(f"/hooks/{TOKEN}"),
        "SLACK_WEBHOOK": receiver.url(f"/services/{TOKEN}"),
        "SMTP_URL": f"smtp://alerts:{PASSWORD}@127.0.0.1:{free_port()}",
    }


def test_sends_a_test_notice(cli, write_config, receiver, env):
    write_config(CONFIG)
    result = cli("notify", "test", "hook", env=env)
    assert result.code == 0, result.output
    assert result.stdout.startswith("sent: `hook` (webhook) accepted the test notice wk-")
    (request,) = receiver.requests
    body = request.json()
    assert body["kind"] == "test"
    assert body["status"] == "firing"
    assert body["alerts"][0]["check"] == "watchkeeper-test"
    assert request.headers["idempotency-key"] == body["notice_id"]
    assert TOKEN not in result.output


def test_template_override_from_monitor_yaml(cli, write_config, receiver, env):
    write_config(CONFIG)
    result = cli("notify", "test", "alerts", env=env)
    assert result.code == 0, result.output
    body = receiver.requests[0].json()
    assert body["channel"] == "#alerts"
    assert body["blocks"][0]["text"]["text"] == "Hello from alerts: 1 sample alert"


@pytest.mark.slow
def test_refusing_receiver_exits_1_with_the_status_and_no_secret(cli, write_config, receiver, env):
    write_config(CONFIG)
    receiver.always(Reply(503, f"upstream {TOKEN} down"))
    result = cli("notify", "test", "hook", env=env)
    assert result.code == 1
    assert "webhook `hook`: HTTP 503" in result.stderr
    assert "temporary failure" in result.stderr
    assert TOKEN not in result.output
    receiver.always(Reply(404, "no such hook"))
    result = cli("notify", "test", "hook", "--format", "json", env=env)
    assert result.code == 1
    data = result.json()
    assert data["sent"] is False
    assert data["retryable"] is False
    assert data["error"] == "webhook `hook`: HTTP 404 (no such hook)"
    assert TOKEN not in result.output


def test_json_output(cli, write_config, receiver, env):
    write_config(CONFIG)
    result = cli("notify", "test", "hook", "--format", "json", env=env)
    assert result.code == 0, result.output
    data = result.json()
    assert data["sent"] is True
    assert data["error"] is None
    assert data["notifier"] == "hook"
    assert data["type"] == "webhook"
    assert data["notice_id"] == receiver.requests[0].json()["notice_id"]


def test_log_notifier_writes_its_line(cli, write_config, env):
    write_config(CONFIG)
    result = cli("notify", "test", "console", env=env)
    assert result.code == 0, result.output
    assert "error [TEST] Test notification from watchkeeper to `console`" in result.stderr


def test_unreachable_smtp_server_exits_1_without_the_password(cli, write_config, env):
    write_config(CONFIG)
    result = cli("notify", "test", "dev-team", env=env)
    assert result.code == 1
    assert "email `dev-team`: cannot reach the SMTP server" in result.stderr
    assert PASSWORD not in result.output


def test_email_through_a_real_smtp_server(cli, write_config, env):
    write_config(CONFIG)
    with SmtpRecorder() as smtp:
        env["SMTP_URL"] = f"smtp://127.0.0.1:{smtp.port}"
        result = cli("notify", "test", "dev-team", env=env)
        assert result.code == 0, result.output
        (mail,) = smtp.wait_for(1)
    assert mail.email["Subject"].startswith("[watchkeeper] [TEST] Test notification")


def test_unknown_notifier_exits_2_with_a_suggestion(cli, write_config, env):
    write_config(CONFIG)
    result = cli("notify", "test", "hok", env=env)
    assert result.code == 2
    assert "no notifier named `hok`" in result.stderr
    assert "did you mean `hook`?" in result.stderr
