"""`watchkeeper route`: which routes, notifiers, escalation and windows an alert meets."""

from __future__ import annotations

import pytest

# The seed guide's routing, plus a label route and a `continue` route.
CONFIG = """
version: 1
state: {type: postgres, url: "${STATE_URL}"}   # unset: route needs no store
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
  alerts: {type: log}
  monitoring: {type: log}
  deployments: {type: log}
  console: {type: log}
  sentry-alerts: {type: log}
  data-team: {type: log}
  dev-team: {type: log}
  infra: {type: log}
routes:
  - match: {severity: critical}
    notify: [alerts]
    escalate: standard
  - match: {rule: "slow*", severity: warning}
    notify: [dev-team]
  - match: {event: deploy}
    notify: [deployments]
  - match: {severity: ">=high"}
    notify: [sentry-alerts, monitoring]
    continue: true
  - match: {labels: {team: data}, environment: production}
    notify: [data-team]
  - match: {severity: [high, medium, warning]}
    notify: [monitoring]
    repeat: 4h
  - match: {}
    notify: [console]
escalation:
  standard:
    - {after: 0s, name: automated, notify: [alerts]}
    - {after: 15m, name: development, notify: [dev-team]}
    - {after: 45m, name: infrastructure, notify: [infra], repeat: 1h}
maintenance:
  - name: database-maintenance
    schedule: {cron: "0 2 * * SUN#1", timezone: UTC}
    duration: 2h
    checks: [database]
  - name: staging-freeze
    start: 2026-12-10T00:00:00Z
    end: 2026-12-11T00:00:00Z
    environments: [staging]
    effect: pause
"""


@pytest.fixture
def route(cli, write_config):
    write_config(CONFIG)

    def run(*args: str) -> dict:
        result = cli("route", "--format", "json", *args)
        assert result.code == 0, result.output
        return result.json()

    return run


def test_critical_goes_to_alerts_and_escalates(route):
    data = route("--severity", "critical", "--check", "api-health", "--env", "production")
    assert {k: data[k] for k in ("routes", "notifiers", "escalation", "muted_by", "dropped")} == {
        "routes": [0],
        "notifiers": ["alerts"],
        "escalation": "standard",
        "muted_by": [],
        "dropped": False,
    }
    assert data["escalation_levels"] == [
        {"after": 0.0, "name": "automated", "notify": ["alerts"], "actions": [], "repeat": None},
        {"after": 900.0, "name": "development", "notify": ["dev-team"], "actions": [],
         "repeat": None},
        {"after": 2700.0, "name": "infrastructure", "notify": ["infra"], "actions": [],
         "repeat": 3600.0},
    ]  # fmt: skip


def test_event_goes_to_deployments(route):
    data = route("--event", "deploy", "--env", "production")
    assert (data["routes"], data["notifiers"], data["escalation"]) == ([2], ["deployments"], None)
    assert data["subject"]["kind"] == "event"
    other = route("--event", "rollback")
    assert other["notifiers"] == ["console"]


def test_at_least_high_continues_and_notifiers_are_deduplicated(route):
    data = route("--severity", "high", "--check", "api-health@production")
    assert data["routes"] == [3, 5]
    assert data["notifiers"] == ["sentry-alerts", "monitoring"]
    assert data["matched"][1]["repeat"] == 14400.0
    assert data["matched"][0]["continue"] is True


@pytest.mark.parametrize("severity", ["medium", "warning"])
def test_medium_and_warning_go_to_monitoring(route, severity):
    data = route("--severity", severity, "--check", "api-health")
    assert (data["routes"], data["notifiers"]) == ([5], ["monitoring"])


def test_rule(route):
    data = route("--severity", "warning", "--check", "api-health", "--rule", "slow")
    assert (data["routes"], data["notifiers"]) == ([1], ["dev-team"])
    assert data["subject"]["rule"] == "slow"
    assert route("--severity", "warning", "--rule", "up")["routes"] == [5]


