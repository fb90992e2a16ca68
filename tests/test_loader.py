"""Reading monitor.yaml: anchors and merges, interpolation, secret files and includes."""

from __future__ import annotations

import pytest

from watchkeeper.engine.config import loader

ANCHORS = """
    version: 1
    notifiers:
      console: {type: log}
    checks:
      api: &web
        probe: http
        url: http://example.com/api
        timeout: 3s
        labels: &team {team: web}
      home:
        <<: *web
        url: http://example.com/
      shop:
        <<: [*web]
        url: http://example.com/shop
        labels: *team
    routes:
      - match: {labels: *team}
        notify: [console]
    """


def test_anchors_aliases_and_merge_keys_validate(cli, write_config):
    write_config(ANCHORS)
    result = cli("validate")
    assert result.code == 0, result.output


def test_anchors_aliases_and_merge_keys_give_the_merged_values(write_config):
    path = write_config(ANCHORS)
    loaded = loader.load(path, env={})
    assert loaded.problems == []
    checks = loaded.data["checks"]
    assert checks["home"] == {
        "probe": "http",
        "url": "http://example.com/",  # the mapping's own key wins over the merged one
        "timeout": "3s",
        "labels": {"team": "web"},
    }
    assert checks["shop"]["url"] == "http://example.com/shop"
    assert checks["shop"]["timeout"] == "3s"
    assert loaded.data["routes"][0]["match"]["labels"] == {"team": "web"}
    # a merged value is reported where it is written: at the anchor
    mark = loaded.marks.of(checks["home"], "timeout")
    assert (mark.line, mark.column) == (8, 14)
    assert loaded.marks.of(checks["home"], "url").line == 12


def test_an_error_in_an_anchor_is_reported_for_each_use_at_the_anchor(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          api: &web
            probe: http
            url: http://example.com/api
            timeout: 5x
          home:
            <<: *web
            url: http://example.com/
        """
    )
    result = cli("validate")
    assert result.code == 1
    assert result.stdout.splitlines()[:2] == [
        "monitor.yaml:6:14: checks.api.timeout: expected a duration such as 250ms, 30s, "
        "5m, 1h or 1d, got '5x'",
        "monitor.yaml:6:14: checks.home.timeout: expected a duration such as 250ms, 30s, "
        "5m, 1h or 1d, got '5x'",
    ]


# --- interpolation -----------------------------------------------------------------------


def test_variable_default_and_escape(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          a:
            probe: tcp
            host: db
            port: 5432
            timeout: ${WK_TEST_TIMEOUT:-5x}
          b:
            probe: tcp
            host: db
            port: 5432
            timeout: "$${WK_TEST_TIMEOUT}"
        """
    )
    unset = cli("validate")
    assert unset.code == 1
    # the default is used; `$${` is a literal `${` (no variable, so no unset warning)
    assert unset.stdout.splitlines()[:2] == [
        "monitor.yaml:7:14: checks.a.timeout: expected a duration such as 250ms, 30s, 5m, "
        "1h or 1d, got '5x'",
        "monitor.yaml:12:14: checks.b.timeout: expected a duration such as 250ms, 30s, 5m, "
        "1h or 1d, got '${WK_TEST_TIMEOUT}'",
    ]
    assert "not set" not in unset.output

    set_ = cli("validate", "--format", "json", env={"WK_TEST_TIMEOUT": "7s"})
    assert [p["path"] for p in set_.json()["problems"]] == ["checks.b.timeout"]


