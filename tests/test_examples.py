"""Every shipped configuration validates: offline as CI sees it, and strictly with secrets set."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from watchkeeper.engine.config.validation import validate

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
CONFIGS = sorted([REPO / "monitor.yaml", *EXAMPLES.rglob("*.yaml"), *EXAMPLES.rglob("*.yml")])
SEED_EXAMPLE = EXAMPLES / "infinite-idea.yaml"

# ${NAME} and ${NAME:-default}, but not $${escaped}, ${env.key} or ${file:/path}
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
SCHEMA_COMMENT = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


def config_id(path: Path) -> str:
    return str(path.relative_to(REPO))


def included_files(path: Path) -> list[Path]:
    """Return the config and the files its `include` patterns match."""
    data = yaml.safe_load(path.read_text()) or {}
    files = [path]
    for pattern in data.get("include") or []:
        files += [Path(p) for p in sorted(glob.glob(str(path.parent / pattern), recursive=True))]
    return files


def variables(path: Path) -> set[str]:
    """Return every environment variable a config (and its includes) references."""
    return {name for file in included_files(path) for name in VARIABLE.findall(file.read_text())}


def dummy_value(name: str) -> str:
    """A plausible value for a variable, judged by its name (URLs must look like URLs)."""
    slug = name.lower().replace("_", "-")
    if "SMTP" in name:
        return f"smtp://user:{slug}@mail.example.com:587"
    if "REDIS" in name:
        return f"redis://:{slug}@127.0.0.1:6379/0"
    if "DATABASE" in name or ("DSN" in name and "SENTRY" not in name):
        return f"postgresql://app:{slug}@db.example.com/app"
    if "SENTRY_DSN" in name:
        return f"https://{slug}@o1.ingest.sentry.io/1"
    if name.endswith(("_URL", "_WEBHOOK", "_ENDPOINT")) or "WEBHOOK" in name:
        return f"https://hooks.example.com/{slug}"
    return f"dummy-{slug}"


def dummy_environment(path: Path) -> dict[str, str]:
    return {name: dummy_value(name) for name in variables(path)}


def test_there_are_configs_to_check():
    assert REPO / "monitor.yaml" in CONFIGS
    assert SEED_EXAMPLE in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_validates_offline(cli, path):
    """As CI runs it, through the CLI: valid, and unset variables are the only warnings."""
    result = cli("-c", str(path), "validate", "--format", "json")
    assert result.code == 0, result.output
    report = result.json()
    assert report["valid"], report
    others = [p for p in report["problems"] if "is not set" not in p["message"]]
    assert not others, "\n".join(f"{p['line']}:{p['column']}: {p['message']}" for p in others)


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_validates_with_no_variable_set(path):
    """With an empty environment every reference is unset: still valid, only warnings."""
    result = validate(path, env={})
    assert result.valid, [p.text() for p in result.errors]
    expected = {f"environment variable {name} is not set" for name in variables(path)}
    assert {p.message for p in result.warnings} <= expected


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_validates_strictly_with_every_variable_set(cli, path):
    """As the daemon sees it: every variable set, and no warning of any kind."""
    env = dummy_environment(path)
    result = cli("-c", str(path), "validate", "--strict", "--format", "json", env=env)
    assert result.code == 0, result.output
    assert result.json() == {"valid": True, "problems": []}


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_starts_with_the_schema_comment(path):
    first = path.read_text().splitlines()[0]
    match = SCHEMA_COMMENT.match(first)
    assert match, f"{config_id(path)} must start with '# yaml-language-server: $schema=...'"
    schema = (path.parent / match.group(1)).resolve()
    assert schema == (REPO / "schema" / "monitor.schema.json").resolve(), schema


def secret_paths(value: Any, path: tuple = ()):
    """Yield the key path of every secret field in a validated configuration."""
    if isinstance(value, SecretStr):
        yield path
    elif isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            yield from secret_paths(getattr(value, name), (*path, field.alias or name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from secret_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from secret_paths(item, (*path, index))


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_secrets_only_come_from_variables(path):
    """No credential is written into a shipped config: every secret field interpolates."""
    result = validate(path, env=dummy_environment(path), strict=True)
    assert result.valid, [p.text() for p in result.problems]
    raw = yaml.safe_load(path.read_text())
    literal = []
    for key_path in secret_paths(result.config):
        written = raw
        for part in key_path:
            try:
                written = written[part]
            except (KeyError, IndexError, TypeError):
                written = None  # a default, not written in the file
                break
        if isinstance(written, str) and written and "${" not in written:
            literal.append(".".join(map(str, key_path)))
    assert not literal, f"secrets written into {config_id(path)}: {literal}"


def test_seed_example_covers_the_guide():
    """The seed guide's system, part by part, stays in examples/infinite-idea.yaml."""
    config = yaml.safe_load(SEED_EXAMPLE.read_text())
    checks = config["checks"]

    assert set(config["environments"]) == {"production", "staging"}
    assert all("base_url" in env for env in config["environments"].values())

    def rules(check):
        return {
            (r["metric"], r.get("above"), r.get("below"), r["severity"])
            for r in checks[check]["thresholds"]
        }

    # Alert Thresholds, each with the guide's severity
    assert ("response_time", "5s", None, "high") in rules("api-health")
    assert ("api_response_time", "5s", None, "high") in rules("app-metrics")
    assert ("db_query_time", "2s", None, "medium") in rules("app-database")
    assert ("query_time", "2s", None, "medium") in rules("database")
    assert ("app_error_rate", "5%", None, "critical") in rules("app-metrics")
    assert ("ai_generation_time", "2m", None, "medium") in rules("app-metrics")
    assert ("memory_usage", "85%", None, "high") in rules("host")
    assert ("response_time", "5s", None, "warning") in rules("home-page")
    assert checks["api-health"]["severity"] == "critical"
    assert checks["api-health"]["failure_threshold"] == 1
    composites = [c for c in checks.values() if c["probe"] == "composite"]
    assert composites
    assert all(c["severity"] == "high" for c in composites)

    # figures from the app's own endpoints, with units
    assert checks["api-health"]["url"].endswith("/api/health")
    assert checks["app-metrics"]["url"].endswith("/api/admin/monitoring")
    assert checks["app-metrics"]["headers"]["Authorization"].startswith("Bearer ${")
    assert all("unit" in e for e in checks["app-metrics"]["extract"].values())

    # security headers, PostgreSQL, Redis, AI configuration, Sentry, the monitoring host
    assert checks["api-health"]["expect"]["headers"] == {
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "origin-when-cross-origin",
    }
    probes = {c["probe"] for c in checks.values()}
    assert {"postgres", "redis", "env", "sentry", "system", "heartbeat"} <= probes

    # Slack channels, email, PagerDuty
    channels = {n.get("channel") for n in config["notifiers"].values() if n["type"] == "slack"}
    assert channels == {"#alerts", "#monitoring", "#deployments"}
    assert {n["type"] for n in config["notifiers"].values()} >= {"email", "pagerduty"}

    # three-level escalation: automated, development after 15m, infrastructure after 45m
    levels = config["escalation"]["standard"]
    assert [level["after"] for level in levels] == ["0s", "15m", "45m"]
    assert levels[0]["actions"]
    assert levels[1]["notify"] == ["dev-team"]
    assert levels[2]["notify"] == ["infra"]

    # maintenance windows: first Sunday 02:00-04:00 UTC for the database, second Tuesday
    windows = {w["name"]: w for w in config["maintenance"]}
    database = windows["database-maintenance"]
    assert database["schedule"]["cron"] == "0 2 * * SUN#1"
    assert database["duration"] == "2h"
    assert "database" in database["checks"]
    assert database["announce"] == {"before": "24h", "notify": ["monitoring"]}
    assert "TUE#2" in windows["dependency-updates"]["schedule"]["cron"]

    # daily 02:00 UTC backups of the dump, the JSON export and the config; 30 days; drill
    jobs = config["backups"]["jobs"]
    assert {j["source"]["type"] for j in jobs.values()} == {"postgres", "json_export", "files"}
    assert all(j["schedule"]["cron"] == "0 2 * * *" for j in jobs.values())
    assert all(j["retention"] == {"keep_days": 30} for j in jobs.values())
    assert all(set(j["to"]) == {"local", "cloud"} for j in jobs.values())
    destinations = {d["type"] for d in config["backups"]["destinations"].values()}
    assert destinations == {"local", "s3", "vercel_blob"}  # "Local + Cloud (Vercel Blob/S3)"
    assert any("MON" in d["schedule"]["cron"] for d in config["backups"]["drills"].values())

    # daily, weekly and monthly checklists; the KPIs as SLOs
    assert {"daily-review", "weekly-review", "monthly-review"} <= set(config["tasks"])
    slos = config["slos"]
    assert slos["uptime"]["objective"] == "99.9%"
    assert slos["response-time"]["below"] == "2s"
    assert slos["error-rate"]["below"] == "1%"


