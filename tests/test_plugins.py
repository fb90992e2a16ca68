"""The plugin core seen from outside: `plugins`, `schema`, and a third-party package."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO

BUILTIN_PROBES = {
    "http",
    "tcp",
    "dns",
    "tls",
    "postgres",
    "redis",
    "system",
    "command",
    "env",
    "heartbeat",
    "composite",
    "sentry",
    "mysql",
    "amqp",
    "mqtt",
    "nats",
    "udp",
    "icmp",
    "ssh",
    "websocket",
    "grpc",
    "smtp",
    "imap",
    "pop3",
}
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


@pytest.fixture
def with_plugin(plugin_paths):
    """The environment that makes the `ping_fake` plugin package installed."""
    return {"PYTHONPATH": plugin_paths["plugin_pkg"]}


PING_CONFIG = """
    version: 1
    checks:
      gateway:
        probe: ping_fake
        host: 192.0.2.1
        count: 5
        interval: 500ms
        thresholds:
          - {metric: rtt, above: 200ms, severity: high}
    notifiers:
      pager: {type: pager_fake, api_token: "${PAGER_API_TOKEN:-}", team: infra}
    routes:
      - match: {}
        notify: [pager]
    """


# --- built-ins ---------------------------------------------------------------------------


def test_plugins_lists_every_builtin_with_its_types(cli):
    result = cli("plugins", "--format", "json")
    assert result.code == 0, result.output
    rows = result.json()
    assert all(set(row) == {"name", "origin", "types"} for row in rows)
    assert {row["origin"] for row in rows} == {"built-in"}
    probes = {name for row in rows for name in row["types"].get("probe", [])}
    assert probes == BUILTIN_PROBES
    http = next(row for row in rows if row["name"] == "watchkeeper.plugins.probes.http")
    assert http == {
        "name": "watchkeeper.plugins.probes.http",
        "origin": "built-in",
        "types": {"probe": ["http"]},
    }
    kinds = {kind for row in rows for kind in row["types"]}
    assert kinds == {
        "probe",
        "notifier",
        "backup source",
        "backup destination",
        "state store",
        "action",
    }
    assert cli("plugins", "--third-party", "--format", "json").json() == []


def test_schema_has_every_builtin_probe_in_the_checks_union(cli):
    result = cli("schema")
    assert result.code == 0, result.output
    schema = json.loads(result.stdout)
    union = schema["properties"]["checks"]["patternProperties"][NAME_PATTERN]
    assert union["discriminator"]["propertyName"] == "probe"
    assert set(union["discriminator"]["mapping"]) == BUILTIN_PROBES
    assert len(union["oneOf"]) == len(BUILTIN_PROBES)
    http = schema["$defs"]["HttpCheck"]
    assert http["properties"]["probe"]["const"] == "http"
    assert {"url", "expect", "thresholds", "schedule"} <= set(http["properties"])
    assert http["additionalProperties"] is False


def test_committed_schema_is_fresh(cli):
    result = cli("schema", "--check")
    assert result.code == 0, (
        "schema/monitor.schema.json is stale; refresh it with `watchkeeper schema --write` "
        f"and commit it.\n{result.output}"
    )
    assert (REPO / "schema" / "monitor.schema.json").read_text() == cli("schema").stdout


def test_a_builtin_can_be_disabled(cli, write_config):
    write_config("version: 1\nchecks:\n  s: {probe: sentry, org: o, project: p}\n")
    env = {"WATCHKEEPER_DISABLE_PLUGINS": "probes.sentry"}
    rows = cli("plugins", "--format", "json", env=env).json()
    assert "watchkeeper.plugins.probes.sentry" not in {row["name"] for row in rows}
    result = cli("validate", env=env)
    assert result.code == 1
    assert "monitor.yaml:3:14: checks.s.probe: unknown probe 'sentry'" in result.stdout


# --- a third-party plugin ----------------------------------------------------------------


def test_third_party_plugin_is_listed_with_its_distribution(cli, with_plugin):
    result = cli("plugins", "--third-party", "--format", "json", env=with_plugin)
    assert result.code == 0, result.output
    assert result.json() == [
        {
            "name": "ping_fake",
            "origin": "watchkeeper-ping-fake 0.3.1",
            "types": {"probe": ["ping_fake"], "notifier": ["pager_fake"]},
        }
    ]
    table = cli("plugins", env=with_plugin)
    assert table.code == 0
    row = next(line for line in table.stdout.splitlines() if line.startswith("ping_fake "))
    assert row.split() == [
        "ping_fake",
        "watchkeeper-ping-fake",
        "0.3.1",
        "probe:",
        "ping_fake;",
        "notifier:",
        "pager_fake",
    ]
    assert "watchkeeper.plugins.probes.http" in table.stdout


def test_third_party_types_join_the_schema(cli, with_plugin):
    result = cli("schema", env=with_plugin)
    assert result.code == 0, result.output
    schema = json.loads(result.stdout)
    checks = schema["properties"]["checks"]["patternProperties"][NAME_PATTERN]
    assert set(checks["discriminator"]["mapping"]) == BUILTIN_PROBES | {"ping_fake"}
    ping = schema["$defs"]["PingFakeCheck"]
    assert ping["description"] == "Pretend to ping a host."
    assert ping["properties"]["host"]["description"] == "Host to ping."
    assert {"probe", "host", "count", "interval", "thresholds", "schedule"} <= set(
        ping["properties"]
    )
    notifiers = schema["properties"]["notifiers"]["patternProperties"][NAME_PATTERN]
    assert "pager_fake" in notifiers["discriminator"]["mapping"]

    # the committed schema describes the built-ins only, so it is now stale
    stale = cli("schema", "--check", env=with_plugin)
    assert stale.code == 1
    assert "is stale" in stale.stderr
    assert "Refresh it with: watchkeeper schema --write" in stale.stderr


def test_config_using_a_third_party_plugin_validates(cli, write_config, with_plugin):
    write_config(PING_CONFIG)
    result = cli("validate", env=with_plugin)
    assert result.code == 0, result.output
    assert result.stdout == "✓ monitor.yaml is valid\n"


def test_third_party_options_are_checked_like_builtin_ones(cli, write_config, with_plugin):
    write_config(
        """
        version: 1
        checks:
          gateway:
            probe: ping_fake
            host: 192.0.2.1
            cuont: 5
            interval: 5x
          router:
            probe: ping_fake
            count: 0
        notifiers:
          pager: {type: pager_fake, api_token: "${PAGER_API_TOKEN}", taem: infra}
        """
    )
    result = cli("validate", env=with_plugin)
    assert result.code == 1
    assert result.stdout.splitlines() == [
        "monitor.yaml:6:5: checks.gateway.cuont: unknown key 'cuont'; did you mean 'count'?",
        "monitor.yaml:7:15: checks.gateway.interval: expected a duration such as 250ms, 30s, "
        "5m, 1h or 1d, got '5x'",
        "monitor.yaml:9:5: checks.router.host: missing required key 'host'",
        "monitor.yaml:10:12: checks.router.count: input should be greater than or equal to 1",
        "monitor.yaml:12:40: notifiers.pager.api_token: warning: "
        "environment variable PAGER_API_TOKEN is not set",
        "monitor.yaml:12:62: notifiers.pager.taem: unknown key 'taem'; did you mean 'team'?",
        "✗ monitor.yaml: 5 errors, 1 warning",
    ]


def test_disabling_a_third_party_plugin_by_its_entry_point_name(cli, write_config, with_plugin):
    env = {**with_plugin, "WATCHKEEPER_DISABLE_PLUGINS": "ping_fake"}
    rows = cli("plugins", "--format", "json", env=env).json()
    assert "ping_fake" not in {row["name"] for row in rows}
    assert "watchkeeper.plugins.probes.http" in {row["name"] for row in rows}

    write_config(PING_CONFIG)
    result = cli("validate", env=env)
    assert result.code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "monitor.yaml:4:12: checks.gateway.probe: unknown probe 'ping_fake' (known: amqp, command,"
    ), result.output
    assert lines[1].startswith(
        "monitor.yaml:11:17: notifiers.pager.type: unknown type 'pager_fake' (known: apprise,"
    ), result.output


@pytest.mark.parametrize("command", [["plugins"], ["schema"], ["validate"]])
def test_a_duplicate_type_name_fails_at_start_up(cli, write_config, plugin_paths, command):
    write_config("version: 1\n")
    result = cli(*command, env={"PYTHONPATH": plugin_paths["plugin_pkg_dupe"]})
    assert result.code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "error: probe type 'http' is provided by both 'watchkeeper.plugins.probes.http' and "
        "'other_http'; disable one with WATCHKEEPER_DISABLE_PLUGINS=other_http"
    )
    assert "Traceback" not in result.stderr


def test_a_duplicate_plugin_can_be_disabled(cli, write_config, plugin_paths):
    write_config("version: 1\nchecks:\n  web: {probe: http, url: http://example.com}\n")
    env = {
        "PYTHONPATH": plugin_paths["plugin_pkg_dupe"],
        "WATCHKEEPER_DISABLE_PLUGINS": "other_http",
    }
    assert cli("validate", env=env).code == 0


@pytest.mark.parametrize("command", [["schema"], ["validate"]])
def test_options_that_cannot_be_validated_fail_at_start_up_naming_the_plugin(
    cli, write_config, plugin_paths, command
):
    write_config("version: 1\nchecks:\n  web: {probe: http, url: http://example.com}\n")
    result = cli(*command, env={"PYTHONPATH": plugin_paths["plugin_pkg_badopts"]})
    assert result.code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(
        "error: probe type 'broken_fake' (module watchkeeper_badopts) has options that "
        "cannot be validated: Unable to generate pydantic-core schema for "
    ), result.stderr
    assert "Traceback" not in result.stderr


def test_a_misspelled_hook_fails_at_start_up(cli, write_config, plugin_paths):
    write_config("version: 1\n")
    env = {"PYTHONPATH": plugin_paths["plugin_pkg_typo"]}
    for command in (["plugins"], ["validate"]):
        result = cli(*command, env=env)
        assert result.code == 1, result.output
        assert result.stderr.strip() == (
            "error: plugin 'typo' implements unknown hook 'watchkeeper_probez'; "
            "did you mean 'watchkeeper_probes'?"
        )
