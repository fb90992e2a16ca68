"""`watchkeeper import gatus`: Gatus's own documented configurations carried over to a
monitor.yaml that validates (strictly, once the named variables are set) and runs."""

from __future__ import annotations

import os
import re
import textwrap

import pytest
import yaml

from tests.conftest import run_cli
from watchkeeper.engine.config.gatus import (
    GatusInputError,
    duration_text,
    go_duration,
    interpolated,
    parse_gatus,
)
from watchkeeper.engine.config.gatus_convert import convert
from watchkeeper.engine.testing import HttpTestServer

# Gatus README, "Configuring Slack alerts" and "Setting a default alert"
SLACK = """
alerting:
  slack:
    webhook-url: "https://hooks.slack.com/services/T0000LITERAL/B0000LITERAL/XXXXLITERALXXXX"
    default-alert:
      description: "health check failed"
      send-on-resolved: true
      failure-threshold: 5
      success-threshold: 5

endpoints:
  - name: website
    interval: 30s
    url: "https://twin.sh/health"
    conditions:
      - "[STATUS] == 200"
      - "[BODY].status == UP"
      - "[RESPONSE_TIME] < 300"
    alerts:
      - type: slack
        description: "healthcheck failed 3 times in a row"
        send-on-resolved: true
      - type: slack
        failure-threshold: 5
        description: "healthcheck failed 5 times in a row"
        send-on-resolved: true
"""

# Gatus README, "Configuring PagerDuty alerts" (group overrides) and "Configuring Email alerts"
PAGERDUTY_EMAIL = """
alerting:
  pagerduty:
    integration-key: "pd-main-integration-key-0001"
    overrides:
      - group: "core"
        integration-key: "pd-core-integration-key-0002"
  email:
    from: "from@example.com"
    username: "from@example.com"
    password: "hunter2-literal-password"
    host: "mail.example.com"
    port: 587
    to: "recipient1@example.com,recipient2@example.com"
    client:
      insecure: false

endpoints:
  - name: website
    url: "https://twin.sh/health"
    interval: 30s
    conditions:
      - "[STATUS] == 200"
      - "[BODY].status == UP"
      - "[RESPONSE_TIME] < 300"
    alerts:
      - type: pagerduty
        failure-threshold: 3
        success-threshold: 5
        send-on-resolved: true
        description: "healthcheck failed"
      - type: email
        description: "healthcheck failed"
        send-on-resolved: true

  - name: back-end
    group: core
    url: "https://example.org/"
    interval: 5m
    conditions:
      - "[STATUS] == 200"
      - "[CERTIFICATE_EXPIRATION] > 48h"
    alerts:
      - type: pagerduty
        failure-threshold: 3
        success-threshold: 5
        send-on-resolved: true
        description: "healthcheck failed"
"""

# Gatus's config.yaml at the repository's root (groups, DNS, ICMP, domain expiration),
# with the FAQ's TCP, STARTTLS, TLS, WebSocket, gRPC and SSH examples
PROTOCOLS = """
endpoints:
  - name: front-end
    group: core
    url: "https://twin.sh/health"
    interval: 5m
    conditions:
      - "[STATUS] == 200"
      - "[BODY].status == UP"
      - "[RESPONSE_TIME] < 150"

  - name: example-dns-query
    url: "8.8.8.8" # Address of the DNS server to use
    interval: 5m
    dns:
      query-name: "example.com"
      query-type: "A"
    conditions:
      - "[BODY] == pat(*.*.*.*)"  # Matches any IPv4 address
      - "[DNS_RCODE] == NOERROR"

  - name: icmp-ping
    url: "icmp://example.org"
    interval: 1m
    conditions:
      - "[CONNECTED] == true"

  - name: check-domain-expiration
    url: "https://example.org/"
    interval: 1h
    conditions:
      - "[DOMAIN_EXPIRATION] > 720h"

  - name: redis
    url: "tcp://127.0.0.1:6379"
    interval: 30s
    conditions:
      - "[CONNECTED] == true"

  - name: starttls-smtp-example
    url: "starttls://smtp.gmail.com:587"
    interval: 30m
    client:
      timeout: 5s
    conditions:
      - "[CONNECTED] == true"
      - "[CERTIFICATE_EXPIRATION] > 48h"

  - name: tls-ldaps-example
    url: "tls://ldap.example.com:636"
    interval: 30m
    client:
      timeout: 5s
    conditions:
      - "[CONNECTED] == true"
      - "[CERTIFICATE_EXPIRATION] > 48h"

  - name: example
    url: "wss://echo.websocket.org/"
    body: "status"
    conditions:
      - "[CONNECTED] == true"
      - "[BODY] == pat(*served by*)"

  - name: my-grpc
    url: grpc://localhost:50051
    interval: 30s
    conditions:
      - "[CONNECTED] == true"
      - "[BODY].status == SERVING"  # BODY is read only when referenced
    client:
      timeout: 5s

  - name: ssh-example-password
    url: "ssh://example.com:22" # port is optional. Default is 22.
    ssh:
      username: "username"
      password: "ssh-literal-password"
    body: |
      {
        "command": "echo '{\\"memory\\": {\\"used\\": 512}}'"
      }
    interval: 1m
    conditions:
      - "[CONNECTED] == true"
      - "[STATUS] == 0"
      - "[BODY].memory.used > 500"

  - name: example-udp
    url: "udp://example.org:80"
    conditions:
      - "[CONNECTED] == true"
"""