def test_everything_else_goes_to_the_console(route):
    data = route("--severity", "low")
    assert (data["routes"], data["notifiers"], data["dropped"]) == ([6], ["console"], False)


def test_labels_from_the_check_and_from_options(route):
    # database carries team: data in the config; production makes the label route match
    data = route("--severity", "low", "--check", "database", "--env", "production")
    assert data["subject"]["labels"] == {"team": "data"}
    assert (data["routes"], data["notifiers"]) == ([4], ["data-team"])
    # --label overrides the check's own
    data = route("--severity", "low", "--check", "database", "--env", "production",
                 "--label", "team=web")  # fmt: skip
    assert data["routes"] == [6]
    data = route("--severity", "low", "--label", "team=data", "--env", "production")
    assert data["routes"] == [4]


def test_muted_by_a_window_at_a_given_time(route):
    during = route("--severity", "critical", "--check", "database", "--at", "2026-12-06T03:00:00Z")
    assert during["muted_by"] == ["database-maintenance"]
    assert during["windows"] == [
        {"name": "database-maintenance", "effect": "mute", "start": "2026-12-06T02:00:00Z",
         "end": "2026-12-06T04:00:00Z", "reason": None},
    ]  # fmt: skip
    # routing is unchanged: the alert is held, then notified through the same routes
    assert during["notifiers"] == ["alerts"]
    after = route("--severity", "critical", "--check", "database", "--at", "2026-12-13T03:00:00Z")
    assert after["muted_by"] == []
    other = route("--severity", "critical", "--check", "api-health", "--env", "production",
                  "--at", "2026-12-06T03:00:00Z")  # fmt: skip
    assert other["muted_by"] == []
    # an offset-less time is read in defaults.timezone (UTC here); pause windows count too
    staging = route("--severity", "high", "--check", "api-health@staging",
                    "--at", "2026-12-10T12:00")  # fmt: skip
    assert staging["muted_by"] == ["staging-freeze"]


def test_no_route_matches(cli, write_config):
    write_config(CONFIG.replace("  - match: {}\n    notify: [console]\n", ""))
    result = cli("route", "--severity", "low", "--format", "json")
    assert result.code == 0, result.output
    data = result.json()
    assert (data["routes"], data["notifiers"], data["dropped"]) == ([], [], True)
    text = cli("route", "--severity", "low")
    assert text.code == 0
    assert "no route matches; nobody would be notified" in text.stdout


def test_text_output(cli, write_config):
    write_config(CONFIG)
    result = cli("route", "--severity", "critical", "--check", "database",
                 "--at", "2026-12-06T03:00:00Z")  # fmt: skip
    assert result.code == 0, result.output
    out = result.stdout
    assert "route #0 [severity: critical] → alerts (escalate standard)" in out
    assert "after 15m development: notify dev-team" in out
    assert "held by maintenance database-maintenance (mute)" in out


def test_unknown_check_is_routed_with_a_note(cli, write_config):
    write_config(CONFIG)
    result = cli("route", "--severity", "critical", "--check", "nope", "--format", "json")
    assert result.code == 0, result.output
    assert result.json()["routes"] == [0]
    assert "not a check in this config" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--severity"),
        (("--severity", "urgent"), "unknown severity 'urgent'"),
        (("--severity", "low", "--at", "tomorrow"), "ISO-8601"),
        (("--severity", "low", "--label", "team"), "key=value"),
        (("--severity", "low", "--check", "api-health@production", "--env", "staging"), "--env"),
    ],
)
def test_usage_errors(cli, write_config, args, message):
    write_config(CONFIG)
    result = cli("route", *args)
    assert result.code == 2, result.output
    assert message in result.stderr


def test_invalid_config_is_exit_1(cli, write_config):
    write_config(CONFIG.replace("notify: [alerts]\n    escalate", "notify: [nobody]\n    escalate"))
    result = cli("route", "--severity", "critical")
    assert result.code == 1
