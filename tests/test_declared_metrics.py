"""Declared metrics: `validate` holds thresholds to what each check reports.

Every probe declares its metrics (name, unit kind, labels); `validate` refuses a rule on
a metric the check does not report, a value whose unit cannot fit the metric and a
`where` on a label it lacks, each at the rule's line and column. Real probe runs report
only what their probe declares, and docs/probes.md's tables come from the declarations.
"""

from __future__ import annotations

import json
import os
import textwrap

import jsonschema
import pytest

from tests.conftest import REPO
from tests.plugin_site import install
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run import declared_metrics
from watchkeeper.engine.run.declared_metrics import metric_kind, undeclared
from watchkeeper.engine.run.probe import METRIC_KINDS, Metric
from watchkeeper.engine.testing import HttpTestServer, TcpTestServer, check_once, make_certificates

PROBES = registry().types["probe"]
BUILTIN = sorted(n for n, c in PROBES.items() if c.__module__.startswith("watchkeeper.plugins."))
DOC = REPO / "docs" / "probes.md"


def problems_at(result) -> dict[tuple[int, int], dict]:
    """The problems of `validate --format json`, by (line, column)."""
    return {(p["line"], p["column"]): p for p in result.json()["problems"]}


# --- validate refuses what can never alert -------------------------------------------------

NEVER_ALERTS = """
version: 1
checks:
  db-port:
    probe: tcp
    host: db.internal
    port: 5432
    thresholds: [{metric: conect_time, above: 500ms}]
  host:
    probe: system
    thresholds:
      - {metric: mem_usage, above: 90%}
      - {metric: memory_usage, above: 2s, severity: high}
      - {metric: disk_usage, where: {mount: /}, above: 90%}
      - {metric: swap_usage, above: 50, severity: critical}
  api:
    probe: http
    url: https://example.com/health
    thresholds:
      - {metric: response_time, above: 50%}
      - {metric: error_rate, agg: p95, window: 1h, above: 50%, severity: high}
      - {metric: response_time, agg: count, window: 1h, above: 2s, severity: low}
      - {metric: status_code, agg: sum, window: 1h, above: 10, severity: info}
"""

# (line, column, path, message) of each problem NEVER_ALERTS must raise
EXPECTED = [
    (
        7,
        27,
        "checks.db-port.thresholds[0].metric",
        "tcp has no metric 'conect_time' (did you mean 'connect_time'?); it reports "
        "connect_time, tls_time, response_time, certificate_expiry",
    ),
    (
        11,
        18,
        "checks.host.thresholds[0].metric",
        "system has no metric 'mem_usage' (did you mean 'memory_usage'?); it reports "
        "cpu_usage, memory_usage, memory_available, swap_usage, load1, load5, load15, "
        "disk_usage, disk_free",
    ),
    (
        12,
        39,
        "checks.host.thresholds[1].above",
        "memory_usage is a ratio; 2s is a duration (write a percentage such as 90%)",
    ),
    (
        13,
        38,
        "checks.host.thresholds[2].where.mount",
        "disk_usage has no label 'mount'; its labels: path",
    ),
    (
        14,
        37,
        "checks.host.thresholds[3].above",
        "swap_usage is a ratio from 0 to 1; 50 is 5000% (did you mean 50%?)",
    ),
    (
        19,
        40,
        "checks.api.thresholds[0].above",
        "response_time is a duration; 50% is a ratio (write a duration such as 2s)",
    ),
    (
        20,
        35,
        "checks.api.thresholds[1].agg",
        "`agg` does not apply to error_rate: it is computed from the runs within the "
        "`window`; remove `agg`",
    ),
    (
        21,
        64,
        "checks.api.thresholds[2].above",
        "`agg: count` counts the results in the window, a count; 2s is a duration "
        "(write a plain number such as 10)",
    ),
]


def test_each_rule_that_never_alerts_is_refused_at_its_line(cli, write_config):
    write_config(NEVER_ALERTS)
    text = cli("validate")
    assert text.code == 1, text.output
    for line, column, path, message in EXPECTED:
        assert f"monitor.yaml:{line}:{column}: {path}: {message}" in text.stdout.splitlines()

    as_json = cli("validate", "--format", "json")
    assert as_json.code == 1
    assert as_json.json()["valid"] is False
    found = problems_at(as_json)
    for line, column, path, message in EXPECTED:
        assert found.get((line, column)) == {
            "file": "monitor.yaml",
            "line": line,
            "column": column,
            "path": path,
            "level": "error",
            "message": message,
        }
    # the sum of a status code is dubious, not meaningless: no problem on that rule
    assert not [p for p in found.values() if p["path"].startswith("checks.api.thresholds[3]")]