# The seed example's routing, as `watchkeeper route` reports it (docs/ci.md): staging is
# told in #monitoring only, never paged, and runs no self-healing; production pages.
ROUTED = [
    # (route arguments, notifiers, escalation policy)
    ("--severity critical --check api-health --env staging", ["monitoring"], None),
    ("--severity critical --env staging", ["monitoring"], None),
    ("--severity high --check app-metrics --env staging", ["monitoring"], None),
    ("--severity warning --check api-health --env staging", ["monitoring"], None),
    ("--severity high --check endpoints-down-staging", ["monitoring"], None),
    ("--severity critical --check api-health --env production", ["alerts"], "standard"),
    ("--severity high --check api-health --env production", ["monitoring"], "standard"),
    ("--severity critical --check database --env production", ["alerts"], "people"),
    ("--severity high --check endpoints-down-production", ["alerts"], "standard"),
    ("--event deploy --env staging", ["deployments"], None),
]


@pytest.mark.parametrize(("args", "notifiers", "escalation"), ROUTED, ids=[r[0] for r in ROUTED])
def test_seed_example_routes_by_environment(cli, args, notifiers, escalation):
    result = cli("-c", str(SEED_EXAMPLE), "route", "--format", "json", *args.split())
    assert result.code == 0, result.output
    routed = result.json()
    assert (routed["notifiers"], routed["escalation"]) == (notifiers, escalation)
    if escalation is None:
        assert routed["escalation_levels"] in ([], None)