# Gatus README, "Maintenance" (global and per endpoint), "External Endpoints",
# "Configuring Telegram alerts", "Configuring Discord alerts", "Configuring custom alerts"
MAINTENANCE_AND_CHAT = """
alerting:
  telegram:
    token: "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"
    id: "0123456789"
  discord:
    webhook-url: "${DISCORD_WEBHOOK_URL}"
  custom:
    url: "https://hooks.example.com/services/CUSTOMLITERAL"
    method: "POST"
    body: |
      {
        "text": "[ALERT_TRIGGERED_OR_RESOLVED]: [ENDPOINT_GROUP] - [ENDPOINT_NAME]"
      }
  ifttt:
    webhook-key: "ifttt-literal-key"
    event-name: "gatus"

maintenance:
  start: 23:00
  duration: 1h
  timezone: "Europe/Amsterdam"
  every: [Monday, Thursday]

endpoints:
  - name: endpoint-1
    url: "https://example.org"
    conditions:
      - "[STATUS] == 200"
    maintenance-windows:
      - start: "07:30"
        duration: 40m
        timezone: "Europe/Berlin"
      - start: "14:30"
        duration: 1h
        timezone: "Europe/Berlin"
    alerts:
      - type: telegram
        send-on-resolved: true
      - type: custom
        failure-threshold: 10
        success-threshold: 3
        send-on-resolved: true
        description: "health check failed"
      - type: ifttt

external-endpoints:
  - name: ext-ep-test
    group: core
    token: "potato-literal-token"
    heartbeat:
      interval: 30m
    alerts:
      - type: discord
        description: "healthcheck failed"
        send-on-resolved: true
"""

LITERAL_SECRETS = [
    "T0000LITERAL",
    "XXXXLITERALXXXX",
    "pd-main-integration-key-0001",
    "pd-core-integration-key-0002",
    "hunter2-literal-password",
    "ssh-literal-password",
    "ABC-DEF1234ghIkl",
    "CUSTOMLITERAL",
    "potato-literal-token",
]


def imported(tmp_path, text: str, name: str = "config.yaml"):
    """Import a Gatus file through the CLI; return (result, monitor.yaml text, data)."""
    source = tmp_path / name
    source.write_text(textwrap.dedent(text))
    result = run_cli("import", "gatus", str(source), cwd=tmp_path)
    assert result.code == 0, result.output
    for secret in LITERAL_SECRETS:
        assert secret not in result.stdout
        assert secret not in result.stderr
    (tmp_path / "monitor.yaml").write_text(result.stdout)
    return result, result.stdout, yaml.safe_load(result.stdout)


def variables(text: str) -> dict[str, str]:
    """Return a value for each `${VAR}` the output reads (what an operator would set)."""
    names = set(re.findall(r"\$\{([A-Z0-9_]+)\}", text))
    values = {"DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/abcdef"}
    return {n: values.get(n, f"https://{n.lower()}.example.com/secret-value") for n in names}


def validates_strictly(tmp_path, text: str) -> None:
    result = run_cli("validate", "--strict", cwd=tmp_path, env=variables(text))
    assert result.code == 0, result.output