def test_strict_refuses_them_too(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          host:
            probe: system
            thresholds: [{metric: mem_usage, above: 90%}]
        """
    )
    result = cli("validate", "--strict", "--format", "github")
    assert result.code == 1, result.output
    assert result.stdout.startswith(
        "::error file=monitor.yaml,line=5,col=27::checks.host.thresholds[0].metric: "
        "system has no metric 'mem_usage' (did you mean 'memory_usage'?)"
    )


def test_slo_metrics_are_held_to_the_same_rules(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          api: {probe: http, url: https://example.com}
        slos:
          latency: {check: api, metric: response_tme, below: 2s, objective: 99%}
          fast: {check: api, metric: response_time, below: 20%, objective: 99%}
        """
    )
    found = problems_at(cli("validate", "--format", "json"))
    assert found[(5, 33)]["message"].startswith(
        "http has no metric 'response_tme' (did you mean 'response_time'?)"
    )
    assert found[(6, 52)]["message"] == (
        "response_time is a duration; 20% is a ratio (write a duration such as 2s)"
    )


def test_extract_adds_metrics_in_the_unit_it_names(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          api:
            probe: http
            url: https://example.com/health
            extract:
              generation_time: {path: $.metrics.aiGenerationMs, unit: ms}
              app_error_rate: {path: $.metrics.errorRate, unit: percent}
              queue_depth: {path: $.queue, unit: count}
              cache_bytes: {path: $.cache, unit: mib}
            thresholds:
              - {metric: generation_time, above: 2m, severity: medium}
              - {metric: app_error_rate, above: 5%, severity: high}
              - {metric: queue_depth, above: 1000}
              - {metric: cache_bytes, above: 512MB}
              - {metric: generation_time, above: 20%, severity: high}
              - {metric: queue_depth, above: 10s, severity: low}
              - {metric: app_eror_rate, above: 5%, severity: low}
        """
    )
    result = cli("validate", "--format", "json")
    assert result.code == 1, result.output
    found = problems_at(result)
    assert sorted(found) == [(16, 42), (17, 38), (18, 18)], result.output
    assert found[(16, 42)]["message"] == (
        "generation_time is a duration (extracted with unit ms); 20% is a ratio "
        "(write a duration such as 2s)"
    )
    assert found[(17, 38)]["message"] == (
        "queue_depth is a count (extracted with unit count); 10s is a duration "
        "(write a plain number such as 10)"
    )
    assert found[(18, 18)]["message"] == (
        "http has no metric 'app_eror_rate' (did you mean 'app_error_rate'?); it reports "
        "response_time, status_code, body_size, certificate_expiry; extracted: "
        "generation_time, app_error_rate, queue_depth, cache_bytes"
    )


def test_heartbeat_metrics_are_known_only_at_run_time(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          nightly:
            probe: heartbeat
            expect_every: {every: 1d}
            extract:
              rows: {path: $.rows, unit: count}
            thresholds:
              - {metric: runtime, above: 30m}
              - {metric: backup_duration, above: 1h, severity: high}
              - {metric: files_copied, below: 10, severity: low}
              - {metric: rows, below: 1%, severity: info}
              - {metric: runtime, above: 50%, severity: critical}
        """
    )
    result = cli("validate", "--format", "json")
    found = problems_at(result)
    assert sorted(found) == [(12, 31), (13, 34)], result.output
    assert found[(12, 31)]["message"].startswith("rows is a count (extracted with unit count)")
    assert found[(13, 34)]["message"].startswith("runtime is a duration; 50% is a ratio")


def test_the_configs_that_ship_stay_valid(cli):
    for path in [REPO / "monitor.yaml", *sorted((REPO / "examples").glob("*.yaml"))]:
        result = cli("-c", str(path), "validate", "--format", "json")
        wrong = [
            p
            for p in result.json()["problems"]
            if "metric" in p["message"] or "label" in p["message"]
        ]
        assert wrong == [], path


# --- third-party probes -------------------------------------------------------------------