def test_interpolated_values(tmp_path, write_config):
    (tmp_path / "token.txt").write_text("s3cret-from-file\n")
    path = write_config(
        """
        version: 1
        environments:
          production: {base_url: https://example.com}
        checks:
          api:
            probe: http
            url: ${env.base_url}/health?host=${WK_HOST}
            environments: [production]
            headers:
              Authorization: "Bearer ${file:token.txt}"
              X-Literal: "$${WK_HOST} costs $$5"
              X-Default: ${WK_UNSET:-fallback}
              X-Empty-Default: ${WK_EMPTY:-fallback}
              X-Empty: "[${WK_EMPTY}]"
        """
    )
    loaded = loader.load(path, env={"WK_HOST": "web-1", "WK_EMPTY": ""})
    assert loaded.problems == []
    check = loaded.data["checks"]["api"]
    assert check["url"] == "${env.base_url}/health?host=web-1"  # kept for each environment
    assert loaded.env_refs == [(("checks", "api", "url"), "base_url")]
    assert check["headers"] == {
        "Authorization": "Bearer s3cret-from-file",
        "X-Literal": "${WK_HOST} costs $$5",
        "X-Default": "fallback",
        "X-Empty-Default": "fallback",  # `:-` treats an empty variable as unset
        "X-Empty": "[]",
    }
    assert "s3cret-from-file" in loaded.secrets
    assert "web-1" not in loaded.secrets  # WK_HOST is not named like a credential


def test_values_of_credential_variables_are_secrets(write_config):
    path = write_config(
        """
        version: 1
        server:
          admin_token: ${ADMIN_API_KEY}
        sentry:
          dsn: ${SENTRY_DSN:-https://public@sentry.example.com/1}
        """
    )
    loaded = loader.load(path, env={"ADMIN_API_KEY": "adm-123456"})
    assert loaded.secrets == {"adm-123456", "https://public@sentry.example.com/1"}