def test_slack_alerts_become_a_notifier_and_a_route(tmp_path):
    result, text, data = imported(tmp_path, SLACK)
    validates_strictly(tmp_path, text)
    check = data["checks"]["website"]
    assert check["probe"] == "http"
    assert check["url"] == "https://twin.sh/health"
    assert check["schedule"] == {"every": "30s"}
    assert check["expect"] == {"status": 200, "json": {"status": "UP"}}
    # the default alert's failure-threshold 5 fills in where the alert gives none
    assert check["failure_threshold"] == 5
    assert check["success_threshold"] == 5
    assert check["thresholds"] == [
        {"metric": "response_time", "above": "300ms", "severity": "critical", "for": 5}
    ]
    assert "healthcheck failed 3 times in a row" in check["description"]
    assert data["notifiers"] == {"slack": {"type": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"}}
    assert data["routes"] == [
        {"match": {"check": ["website"]}, "notify": ["slack"], "group_wait": "0s"}
    ]
    assert "#   SLACK_WEBHOOK_URL  (alerting.slack.webhook-url)" in text
    assert "SLACK_WEBHOOK_URL" in result.stderr


def test_pagerduty_group_overrides_and_email(tmp_path):
    _result, text, data = imported(tmp_path, PAGERDUTY_EMAIL)
    validates_strictly(tmp_path, text)
    notifiers = data["notifiers"]
    assert notifiers["pagerduty"] == {
        "type": "pagerduty",
        "routing_key": "${PAGERDUTY_INTEGRATION_KEY}",
    }
    # the `core` group's override is a notifier of its own, used by that group's checks
    assert notifiers["pagerduty-core"]["routing_key"] == "${PAGERDUTY_INTEGRATION_KEY_CORE}"
    assert notifiers["email"]["to"] == ["recipient1@example.com", "recipient2@example.com"]
    assert notifiers["email"]["smtp_url"] == (
        "smtp://from%40example.com:${EMAIL_PASSWORD}@mail.example.com:587"
    )
    routes = {tuple(r["match"]["check"]): r["notify"] for r in data["routes"]}
    assert routes == {("website",): ["pagerduty", "email"], ("back-end",): ["pagerduty-core"]}
    back_end = data["checks"]["back-end"]
    assert back_end["labels"] == {"group": "core"}
    assert {"metric": "certificate_expiry", "below": "2d", "severity": "critical", "for": 3} in (
        back_end["thresholds"]
    )
    # pagerduty and email fail at 3 in a row, the lowest wins
    assert data["checks"]["website"]["failure_threshold"] == 3


def test_every_protocol_maps_to_its_probe(tmp_path):
    result, text, data = imported(tmp_path, PROTOCOLS)
    validates_strictly(tmp_path, text)
    checks = data["checks"]
    assert checks["example-dns-query"] == {
        "probe": "dns",
        "name": "example.com",
        "resolvers": ["8.8.8.8"],
        "schedule": {"every": "5m"},
        "expect": {"regex": r"(?s)\A.*\..*\..*\..*\Z", "rcode": "NOERROR"},
    }
    assert checks["icmp-ping"] == {"probe": "icmp", "host": "example.org"}
    assert checks["redis"] == {
        "probe": "tcp",
        "host": "127.0.0.1",
        "port": 6379,
        "schedule": {"every": "30s"},
    }
    assert checks["starttls-smtp-example"]["probe"] == "smtp"
    assert checks["starttls-smtp-example"]["tls"] == "starttls"
    assert checks["starttls-smtp-example"]["timeout"] == "5s"
    assert checks["tls-ldaps-example"]["probe"] == "tls"
    assert checks["tls-ldaps-example"]["port"] == 636
    assert checks["example"] == {
        "probe": "websocket",
        "url": "wss://echo.websocket.org/",
        "send": "status",
        "expect": {"contains": "served by"},
    }
    assert checks["my-grpc"]["target"] == "localhost:50051"
    ssh = checks["ssh-example-password"]
    assert ssh["password"] == "${SSH_EXAMPLE_PASSWORD_SSH_PASSWORD}"
    assert ssh["command"] == """echo '{"memory": {"used": 512}}'"""
    # what had no equivalent is a comment where it applies
    assert "# gatus: condition `[DOMAIN_EXPIRATION] > 720h` has no equivalent" in text
    assert "# gatus: condition `[BODY].memory.used > 500` has no equivalent" in text
    assert "example-udp" not in checks
    assert "  # example-udp: {probe: udp, host: example.org, port: 80}" in text
    assert "[DOMAIN_EXPIRATION]" in result.stderr


def test_maintenance_external_endpoints_and_chat_providers(tmp_path):
    result, text, data = imported(tmp_path, MAINTENANCE_AND_CHAT)
    validates_strictly(tmp_path, text)
    windows = {w["name"]: w for w in data["maintenance"]}
    # an unquoted 23:00 is read back as the time it is, not as YAML 1.1's 1380
    assert windows["maintenance"] == {
        "name": "maintenance",
        "schedule": {"cron": "0 23 * * MON,THU", "timezone": "Europe/Amsterdam"},
        "duration": "1h",
    }
    assert windows["endpoint-1-maintenance"]["schedule"]["cron"] == "30 7 * * *"
    assert windows["endpoint-1-maintenance-2"]["checks"] == ["endpoint-1"]
    notifiers = data["notifiers"]
    assert notifiers["telegram"] == {
        "type": "apprise",
        "urls": ["tgram://${TELEGRAM_TOKEN}/0123456789"],
    }
    assert notifiers["custom"] == {"type": "webhook", "url": "${CUSTOM_WEBHOOK_URL}"}
    # a reference already in the Gatus file stays as it was
    assert notifiers["discord"] == {"type": "apprise", "urls": ["${DISCORD_WEBHOOK_URL}"]}
    assert "DISCORD_WEBHOOK_URL" not in result.stderr.partition("set these")[2]
    assert "# gatus: alerting.ifttt: no notifier of ours speaks to it" in text
    assert "not Gatus's body template" in text
    heartbeat = data["checks"]["ext-ep-test"]
    assert heartbeat["probe"] == "heartbeat"
    assert heartbeat["expect_every"] == {"every": "30m"}
    assert heartbeat["token"] == "${EXT_EP_TEST_HEARTBEAT_TOKEN}"
    routes = {tuple(r["match"]["check"]): r["notify"] for r in data["routes"]}
    assert routes[("endpoint-1",)] == ["telegram", "custom"]
    assert routes[("ext-ep-test",)] == ["discord"]


def test_status_conditions_become_the_accepted_codes():
    gatus = {
        "endpoints": [
            {"name": "a", "url": "https://a.example", "conditions": ["[STATUS] < 300"]},
            {"name": "b", "url": "https://b.example", "conditions": ["[STATUS] == any(200, 429)"]},
            {"name": "c", "url": "https://c.example", "conditions": ["[STATUS] < 400"]},
            {"name": "d", "url": "https://d.example", "conditions": ["[STATUS] == pat(2*)"]},
        ]
    }
    checks = convert(gatus).data["checks"]
    assert checks["a"]["expect"]["status"] == list(range(200, 300))
    assert checks["b"]["expect"]["status"] == [200, 429]
    assert "expect" not in checks["c"]  # ours accepts any 2xx or 3xx by default
    assert checks["d"]["expect"]["status"] == [200, *range(201, 300)]


def test_headers_method_and_secrets_in_requests():
    gatus = {
        "endpoints": [
            {
                "name": "api",
                "url": "https://user:url-literal-pass@api.example.com/v1",
                "method": "POST",
                "body": '{"q": "[ENDPOINT_NAME]"}',
                "headers": {"Authorization": "Bearer header-literal-token", "X-Trace": "1"},
                "conditions": ["[STATUS] == 201", "[BODY] == pat(*created*)"],
            },
            {"name": "env", "url": "https://$HOST/health", "headers": {"X-Api-Key": "$API_KEY"}},
        ]
    }
    conversion = convert(gatus)
    api = conversion.data["checks"]["api"]
    assert api["method"] == "POST"
    assert api["body"] == '{"q": "api"}'
    assert api["url"] == "https://user:${API_URL_PASSWORD}@api.example.com/v1"
    assert api["headers"] == {
        "Authorization": "Bearer ${API_AUTHORIZATION_TOKEN}",
        "X-Trace": "1",
        "Content-Type": "application/json",
    }
    assert api["expect"] == {"body_contains": "created", "status": 201}
    env = conversion.data["checks"]["env"]
    assert env["url"] == "https://${HOST}/health"
    assert env["headers"] == {"X-Api-Key": "${API_KEY}"}
    shown = repr(conversion)
    assert "url-literal-pass" not in shown
    assert "header-literal-token" not in shown


def test_disabled_endpoint_stays_disabled_and_odd_names_are_named_ours():
    gatus = {
        "endpoints": [
            {"name": "random endpoint / not in a group", "url": "https://a.example",
             "enabled": False, "conditions": ["[STATUS] == 200"]},
            {"name": "dup", "group": "one", "url": "https://b.example"},
            {"name": "dup", "group": "two", "url": "https://c.example"},
        ]
    }  # fmt: skip
    conversion = convert(gatus)
    checks = conversion.data["checks"]
    assert checks["random-endpoint-not-in-a-group"]["enabled"] is False
    assert set(checks) == {"random-endpoint-not-in-a-group", "dup", "two-dup"}
    assert any('named "random endpoint' in n.text for n in conversion.notes)


def test_gatus_references_and_durations():
    assert interpolated("$TOKEN and ${OTHER} cost $$5, $${literal}") == (
        "${TOKEN} and ${OTHER} cost $5, $${literal}"
    )
    assert go_duration("1h30m") == 5400
    assert go_duration("300ms") == 0.3
    assert go_duration("soon") is None
    assert duration_text(5400) == "1h30m"
    assert duration_text(0.25) == "250ms"
    assert duration_text(172800) == "2d"


@pytest.mark.slow
def test_imported_config_runs_against_a_real_server(tmp_path):
    with HttpTestServer() as server:
        server.reply("/health", json={"status": "UP", "checks": [{"name": "db"}]})
        gatus = f"""
        endpoints:
          - name: healthy
            url: "{server.url("/health")}"
            interval: 30s
            conditions:
              - "[STATUS] == 200"
              - "[BODY].status == UP"
              - "[BODY].checks[0].name == db"
              - "[BODY] == pat(*UP*)"
              - "[RESPONSE_TIME] < 5000"
          - name: wrong-body
            url: "{server.url("/health")}"
            conditions:
              - "[STATUS] == 200"
              - "[BODY].status == DOWN"
        """
        _, _text, data = imported(tmp_path, gatus)
        assert data["checks"]["healthy"]["expect"]["json"] == {
            "status": "UP",
            "checks": [{"name": "db"}],
        }
        good = run_cli("check", "healthy", cwd=tmp_path)
        assert good.code == 0, good.output
        bad = run_cli("check", "wrong-body", cwd=tmp_path)
        assert bad.code == 1, bad.output
        assert "DOWN" in bad.output
    assert len([r for r in server.requests if r.path == "/health"]) >= 2


def test_output_file_is_written_and_not_overwritten(tmp_path):
    source = tmp_path / "config.yaml"
    source.write_text(SLACK)
    out = tmp_path / "monitor.yaml"
    first = run_cli("import", "gatus", str(source), "-o", str(out), cwd=tmp_path)
    assert first.code == 0, first.output
    assert first.stdout == ""
    assert yaml.safe_load(out.read_text())["checks"]["website"]["probe"] == "http"
    again = run_cli("import", "gatus", str(source), "-o", str(out), cwd=tmp_path)
    assert again.code == 2
    assert "--force" in again.stderr
    forced = run_cli("import", "gatus", str(source), "-o", str(out), "--force", cwd=tmp_path)
    assert forced.code == 0, forced.output


BOMB = """
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
endpoints: *h
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BOMB, "aliases expand to more than 100000 values"),
        ("- name: a\n  url: https://a.example\n", "is a mapping"),
        ("just text\n", "is a mapping"),
        ("", "the file is empty"),
        ("endpoints: [\n", "YAML syntax error"),
        ("a: &x [1, *x]\n", "inside the value its anchor names"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nesting depth"),
        ("a: !!python/object:os.system ls\n", "YAML"),
    ],
    ids=["alias-bomb", "list-root", "scalar-root", "empty", "syntax", "cycle", "deep", "tag"],
)
def test_hostile_input_is_refused_with_exit_2(tmp_path, text, message):
    source = tmp_path / "config.yaml"
    source.write_text(text)
    result = run_cli("import", "gatus", str(source), cwd=tmp_path, timeout=30)
    assert result.code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    with pytest.raises(GatusInputError):
        parse_gatus(text)


def test_unreadable_files_are_refused_with_exit_2(tmp_path):
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as stream:
        stream.truncate(33 * 1024 * 1024)  # sparse: larger than the loader's 32 MiB bound
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00endpoints")
    for path, message in [
        (huge, "larger than 32 MiB"),
        (fifo, "not a regular file"),
        (binary, "not UTF-8"),
        (tmp_path / "missing.yaml", "no such file"),
        (tmp_path, "not a regular file"),
    ]:
        result = run_cli("import", "gatus", str(path), cwd=tmp_path, timeout=30)
        assert result.code == 2, (path, result.output)
        assert message in result.stderr, (path, result.stderr)


def test_the_migration_guide_shows_what_the_command_prints():
    from pathlib import Path

    from watchkeeper.engine.cli.import_cmd import render

    guide = (Path(__file__).parent.parent / "docs" / "migrating.md").read_text()
    section = guide.partition("### Before and after")[2]
    before, after = re.findall(r"```yaml\n(.*?)```", section, re.S)[:2]
    assert render(convert(parse_gatus(before)), source="config.yaml") == after
