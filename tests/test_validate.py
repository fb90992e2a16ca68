"""`watchkeeper validate`, the CI dry run: every mistake with its file, line, column and path."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli


def _dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# Each case: the files of a config (`monitor.yaml` and any it includes) and the one problem
# validate must report, as `file:line:col: key.path: message` (a long message may be cut
# short: the fragment must start the reported line). The position is the offending value's,
# or for an unknown or duplicate key, the key's.
CASES = [
    pytest.param(
        """
        version: 1
        checks:
          web:
            probe: http
            url: http://example.com: 8080
        """,
        "monitor.yaml:5:28: YAML syntax error: mapping values are not allowed in this context",
        id="yaml-syntax",
    ),
    pytest.param(
        """
        version: 1
        checks:
          web: {probe: http, url: "http://example.com}
        notifiers: {}
        """,
        "monitor.yaml:5:1: YAML syntax error: found unexpected end of stream "
        "(while scanning a quoted scalar that starts at line 3, column 27)",
        id="yaml-unclosed-quote",
    ),
    pytest.param(
        "version: 1\nchecks:\n  web:\n\tprobe: http\n",
        "monitor.yaml:4:1: YAML syntax error: a tab character; indent with spaces, not tabs",
        id="tab-indentation",
    ),
    pytest.param(
        """
        version: 1
        checks:
          web:
            probe: http
            url: http://example.com
          web:
            probe: tcp
            host: example.com
            port: 443
        """,
        "monitor.yaml:6:3: checks.web: duplicate key 'web' (first defined at line 3)",
        id="duplicate-check",
    ),
    pytest.param(
        """
        version: 1
        checks:
          web:
            probe: http
            url: http://example.com
            url: http://example.org
        """,
        "monitor.yaml:6:5: checks.web.url: duplicate key 'url' (first defined at line 5)",
        id="duplicate-option",
    ),
    pytest.param(
        """
        version: 1
        chekcs: {}
        """,
        "monitor.yaml:2:1: chekcs: unknown key 'chekcs'; did you mean 'checks'?",
        id="unknown-top-level-key",
    ),
    pytest.param(
        """
        version: 1
        checks:
          web:
            probe: http
            url: http://example.com
            schedul: {every: 5m}
        """,
        "monitor.yaml:6:5: checks.web.schedul: unknown key 'schedul'; did you mean 'schedule'?",
        id="unknown-check-key",
    ),
    pytest.param(
        """
        version: 1
        checks:
          api:
            probe: http
            url: http://example.com
            expect: {stauts: 200}
        """,
        "monitor.yaml:6:14: checks.api.expect.stauts: unknown key 'stauts'; did you mean 'status'?",
        id="unknown-nested-key",
    ),
    pytest.param(
        """
        version: 1
        checks:
          web:
            probe: htpp
            url: http://example.com
        """,
        "monitor.yaml:4:12: checks.web.probe: unknown probe 'htpp'; did you mean 'http'? "
        "(known: amqp, command, composite, dns, env, grpc, heartbeat, http, icmp, imap, mqtt, "
        "mysql, nats, pop3, postgres, redis, sentry, smtp, ssh, system, tcp, tls, udp, "
        "websocket; `watchkeeper plugins` lists what is installed)",
        id="unknown-probe",
    ),
    pytest.param(
        """
        version: 1
        notifiers:
          alerts: {type: slak, webhook_url: https://hooks.example.com/x}
        """,
        "monitor.yaml:3:18: notifiers.alerts.type: unknown type 'slak'; did you mean 'slack'?",
        id="unknown-notifier-type",
    ),
    pytest.param(
        """
        version: 1
        checks:
          web:
            url: http://example.com
        """,
        "monitor.yaml:4:5: checks.web: missing key 'probe' saying which plugin this is",
        id="missing-probe",
    ),
    pytest.param(
        """
        version: 1
        checks:
          web:
            probe: http
            timeout: 5s
        """,
        "monitor.yaml:4:5: checks.web.url: missing required key 'url'",
        id="missing-url",
    ),
    pytest.param(
        """
        version: 1
        checks:
          web:
            probe: http
            url: http://example.com
            timeout: 5x
        """,
        "monitor.yaml:6:14: checks.web.timeout: expected a duration such as 250ms, 30s, 5m, "
        "1h or 1d, got '5x'",
        id="bad-duration",
    ),
    pytest.param(
        """
        version: 1
        checks:
          web: {probe: http, url: http://example.com}
        slos:
          web-availability: {check: web, objective: 185%}
        """,
        "monitor.yaml:5:45: slos.web-availability.objective: expected a percentage "
        "between 0% and 100%",
        id="bad-percentage",
    ),
    pytest.param(
        """
        version: 1
        checks:
          db:
            probe: tcp
            host: db
            port: eighty
        """,
        "monitor.yaml:6:11: checks.db.port: input should be a valid integer, unable to parse "
        "string as an integer, got 'eighty'",
        id="bad-integer",
    ),
    pytest.param(
        """
        version: 1
        checks:
          web:
            probe: http
            url: http://example.com
            schedule: {cron: "*/5 * * *"}
        """,
        "monitor.yaml:6:22: checks.web.schedule.cron: invalid cron expression '*/5 * * *': "
        "expected 5 fields (minute hour day-of-month month day-of-week), got 4",
        id="cron-four-fields",
    ),
    pytest.param(
        """
        version: 1
        notifiers:
          console: {type: log}
        tasks:
          review:
            schedule: {cron: "61 9 * * *"}
            notify: [console]
        """,
        "monitor.yaml:6:22: tasks.review.schedule.cron: invalid cron expression '61 9 * * *': "
        "minute '61' is out of range; expected 0-59",
        id="cron-minute-61",
    ),
    pytest.param(
        """
        version: 1
        defaults:
          timezone: Europe/Berln
        """,
        "monitor.yaml:3:13: defaults.timezone: unknown timezone 'Europe/Berln'; "
        "did you mean 'Europe/Berlin'?",
        id="bad-timezone",
    ),
    pytest.param(
        """
        version: 1
        notifiers:
          alerts: {type: log}
        routes:
          - match: {severity: critical}
            notify: [alert]
        """,
        "monitor.yaml:6:14: routes[0].notify[0]: unknown notifier 'alert'; "
        "did you mean 'alerts'? (defined: alerts)",
        id="unknown-notifier-in-route",
    ),
    pytest.param(
        """
        version: 1
        notifiers:
          alerts: {type: log}
        routes:
          - match: {}
            notify: [alerts]
            escalate: standrd
        escalation:
          standard:
            - {after: 15m, notify: [alerts]}
        """,
        "monitor.yaml:7:15: routes[0].escalate: unknown escalation policy 'standrd'; "
        "did you mean 'standard'? (defined: standard)",
        id="unknown-escalation-policy",
    ),
    pytest.param(
        """
        version: 1
        actions:
          restart-app: {type: command, argv: [systemctl, restart, app]}
        escalation:
          standard:
            - {after: 0s, actions: [restart-ap]}
        """,
        "monitor.yaml:6:29: escalation.standard[0].actions[0]: unknown action 'restart-ap'; "
        "did you mean 'restart-app'? (defined: restart-app)",
        id="unknown-action-in-escalation",
    ),
    pytest.param(
        """
        version: 1
        checks:
          api:
            probe: http
            url: http://example.com
            depends_on: [databse]
          database:
            probe: tcp
            host: db
            port: 5432
        """,
        "monitor.yaml:6:18: checks.api.depends_on[0]: unknown check 'databse'; "
        "did you mean 'database'?",
        id="unknown-check-in-depends-on",
    ),
    pytest.param(
        """
        version: 1
        checks:
          api:
            probe: http
            url: http://example.com
            depends_on: [database]
          database:
            probe: tcp
            host: db
            port: 5432
            depends_on: [api]
        """,
        "monitor.yaml:11:18: checks.database.depends_on[0]: depends_on forms a cycle: "
        "api -> database -> api",
        id="depends-on-cycle",
    ),
    pytest.param(
        """
        version: 1
        checks:
          api: {probe: http, url: http://example.com}
          endpoints-down:
            probe: composite
            of: [api, hoem]
            failing: {at_least: 2}
        """,
        "monitor.yaml:6:15: checks.endpoints-down.of[1]: unknown check 'hoem'",
        id="unknown-check-in-composite",
    ),
    pytest.param(
        """
        version: 1
        environments:
          production: {base_url: https://example.com}
          staging: {base_url: https://staging.example.com}
        checks:
          api:
            probe: http
            url: ${env.base_url}/health
            environments: [production, stagin]
        """,
        "monitor.yaml:9:32: checks.api.environments[1]: unknown environment 'stagin'; "
        "did you mean 'staging'? (defined: production, staging)",
        id="unknown-environment",
    ),
    pytest.param(
        """
        version: 1
        environments:
          production: {base_url: https://example.com}
        checks:
          api:
            probe: http
            url: ${env.base_ur}/health
            environments: [production]
        """,
        "monitor.yaml:7:10: checks.api.url: environment 'production' has no key 'base_ur' "
        "(it has: base_url)",
        id="unknown-env-key",
    ),
    pytest.param(
        """
        version: 1
        maintenance:
          - name: migration
            start: 2026-12-10T03:00:00Z
            end: 2026-12-10T01:00:00Z
        """,
        "monitor.yaml:5:10: maintenance[0].end: the window must end after it starts",
        id="window-ends-before-start",
    ),
    pytest.param(
        """
        version: 1
        checks:
          api:
            probe: http
            url: http://example.com
            severity: critcal
        """,
        "monitor.yaml:6:15: checks.api.severity: severity 'critcal' is not declared; "
        "did you mean 'critical'? (severities: critical, high, medium, warning, low, info)",
        id="undeclared-severity",
    ),
    pytest.param(
        """
        version: 1
        notifiers:
          alerts: {type: log}
        routes:
          - match: {severity: ">=hihg"}
            notify: [alerts]
        """,
        "monitor.yaml:5:23: routes[0].match.severity: severity 'hihg' is not declared; "
        "did you mean 'high'?",
        id="undeclared-severity-in-route",
    ),
    pytest.param(
        """
        version: 1
        checks:
          api:
            probe: http
            url: http://example.com
            thresholds:
              - {name: slow, metric: response_time, above: 2s, severity: warning}
              - {name: slow, metric: body_size, above: 5MB, severity: high}
        """,
        "monitor.yaml:8:9: checks.api.thresholds[1]: tiers of rule 'slow' must share one "
        "metric and one direction: thresholds[0] is response_time above, this is "
        "body_size above",
        id="threshold-tiers-differ",
    ),
    pytest.param(
        """
        version: 1
        checks:
          api:
            probe: http
            url: http://example.com
            thresholds:
              - {metric: error_rate, above: 5%}
        """,
        "monitor.yaml:7:9: checks.api.thresholds[0]: error_rate is computed over a `window`; "
        "add e.g. window: 15m",
        id="error-rate-without-window",
    ),
    pytest.param(
        """
        version: 1
        checks:
          nightly:
            probe: heartbeat
            expect_every: {cron: "0 2 * * *"}
            schedule: {every: 5m}
        """,
        "monitor.yaml:6:5: checks.nightly.schedule: a heartbeat check has no `schedule`",
        id="heartbeat-with-schedule",
    ),
    pytest.param(
        """
        version: 1
        backups:
          destinations:
            local: {type: local, path: backups}
          jobs:
            config:
              source: {type: files, paths: [monitor.yaml]}
              schedule: {cron: "0 2 * * *"}
              to: [local, clod]
        """,
        "monitor.yaml:9:19: backups.jobs.config.to[1]: unknown destination 'clod' (defined: local)",
        id="unknown-backup-destination",
    ),
    pytest.param(
        """
        version: 1
        backups:
          destinations:
            local: {type: local, path: backups}
          jobs:
            database:
              source: {type: postgres, dsn: postgresql://localhost/app}
              schedule: {cron: "0 2 * * *"}
              to: [local]
          drills:
            weekly-restore:
              job: databse
              schedule: {cron: "0 4 * * MON"}
        """,
        "monitor.yaml:12:12: backups.drills.weekly-restore.job: unknown backup job 'databse'; "
        "did you mean 'database'? (defined: database)",
        id="drill-of-unknown-job",
    ),
    pytest.param(
        "version: 2\n",
        "monitor.yaml:1:10: version: expected 1, got 2",
        id="version-2",
    ),
    pytest.param(
        """
        - version: 1
        - checks: {}
        """,
        "monitor.yaml:1:1: the file must be a mapping of sections (version, checks, ...)",
        id="list-not-mapping",
    ),
    pytest.param(
        "",
        "monitor.yaml:1:1: version: missing required key 'version'",
        id="empty-file",
    ),
    pytest.param(
        """
        version: 1
        include: checks/web.yaml
        """,
        "monitor.yaml:2:10: include: expected a list, got 'checks/web.yaml'",
        id="include-not-a-list",
    ),
    pytest.param(
        {
            "monitor.yaml": """
                version: 1
                include: [checks/*.yaml]
                notifiers:
                  console: {type: log}
                """,
            "checks/web.yaml": """
                # checks of the web tier
                checks:
                  web:
                    probe: http
                    url: http://example.com
                    timeout: 5x
                """,
        },
        "checks/web.yaml:6:14: checks.web.timeout: expected a duration such as 250ms, 30s, 5m, "
        "1h or 1d, got '5x'",
        id="error-in-included-file",
    ),
]

FRAGMENT = re.compile(
    r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?:(?P<path>[\w.@\[\]-]+): )?(?P<message>.+)$"
)


@pytest.fixture(scope="module")
def cases_dir(tmp_path_factory) -> Path:
    """Write every case into its own folder, named by its id."""
    root = tmp_path_factory.mktemp("cases")
    for case in CASES:
        files = case.values[0]
        if isinstance(files, str):
            files = {"monitor.yaml": files}
        for name, text in files.items():
            path = root / case.id / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_dedent(text))
    return root


@pytest.fixture(scope="module")
def results(cases_dir):
    """Validate each case on its own (text), and all of them in one run per machine format.

    The runs are independent processes, so they run side by side: the table stays cheap.
    """
    files = [f"{case.id}/monitor.yaml" for case in CASES]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        each = {
            case.id: pool.submit(run_cli, "validate", cwd=cases_dir / case.id) for case in CASES
        }
        as_json = pool.submit(run_cli, "validate", "--format", "json", *files, cwd=cases_dir)
        as_github = pool.submit(run_cli, "validate", "--format", "github", *files, cwd=cases_dir)
        each = {name: future.result() for name, future in each.items()}
        as_json, as_github = as_json.result(), as_github.result()
    assert as_json.code == 1, as_json.output
    assert as_github.code == 1, as_github.output
    return each, as_json.json(), as_github.stdout.splitlines()


@pytest.mark.parametrize(("files", "expected"), CASES)
def test_malformed_config_reported_at_its_place(files, expected, request, results):
    case = request.node.callspec.id
    each, as_json, as_github = results
    result = each[case]
    assert result.code == 1, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith(expected) for line in lines), result.output

    where = FRAGMENT.match(expected).groupdict()
    assert as_json["valid"] is False
    mine = [p for p in as_json["problems"] if p["file"].startswith(f"{case}/")]
    assert len(mine) == 1, mine  # exactly the one problem: no noise around it
    problem = mine[0]
    assert set(problem) == {"file", "line", "column", "path", "level", "message"}
    assert problem["message"].startswith(where["message"]), problem
    assert problem == {
        "file": f"{case}/{where['file']}",
        "line": int(where["line"]),
        "column": int(where["column"]),
        "path": where["path"] or "",
        "level": "error",
        "message": problem["message"],
    }

    annotation = (
        f"::error file={case}/{where['file']},line={where['line']},col={where['column']}::"
        + (f"{where['path']}: " if where["path"] else "")
        + where["message"].replace("%", "%25")
    )
    assert any(line.startswith(annotation) for line in as_github), as_github


def test_every_problem_reported_in_one_pass_sorted_by_position(cli, write_config):
    write_config(
        """
        version: 1
        chekcs: {}
        checks:
          api:
            probe: http
            url: http://example.com
            timeout: 5x
            severity: critcal
            depends_on: [databse]
          database:
            probe: tcp
            host: db
            port: eighty
            port: 5432
        notifiers:
          alerts: {type: log}
        routes:
          - match: {}
            notify: [alert]
            escalate: standard
        """
    )
    result = cli("validate", "--format", "json")
    assert result.code == 1, result.output
    found = [(p["line"], p["column"], p["path"]) for p in result.json()["problems"]]
    assert found == [
        (2, 1, "chekcs"),  # schema: unknown key
        (7, 14, "checks.api.timeout"),  # schema: bad duration
        (8, 15, "checks.api.severity"),  # cross-reference: undeclared severity
        (9, 18, "checks.api.depends_on[0]"),  # cross-reference: unknown check
        (13, 11, "checks.database.port"),  # schema: not a number
        (14, 5, "checks.database.port"),  # YAML: duplicate key
        (19, 14, "routes[0].notify[0]"),  # cross-reference: unknown notifier
        (20, 15, "routes[0].escalate"),  # cross-reference: unknown escalation policy
    ]
    text = cli("validate")
    assert text.code == 1
    assert "✗ monitor.yaml: 8 errors" in text.output


def test_several_files_at_once_report_each_file(cli, write_config):
    write_config("version: 1\n", "good.yaml")
    write_config("version: 1\nchecks:\n  web: {probe: http}\n", "bad.yaml")
    result = cli("validate", "good.yaml", "bad.yaml")
    assert result.code == 1
    assert result.stdout.startswith("bad.yaml:3:8: checks.web.url: missing required key 'url'")


# --- warnings ----------------------------------------------------------------------------


def test_unset_variable_is_a_warning_naming_it_and_strict_makes_it_an_error(cli, write_config):
    write_config(
        """
        version: 1
        server:
          admin_token: ${WK_TEST_ADMIN_TOKEN}
        checks:
          db:
            probe: tcp
            host: ${WK_TEST_DB_HOST}
            port: ${WK_TEST_DB_PORT}
          api:
            probe: http
            url: http://example.com
            depends_on: [db]
        """
    )
    env = {"WK_TEST_DB_HOST": "db-host-value.internal"}
    result = cli("validate", env=env)
    assert result.code == 0, result.output
    assert result.stdout.splitlines() == [
        "monitor.yaml:3:16: server.admin_token: warning: "
        "environment variable WK_TEST_ADMIN_TOKEN is not set",
        # an unset variable where a number belongs: still only the warning
        "monitor.yaml:8:11: checks.db.port: warning: "
        "environment variable WK_TEST_DB_PORT is not set",
        "✓ monitor.yaml is valid (2 warnings)",
    ]
    assert "db-host-value.internal" not in result.output

    as_json = cli("validate", "--format", "json", env=env).json()
    assert as_json == {
        "valid": True,
        "problems": [
            {
                "file": "monitor.yaml",
                "line": 3,
                "column": 16,
                "path": "server.admin_token",
                "level": "warning",
                "message": "environment variable WK_TEST_ADMIN_TOKEN is not set",
            },
            {
                "file": "monitor.yaml",
                "line": 8,
                "column": 11,
                "path": "checks.db.port",
                "level": "warning",
                "message": "environment variable WK_TEST_DB_PORT is not set",
            },
        ],
    }
    github = cli("validate", "--format", "github", env=env)
    assert github.code == 0
    assert github.stdout.splitlines()[0] == (
        "::warning file=monitor.yaml,line=3,col=16::server.admin_token: "
        "environment variable WK_TEST_ADMIN_TOKEN is not set"
    )

    strict = cli("validate", "--strict", "--format", "json", env=env)
    assert strict.code == 1, strict.output
    assert strict.json()["valid"] is False
    assert [p["level"] for p in strict.json()["problems"]] == ["error", "error"]


def test_error_rate_rule_one_run_can_trip_is_warned_about(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          api:
            probe: http
            url: http://example.com
            schedule: {every: 1m}
            thresholds:
              - {metric: error_rate, window: 15m, above: 5%, severity: critical}
              - {metric: error_rate, window: 1h, above: 5%, severity: high}
        """
    )
    result = cli("validate")
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    # 15 runs: one failure is 7%, above 5%; 60 runs: one failure is 2%, fine
    assert lines[0].startswith(
        "monitor.yaml:8:9: checks.api.thresholds[0]: warning: one failed run moves "
        "error_rate by 7% over 15m (about 15 runs), more than the 5.0% threshold"
    ), result.output
    assert not any("thresholds[1]" in line for line in lines)
    strict = cli("validate", "--strict")
    assert strict.code == 1
    assert "checks.api.thresholds[0]: one failed run" in strict.stdout


@pytest.mark.parametrize("order", ["forwards", "backwards"])
def test_a_long_depends_on_chain_is_checked_and_a_long_cycle_reported(cli, write_config, order):
    # 3,000 checks each depending on the next (or the previous): deeper than Python's
    # recursion limit, in either order of the file
    n = 3000
    lines = ["version: 1", "checks:"]
    for i in range(n):
        parent = i + 1 if order == "backwards" else i - 1
        lines += [f"  c{i}:", "    probe: tcp", "    host: db.internal", "    port: 5432"]
        if 0 <= parent < n:
            lines.append(f"    depends_on: [c{parent}]")
    write_config("\n".join(lines) + "\n")
    result = cli("validate")
    assert (result.code, result.stdout) == (0, "✓ monitor.yaml is valid\n"), result.output

    # close the chain into one cycle of 3,000 checks: reported once, where it closes
    end = n - 1 if order == "backwards" else 0
    start = 0 if order == "backwards" else n - 1
    lines.insert(lines.index(f"  c{end}:") + 4, f"    depends_on: [c{start}]")
    write_config("\n".join(lines) + "\n")
    result = cli("validate", "--format", "json")
    assert result.code == 1, result.output
    problems = result.json()["problems"]
    assert len(problems) == 1, problems
    assert problems[0]["message"].startswith("depends_on forms a cycle: c")
    assert problems[0]["message"].count(" -> ") == n


# --- exit codes, entry points, the config path ------------------------------------------


def test_exit_codes(cli, write_config):
    write_config("version: 1\n")
    valid = cli("validate")
    assert (valid.code, valid.stdout) == (0, "✓ monitor.yaml is valid\n")
    assert cli("validate", "--format", "json").json() == {"valid": True, "problems": []}

    missing = cli("-c", "nope.yaml", "validate")
    assert missing.code == 2
    assert "nope.yaml: no such file" in missing.stderr
    assert missing.stdout == ""

    usage = cli("validate", "--no-such-option")
    assert usage.code == 2
    assert "No such option: --no-such-option" in usage.output


def test_starter_config_in_the_repo_is_valid(cli):
    result = cli("-c", str(REPO / "monitor.yaml"), "validate", "--format", "json")
    assert result.code == 0, result.output
    assert result.json()["valid"] is True


def test_validate_imports_no_event_loop_and_no_client_library():
    """validate imports the plugins a file names to learn their options (`watchkeeper
    schema` every one); what a plugin runs on (asyncio, httpx, database and mail clients)
    waits until it runs, so CI does not pay for it."""
    import subprocess

    runtime = ["asyncio", "httpx", "h11", "psycopg", "redis", "aiosmtplib", "sentry_sdk", "dns"]
    runtime += ["psutil", "obstore", "pyrage", "jinja2", "starlette", "hypercorn"]
    code = textwrap.dedent(
        f"""
        import sys
        from watchkeeper.engine.config.validation import validate
        result = validate({str(REPO / "examples" / "infinite-idea.yaml")!r}, env={{}})
        assert result.config is not None and not result.errors, result.problems
        from watchkeeper.engine.config.validation import config_model
        config_model()  # every plugin's options, as `watchkeeper schema` builds them
        print(" ".join(m for m in {runtime!r} if m in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], "import these where the plugin runs, not at module level"


def test_console_script_works_like_python_m(tmp_path, write_config):
    import subprocess

    write_config("version: 1\nchekcs: {}\n")
    script = Path(sys.executable).with_name("watchkeeper")
    proc = subprocess.run(
        [str(script), "validate"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    module = run_cli("validate", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (module.code, module.stdout)
    assert module.code == 1
    assert "monitor.yaml:2:1: chekcs: unknown key 'chekcs'" in module.stdout


def test_watchkeeper_config_selects_the_file_and_c_overrides_it(cli, write_config):
    write_config("version: 1\nchekcs: {}\n", "ci/other.yaml")
    write_config("version: 1\n", "plain.yaml")
    chosen = cli("validate", env={"WATCHKEEPER_CONFIG": "ci/other.yaml"})
    assert chosen.code == 1
    assert chosen.stdout.startswith("ci/other.yaml:2:1: chekcs: unknown key")

    overridden = cli("-c", "plain.yaml", "validate", env={"WATCHKEEPER_CONFIG": "ci/other.yaml"})
    assert overridden.code == 0, overridden.output

    missing = cli("validate", env={"WATCHKEEPER_CONFIG": "gone.yaml"})
    assert missing.code == 2
    assert "gone.yaml: no such file" in missing.stderr


def test_output_is_the_json_shape_documented(cli, write_config):
    write_config("version: 1\nchecks:\n  web: {probe: http, url: x, timeout: 5x}\n")
    result = cli("validate", "--format", "json")
    assert result.code == 1
    document = json.loads(result.stdout)
    assert list(document) == ["valid", "problems"]
    assert [list(p) for p in document["problems"]] == [
        ["file", "line", "column", "path", "level", "message"]
    ]