def test_malformed_reference_is_an_error(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          a: {probe: tcp, host: "${1HOST}", port: 1}
        """
    )
    result = cli("validate")
    assert result.code == 1
    assert result.stdout.startswith(
        "monitor.yaml:3:25: checks.a.host: `${1HOST}` is not a variable reference; "
        "expected ${NAME}, ${NAME:-default}, ${env.key} or ${file:/path}"
    ), result.output


def test_secret_file(cli, write_config, tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "port").write_text("5432\n")
    write_config(
        f"""
        version: 1
        checks:
          relative:
            probe: tcp
            host: db
            port: ${{file:secrets/port}}
          absolute:
            probe: tcp
            host: db
            port: ${{file:{tmp_path}/secrets/port}}
        """
    )
    assert cli("validate").code == 0

    write_config(
        """
        version: 1
        checks:
          a:
            probe: tcp
            host: db
            port: ${file:secrets/missing}
        """
    )
    missing = cli("validate")
    assert missing.code == 0, missing.output
    assert missing.stdout.startswith(
        "monitor.yaml:6:11: checks.a.port: warning: cannot read secret file "
    ), missing.output
    assert "secrets/missing" in missing.stdout
    assert cli("validate", "--strict").code == 1


# --- includes ----------------------------------------------------------------------------


@pytest.fixture
def split_config(write_config):
    write_config(
        """
        version: 1
        include: [checks/*.yaml]
        notifiers:
          console: {type: log}
        routes:
          - match: {severity: critical}
            notify: [pager]
        """
    )
    write_config(
        """
        checks:
          api:
            probe: http
            url: http://example.com/api
        notifiers:
          pager: {type: log, level: error}
        """,
        "checks/a.yaml",
    )
    write_config(
        """
        checks:
          database:
            probe: tcp
            host: db
            port: 5432
            depends_on: [api]
        routes:
          - match: {}
            notify: [console]
        """,
        "checks/b.yaml",
    )


def test_include_merges_sections_from_several_files(cli, split_config, tmp_path):
    assert cli("validate").code == 0

    loaded = loader.load(tmp_path / "monitor.yaml", env={})
    assert loaded.problems == []
    data = loaded.data
    assert list(data["checks"]) == ["api", "database"]
    assert list(data["notifiers"]) == ["console", "pager"]
    assert [r["notify"] for r in data["routes"]] == [["pager"], ["console"]]
    mark = loaded.marks.of(data["checks"], "database", value=False)
    assert (mark.file.endswith("checks/b.yaml"), mark.line, mark.column) == (True, 2, 3)
    mark = loaded.marks.of(data["routes"], 1)
    assert (mark.file.endswith("checks/b.yaml"), mark.line) == (True, 8)


def test_errors_in_included_files_point_into_them(cli, split_config, write_config):
    write_config(
        """
        checks:
          database:
            probe: tcp
            host: db
            port: 5432
            depends_on: [apii]
        routes:
          - match: {}
            notify: [consle]
        """,
        "checks/b.yaml",
    )
    result = cli("validate")
    assert result.code == 1
    assert result.stdout.splitlines()[:2] == [
        "checks/b.yaml:6:18: checks.database.depends_on[0]: unknown check 'apii'; "
        "did you mean 'api'?",
        "checks/b.yaml:9:14: routes[1].notify[0]: unknown notifier 'consle'; "
        "did you mean 'console'? (defined: console, pager)",
    ]


def test_a_check_defined_in_two_files_names_both_places(cli, split_config, write_config):
    write_config(
        """
        checks:
          api:
            probe: tcp
            host: api
            port: 443
        """,
        "checks/c.yaml",
    )
    result = cli("validate")
    assert result.code == 1
    assert result.stdout.startswith(
        "checks/c.yaml:2:3: checks.api: 'api' is already defined at checks/a.yaml:2\n"
    ), result.output


def test_an_included_file_cannot_set_server(cli, split_config, write_config):
    write_config(
        """
        checks:
          extra: {probe: tcp, host: x, port: 1}
        server:
          listen: 0.0.0.0:80
        """,
        "checks/c.yaml",
    )
    result = cli("validate")
    assert result.code == 1
    assert result.stdout.startswith(
        "checks/c.yaml:3:1: server: an included file may only add checks, notifiers, actions, "
        "escalation, tasks, slos, environments, routes, maintenance and backups; "
        "'server' belongs in the main file\n"
    ), result.output


def test_an_include_matching_nothing_is_an_error(cli, write_config):
    write_config(
        """
        version: 1
        include: [checks/*.yaml, more.yaml]
        """
    )
    result = cli("validate")
    assert result.code == 1
    assert result.stdout.splitlines()[:2] == [
        "monitor.yaml:2:11: include[0]: no file matches 'checks/*.yaml'",
        "monitor.yaml:2:26: include[1]: no file matches 'more.yaml'",
    ]


def test_yaml_errors_in_an_included_file(cli, split_config, write_config):
    write_config("checks:\n  api:\n    probe: tcp\n  api: {}\n", "checks/c.yaml")
    write_config("checks: {x: [\n", "checks/d.yaml")
    result = cli("validate")
    assert result.code == 1
    assert result.stdout.splitlines()[:3] == [
        "checks/c.yaml:2:3: checks.api: 'api' is already defined at checks/a.yaml:2",
        "checks/c.yaml:4:3: checks.api: duplicate key 'api' (first defined at line 2)",
        "checks/d.yaml:2:1: YAML syntax error: did not find expected node content "
        "(while parsing a flow node)",
    ], result.output


def test_a_key_holding_a_reference_is_reported_where_it_is_written(cli, write_config):
    # keys are names, read as written: `${...}` in one is not a reference
    write_config(
        """
        version: 1
        checks:
          "api-${REGION}":
            url: http://example.com
        """
    )
    result = cli("validate")
    assert result.code == 1
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("monitor.yaml:3:3: checks.api-${REGION}: string should match pattern")
        for line in lines
    ), result.output
    assert any(
        line.startswith("monitor.yaml:4:5: checks.api-${REGION}: missing key 'probe'")
        for line in lines
    ), result.output


def test_an_included_backups_section_when_the_main_one_is_not_a_mapping(cli, write_config):
    write_config(
        """
        version: 1
        include: [more/*.yaml]
        backups: 5
        """
    )
    write_config("backups:\n  destinations:\n    disk: {type: local, path: /srv}\n", "more/a.yaml")
    write_config("backups: [disk]\n", "more/b.yaml")
    result = cli("validate")
    assert result.code == 1, result.output
    assert result.stdout.splitlines()[:2] == [
        "monitor.yaml:3:10: backups: expected a mapping, got 5",
        "more/b.yaml:1:10: backups: expected a mapping of destinations, jobs and drills",
    ], result.output