PLUGIN = '''
"""Test plugin: a probe declaring metrics (a pattern too), one declaring none."""

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Metric, Probe, Result
from watchkeeper.schema.checks import ProbeOptions


class QueueOptions(ProbeOptions):
    """A pretend queue."""

    url: str = Field(description="Queue URL.")


class QueueProbe(Probe):
    type = "queue_fake"
    Options = QueueOptions
    metrics = (
        Metric("queue_depth", "count", "jobs waiting", labels=("queue",)),
        Metric(pattern=r"lag_\\w+", kind="duration", description="lag per consumer"),
    )

    async def check(self, options, ctx):
        return Result(ok=True)


class LegacyProbe(Probe):
    type = "legacy_fake"
    Options = QueueOptions

    async def check(self, options, ctx):
        return Result(ok=True, metrics={"anything": 1.0})


@hookimpl
def watchkeeper_probes():
    return [QueueProbe, LegacyProbe]
'''


@pytest.fixture(scope="module")
def third_party(tmp_path_factory) -> dict[str, str]:
    package = tmp_path_factory.mktemp("pkg")
    (package / "watchkeeper_queue_fake.py").write_text(PLUGIN)
    (package / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "watchkeeper-queue-fake"
            version = "0.1.0"
            [project.entry-points.watchkeeper]
            queue_fake = "watchkeeper_queue_fake"
            [tool.setuptools]
            py-modules = ["watchkeeper_queue_fake"]
            """
        )
    )
    site = tmp_path_factory.mktemp("site") / "queue"
    install(package, site)
    return {"PYTHONPATH": str(site)}


def test_a_third_party_probe_is_held_to_its_declarations(cli, write_config, third_party):
    write_config(
        """
        version: 1
        checks:
          jobs:
            probe: queue_fake
            url: https://queue.example.com
            thresholds:
              - {metric: queue_depth, where: {queue: mail}, above: 100}
              - {metric: lag_billing, above: 5m, severity: high}
              - {metric: queue_dept, above: 10, severity: low}
              - {metric: queue_depth, where: {topic: mail}, above: 5, severity: info}
              - {metric: lag_billing, above: 90%, severity: critical}
        """
    )
    result = cli("validate", "--format", "json", env=third_party)
    found = problems_at(result)
    assert sorted(found) == [(9, 18), (10, 39), (11, 38)], result.output
    assert found[(9, 18)]["message"] == (
        "queue_fake has no metric 'queue_dept' (did you mean 'queue_depth'?); it reports "
        "queue_depth, and names matching /lag_\\w+/"
    )
    assert found[(10, 39)]["message"] == "queue_depth has no label 'topic'; its labels: queue"
    assert found[(11, 38)]["message"].startswith("lag_billing is a duration; 90% is a ratio")


def test_a_probe_declaring_nothing_is_unchecked_with_one_warning(cli, write_config, third_party):
    write_config(
        """
        version: 1
        checks:
          old:
            probe: legacy_fake
            url: https://queue.example.com
            thresholds:
              - {metric: whatever, above: 50%}
              - {metric: error_rate, window: 1d, above: 2s, severity: high}
          older:
            probe: legacy_fake
            url: https://queue.example.com
            thresholds: [{metric: anything, above: 1}]
        """
    )
    result = cli("validate", "--strict", "--format", "json", env=third_party)
    problems = result.json()["problems"]
    assert problems[0] == {
        "file": "monitor.yaml",
        "line": 7,
        "column": 18,
        "path": "checks.old.thresholds[0].metric",
        "level": "warning",  # a plugin's age is not the file's fault: --strict leaves it
        "message": "probe 'legacy_fake' declares no metrics; thresholds on it are not checked",
    }
    # the engine's own metrics are still checked on it
    assert problems[1]["message"].startswith("error_rate is a ratio; 2s is a duration")
    assert len(problems) == 2, problems
    assert result.code == 1


def test_a_malformed_declaration_stops_start_up():
    import pluggy

    from watchkeeper.engine import hookspecs
    from watchkeeper.engine.plugins import PluginError, build_registry
    from watchkeeper.schema.checks import ProbeOptions

    class Bad:
        type = "bad_fake"
        Options = ProbeOptions
        metrics = ("response_time",)

    class Plugin:
        @hookspecs.hookimpl
        def watchkeeper_probes(self):
            return [Bad]

    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(Plugin(), name="bad")
    with pytest.raises(PluginError, match=r"not a tuple of watchkeeper\.engine\.probe\.Metric"):
        build_registry(manager)
    with pytest.raises(ValueError, match="kind 'seconds' is not one of"):
        Metric("x", "seconds")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one of `name` or `pattern`"):
        Metric("x", pattern="x.*")


# --- the declarations themselves ----------------------------------------------------------


@pytest.mark.parametrize("probe_type", BUILTIN)
def test_every_builtin_probe_declares_its_metrics(probe_type):
    metrics = PROBES[probe_type].metrics
    assert metrics, f"{probe_type} declares no metrics"
    names = [m.name for m in metrics if m.name]
    assert len(names) == len(set(names))
    for metric in metrics:
        assert metric.kind in METRIC_KINDS
        assert metric.description.strip()
        assert "\n" not in metric.description
        assert metric.name not in ("error_rate", "uptime"), "the engine's own"


def test_metric_kind_tells_what_a_metric_measures():
    from watchkeeper.schema.checks import Extraction

    class Check:
        extract = {"gen_time": Extraction(path="$.t", unit="ms")}

    assert metric_kind("tcp", "connect_time") == "duration"
    assert metric_kind("system", "disk_usage{path=/}") == "ratio"
    assert metric_kind("redis", "used_memory") == "bytes"
    assert metric_kind("http", "error_rate") == "ratio"
    assert metric_kind("http", "gen_time", Check()) == "duration"
    assert metric_kind("http", "gen_time") is None
    assert metric_kind("heartbeat", "rows_copied") == "any"
    assert metric_kind("nonsense", "x") is None


# --- real runs report what their probe declares ------------------------------------------


def assert_declared(probe_type: str, result, options: dict | None = None) -> None:
    probe = PROBES[probe_type]
    checked = probe.Options.model_validate(options) if options else None
    assert result.metrics or result.samples, result.message
    assert undeclared(probe, result, checked) == [], result.message


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def https(certs):
    server = HttpTestServer(ssl_context=certs.server_context()).start()
    server.reply("/health", json={"status": "ok", "metrics": {"ms": 812, "rate": 2.5}})
    yield server
    server.stop()


def test_http_reports_what_it_declares(https, certs):
    options = {
        "url": https.url("/health"),
        "ca_bundle": str(certs.ca),
        "extract": {
            "gen_time": {"path": "$.metrics.ms", "unit": "ms"},
            "app_error_rate": {"path": "$.metrics.rate", "unit": "percent"},
        },
    }
    result = check_once("http", options)
    assert result.ok, result.message
    assert {"response_time", "certificate_expiry", "gen_time"} <= set(result.metrics)
    assert_declared("http", result, options)


def test_tcp_and_tls_report_what_they_declare(https, certs):
    port = int(https.url("/").split(":")[2].split("/")[0])
    options = {
        "host": "127.0.0.1",
        "port": port,
        "tls": True,
        "ca_bundle": str(certs.ca),
        "send": "GET /health HTTP/1.0\r\n\r\n",
        "expect_regex": "HTTP/1",
    }
    result = check_once("tcp", options)
    assert result.ok, result.message
    assert set(result.metrics) == {d.name for d in PROBES["tcp"].metrics}
    assert_declared("tcp", result)
    tls = check_once("tls", {"host": "127.0.0.1", "port": port, "ca_bundle": str(certs.ca)})
    assert set(tls.metrics) == {d.name for d in PROBES["tls"].metrics}, tls.message
    assert_declared("tls", tls)


def test_tcp_without_tls_reports_what_it_declares():
    with TcpTestServer() as server:
        result = check_once("tcp", {"host": "127.0.0.1", "port": server.port})
    assert result.ok
    assert set(result.metrics) == {"connect_time"}
    assert_declared("tcp", result)


def test_host_probes_report_what_they_declare(tmp_path):
    result = check_once("system", {"disks": ["/", str(tmp_path)]})
    assert result.ok, result.message
    assert {s.labels["path"] for s in result.samples} == {"/", str(tmp_path)}
    assert_declared("system", result)
    assert_declared("env", check_once("env", {"require": ["PATH", "WATCHKEEPER_NOT_SET_X"]}))
    options = {
        "argv": ["sh", "-c", 'echo \'{"depth": 12, "took": "1.5"}\''],
        "extract": {
            "depth": {"path": "$.depth", "unit": "count"},
            "took": {"path": "$.took", "unit": "s"},
        },
    }
    result = check_once("command", options)
    assert result.ok
    assert set(result.metrics) == {"exit_code", "run_time", "depth", "took"}
    assert_declared("command", result, options)


def test_dns_reports_what_it_declares():
    # nothing answers on port 1: a failed run still reports its resolution_time
    result = check_once("dns", {"name": "example.test", "resolvers": ["127.0.0.1:1"]}, timeout=2)
    assert_declared("dns", result)


def test_sentry_reports_what_it_declares():
    from tests.test_probe_sentry import FakeSentry, issue

    server = FakeSentry([[issue(1), issue(2)]]).start()
    try:
        result = check_once("sentry", server.options())
    finally:
        server.stop()
    assert result.ok, result.message
    assert set(result.metrics) == {"new_issues", "events"}
    assert_declared("sentry", result)


def test_postgres_reports_what_it_declares():
    dsn = os.environ.get("WATCHKEEPER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    options = {"dsn": dsn, "query": "select 42", "stats": True}
    result = check_once("postgres", options, timeout=5)
    if not result.ok and "connect" in result.message:
        pytest.skip(f"no PostgreSQL: {result.message}")
    assert result.ok, result.message
    assert set(result.metrics) == {d.name for d in PROBES["postgres"].metrics}
    assert_declared("postgres", result)


def test_redis_reports_what_it_declares():
    url = os.environ.get("WATCHKEEPER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    result = check_once("redis", {"url": url}, timeout=5)
    if not result.ok and "connect" in result.message:
        pytest.skip(f"no Redis: {result.message}")
    assert result.ok, result.message
    assert {"connect_time", "ping_time", "used_memory", "connected_clients"} <= set(result.metrics)
    assert_declared("redis", result)


def test_undeclared_names_what_strays():
    from watchkeeper.engine.run.probe import Result

    result = Result(ok=True, metrics={"connect_time": 0.1, "conect_time": 0.1})
    result.sample("connect_time", 0.2, port="5432")
    assert undeclared(PROBES["tcp"], result) == [
        "reports 'conect_time', which it does not declare",
        "connect_time carries label 'port', which it does not declare",
    ]
    assert undeclared(PROBES["system"], Result(ok=True, metrics={"cpu_usage": 3.0})) == [
        "cpu_usage is declared ratio but reported 3.0"
    ]


# --- editors and docs ---------------------------------------------------------------------


def test_the_schema_offers_each_probes_metric_names():
    schema = json.loads((REPO / "schema" / "monitor.schema.json").read_text())
    items = schema["$defs"]["TcpCheck"]["properties"]["thresholds"]["items"]
    offered = items["allOf"][1]["properties"]["metric"]["examples"]
    assert offered == [
        "connect_time",
        "tls_time",
        "response_time",
        "certificate_expiry",
        "error_rate",
        "uptime",
    ]
    system = schema["$defs"]["SystemCheck"]["properties"]["thresholds"]["items"]
    assert "disk_usage" in system["allOf"][1]["properties"]["metric"]["examples"]
    # names the schema cannot know (extract, a beat's metrics) are not rejected
    config = {
        "version": 1,
        "checks": {
            "api": {
                "probe": "http",
                "url": "https://example.com",
                "extract": {"gen_time": {"path": "$.t", "unit": "ms"}},
                "thresholds": [{"metric": "gen_time", "above": "2s"}],
            },
            "job": {
                "probe": "heartbeat",
                "expect_every": {"every": "1d"},
                "thresholds": [{"metric": "rows_copied", "below": 1}],
            },
        },
    }
    assert list(jsonschema.Draft7Validator(schema).iter_errors(config)) == []


def test_probe_docs_tables_come_from_the_declarations():
    text = DOC.read_text()
    builtin = {name: PROBES[name] for name in BUILTIN}
    fresh, unknown = declared_metrics.refresh(text, builtin)
    assert unknown == []
    blocks = {m["name"] for m in declared_metrics.BLOCK.finditer(text)}
    missing = sorted((set(BUILTIN) | {declared_metrics.ENGINE}) - blocks)
    assert not missing, f"{DOC.name} has no <!-- metrics:NAME --> block for: {missing}"
    assert fresh == text, (
        f"{DOC.name}'s metric tables are stale; refresh them with: {declared_metrics.REFRESH}"
    )


def test_the_refresh_command_checks_and_writes(tmp_path):
    copy = tmp_path / "probes.md"
    copy.write_text("# x\n\n<!-- metrics:env -->\nold\n<!-- /metrics -->\n")
    assert declared_metrics.main([str(copy)]) == 1
    assert declared_metrics.main(["--write", str(copy)]) == 0
    assert "| `missing` | count | variables unset or blank |" in copy.read_text()
    assert declared_metrics.main([str(copy)]) == 0
