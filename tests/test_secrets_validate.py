"""Secrets never reach validate's output, even inside an error about the very value."""

from __future__ import annotations

import pytest

SECRETS = {
    "DB_PASSWORD": "hunter2-correct-horse",
    # longer than an error message quotes: a cut-off secret must not slip through either
    "SLACK_WEBHOOK_ALERTS": "https://hooks.slack.com/services/T0A1B2C3D/B4E5F6G7H/"
    "abcdefghijklmnopqrstuvwx",
    "API_TOKEN": "tok-5f1e9c2a7b",
    # characters JSON and GitHub annotations escape: the escaped form must not leak either
    "SENTRY_KEY": 'sk-"quoted\\back%slash',
    "ADMIN_API_KEY": "adm-0a9b8c7d6e",
}
FILE_SECRET = "from-a-file-7d41c9"
LITERAL_SECRET = "https://hooks.example.com/services/T123/B456/literal-secret-path-0123456789"
DEFAULT_SECRET = "default-pass-31f2"


@pytest.fixture
def secret_config(write_config, tmp_path):
    (tmp_path / "db-password.txt").write_text(FILE_SECRET + "\n")
    write_config(
        """
        version: 1
        server:
          listen: ${API_TOKEN}
          admin_token: ["${ADMIN_API_KEY}"]
        sentry:
          traces_sample_rate: ${SENTRY_KEY}
        checks:
          db:
            probe: tcp
            host: db
            port: ${DB_PASSWORD}
            timeout: ${SLACK_WEBHOOK_ALERTS}
          from-file:
            probe: tcp
            host: db
            port: ${file:db-password.txt}
          escaped:
            probe: tcp
            host: db
            port: ${SENTRY_KEY}
          fallback:
            probe: tcp
            host: db
            port: ${REPLICA_PASSWORD:-default-pass-31f2}
          web:
            probe: http
            url: http://example.com
            depends_on: ["${API_TOKEN}"]
            thresholds:
              - {metric: response_time, above: "${DB_PASSWORD}"}
        notifiers:
          team:
            type: slack
            webhook_url: &hook https://hooks.example.com/services/T123/B456/literal-secret-path-0123456789
            timeout: *hook
        """
    )


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_secret_values_never_appear_in_validate_output(cli, secret_config, fmt):
    result = cli("validate", "--format", fmt, env=SECRETS)
    assert result.code == 1, result.output
    # every problem is still reported, at its place, only without the value
    for path in (
        "server.listen",
        "server.admin_token",
        "sentry.traces_sample_rate",
        "checks.db.port",
        "checks.db.timeout",
        "checks.from-file.port",
        "checks.escaped.port",
        "checks.fallback.port",
        "checks.web.depends_on[0]",
        "checks.web.thresholds[0].above",
        "notifiers.team.timeout",
    ):
        assert path in result.stdout, (path, result.output)
    leaked = [
        secret
        for secret in [*SECRETS.values(), FILE_SECRET, LITERAL_SECRET, DEFAULT_SECRET]
        if secret in result.output
        # the escaped forms JSON and workflow commands would print
        or secret.replace("\\", "\\\\").replace('"', '\\"') in result.output
        or secret.replace("%", "%25") in result.output
        or repr(secret)[1:-1] in result.output
        # the start of a long secret cut off in a message
        or secret[:40] in result.output
    ]
    assert leaked == [], result.output


def test_unset_secret_variable_warning_names_the_variable(cli, write_config):
    write_config(
        """
        version: 1
        notifiers:
          alerts: {type: slack, webhook_url: "${SLACK_WEBHOOK_ALERTS}"}
          infra: {type: pagerduty, routing_key: "${PAGERDUTY_KEY}"}
        """
    )
    result = cli("validate", env={"PAGERDUTY_KEY": "pd-routing-9c8b7a"})
    assert result.code == 0, result.output
    assert "environment variable SLACK_WEBHOOK_ALERTS is not set" in result.stdout
    assert "PAGERDUTY_KEY" not in result.stdout  # set: nothing to say about it
    assert "pd-routing-9c8b7a" not in result.output


def test_secret_field_value_quoted_by_a_cross_reference_problem(cli, write_config):
    # the schema holds; only a reference is wrong, and the wrong reference is the secret
    write_config(
        f"""
        version: 1
        sentry:
          dsn: &dsn {LITERAL_SECRET}
        checks:
          api:
            probe: http
            url: http://example.com
            depends_on: [*dsn]
        """
    )
    for fmt in ("text", "json", "github"):
        result = cli("validate", "--format", fmt)
        assert result.code == 1, result.output
        assert "checks.api.depends_on[0]" in result.stdout
        assert LITERAL_SECRET[:40] not in result.output, result.output
