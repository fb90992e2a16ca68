"""Ad hoc silences: matchers, time, storage, and `watchkeeper alerts silence|silences|expire`."""

from __future__ import annotations

import socket
import time

import anyio
import pytest

from watchkeeper.engine.alerting.silences import (
    Matcher,
    Silence,
    load_silences,
    parse_matcher,
    silenced_by,
)
from watchkeeper.engine.config.validation import validate
from watchkeeper.engine.daemon import create_store
from watchkeeper.engine.plugins import registry

CONFIG = """
version: 1
state: {type: sqlite, path: state.db}
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
notifiers:
  console: {type: log}
routes:
  - match: {}
    notify: [console]
"""

API_PROD = {
    "check": "api-health",
    "environment": "production",
    "rule": "up",
    "severity": "critical",
    "labels": {"team": "web"},
}
DB = {"check": "database", "environment": None, "rule": "query_time", "severity": "medium"}


def silence(*matchers: str, starts: float = 0.0, ends: float = 100.0) -> Silence:
    return Silence(
        id="s1",
        matchers=[parse_matcher(m) for m in matchers],
        starts_at=starts,
        ends_at=ends,
        created_by="me@host",
        created_at=starts,
        reason="test",
    )


# --- matchers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("check=api", Matcher("check", "api")),
        ("check==api", Matcher("check", "api")),
        ("check=~api-.*", Matcher("check", "api-.*", regex=True)),
        ("label:team=web", Matcher("label:team", "web")),
        ("labels.team = web", Matcher("label:team", "web")),
        ("severity!=low", Matcher("severity", "low", negative=True)),
        ("severity!~low|info", Matcher("severity", "low|info", regex=True, negative=True)),
        ('env="prod uction"', Matcher("environment", "prod uction")),
        ("instance=api@production", Matcher("instance", "api@production")),
    ],
)
def test_parse_matcher(text, expected):
    assert parse_matcher(text) == expected


@pytest.mark.parametrize("text", ["check", "=api", "colour=red", "label:=x", "check=~(unclosed"])
def test_parse_matcher_refuses(text):
    with pytest.raises(ValueError):
        parse_matcher(text)


def test_exact_and_regex_matchers():
    assert silence("check=api-health").matches(API_PROD)
    assert not silence("check=api").matches(API_PROD)
    # regexes are anchored, as in Alertmanager: `api` does not match `api-health`
    assert not silence("check=~api").matches(API_PROD)
    assert silence("check=~api.*").matches(API_PROD)
    assert silence("check=~database|api-health").matches(API_PROD)


def test_negative_matchers_and_missing_fields():
    assert silence("check=~.+", "severity!=low").matches(API_PROD)
    assert not silence("check=~.+", "severity!~critical|high").matches(API_PROD)
    assert silence("check=~.+", "severity!~critical|high").matches(DB)
    # a missing field reads as "": environment!=production matches an alert without one
    assert silence("check=~.+", "environment!=production").matches(DB)
    assert silence("check=database", "environment=").matches(DB)


def test_label_and_instance_matchers():
    assert silence("label:team=web").matches(API_PROD)
    assert not silence("label:team=web").matches(DB)
    assert silence("instance=api-health@production").matches(API_PROD)
    assert not silence("instance=api-health@staging").matches(API_PROD)
    assert silence("instance=database").matches(DB)


def test_all_matchers_must_hold():
    assert silence("check=api-health", "environment=production").matches(API_PROD)
    assert not silence("check=api-health", "environment=staging").matches(API_PROD)


def test_validation():
    silence("check=api").validate()
    with pytest.raises(ValueError, match="at least one matcher"):
        silence().validate()
    with pytest.raises(ValueError, match="end after it starts"):
        silence("check=api", starts=10, ends=10).validate()
    # matchers that all match an empty alert would silence everything
    with pytest.raises(ValueError, match="hold back everything"):
        silence("severity!=low").validate()
    with pytest.raises(ValueError, match="hold back everything"):
        silence("check=~.*").validate()


def test_time_and_silenced_by():
    early = silence("check=api-health", starts=10, ends=20)
    late = silence("label:team=web", starts=15, ends=40)
    late.id = "s2"
    assert [early.state(5), early.state(10), early.state(20)] == ["pending", "active", "expired"]
    assert silenced_by([early, late], API_PROD, 5) is None
    assert silenced_by([early, late], API_PROD, 12) is early
    assert silenced_by([early, late], API_PROD, 16) is late  # the one ending last
    assert silenced_by([early, late], API_PROD, 20) is late
    assert silenced_by([early, late], DB, 16) is None
    assert silenced_by([early, late], API_PROD, 40) is None


def test_doc_round_trip():
    item = silence("check=~api-.*", "label:team=web", "severity!~low|info")
    again = Silence.from_doc(item.to_doc())
    assert again == item
    assert again.matches(API_PROD)


# --- through the CLI and the store ---------------------------------------------------------------


def stored(tmp_path) -> dict[str, Silence]:
    result = validate(tmp_path / "monitor.yaml")
    store = create_store(result.config, registry(), result.base_dir)

    async def main():
        await store.open(role="client")
        try:
            return await load_silences(store)
        finally:
            await store.close()

    return anyio.run(main)


def test_silence_round_trip_through_the_cli(cli, write_config, tmp_path):
    write_config(CONFIG)
    before = time.time()
    made = cli(
        "alerts", "silence", "--check", "api-health", "--env", "production",
        "--for", "2h", "--reason", "hotfix", env={"USER": "alice"},
    )  # fmt: skip
    assert made.code == 0, made.output
    sid = made.stdout.strip()
    assert len(sid) == 12
    assert "matches 0 open alerts" in made.stderr

    (item,) = stored(tmp_path).values()
    assert item.id == sid
    assert item.created_by == f"alice@{socket.gethostname()}"
    assert item.reason == "hotfix"
    assert [str(m) for m in item.matchers] == ["check=api-health", "environment=production"]
    assert 7200 - 5 < item.ends_at - before < 7200 + 5
    assert silenced_by([item], API_PROD, time.time()) is item
    assert silenced_by([item], {**API_PROD, "environment": "staging"}, time.time()) is None

    listed = cli("alerts", "silences", "--format", "json")
    assert listed.code == 0, listed.output
    (row,) = listed.json()
    assert row["id"] == sid
    assert row["status"] == "active"
    assert row["reason"] == "hotfix"

    gone = cli("alerts", "expire", sid[:5], "--author", "bob")
    assert gone.code == 0, gone.output
    assert f"expired silence {sid} as bob" in gone.stdout
    assert cli("alerts", "silences", "--format", "json").json() == []
    (row,) = cli("alerts", "silences", "--all", "--format", "json").json()
    assert (row["status"], row["expired_by"]) == ("expired", "bob")
    (item,) = stored(tmp_path).values()
    assert not item.active(time.time())

    again = cli("alerts", "expire", sid)
    assert again.code == 0
    assert "already expired" in again.stdout


def test_silence_options_become_matchers(cli, write_config, tmp_path):
    write_config(CONFIG)
    made = cli(
        "alerts", "silence", "--check", "api-*", "--check", "api-health@staging",
        "--severity", ">=high", "--label", "team=web", "--match", "rule!=up",
        "--until", "2099-01-01T00:00:00Z", "--reason", "load test", "--author", "carol",
        "--format", "json",
    )  # fmt: skip
    assert made.code == 0, made.output
    data = made.json()
    assert data["matchers"] == [
        "instance=~api-.*|api-health@staging",
        "severity=~critical|high",
        "label:team=web",
        "rule!=up",
    ]
    assert data["created_by"] == "carol"
    assert data["ends_at"] == "2099-01-01T00:00:00Z"
    (item,) = stored(tmp_path).values()
    assert item.matches({**API_PROD, "rule": "slow", "severity": "high"})
    assert not item.matches({**API_PROD, "rule": "slow", "severity": "medium"})
    assert not item.matches(API_PROD)  # rule up


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--check", "api-health", "--reason", "x"], "--for"),
        (["--check", "api-health", "--for", "1h", "--until", "2099-01-01T00:00Z", "--reason", "x"],
         "--for"),
        (["--for", "1h", "--reason", "x"], "at least one of"),
        (["--check", "api-health", "--for", "soon", "--reason", "x"], "duration"),
        (["--check", "api-health", "--until", "2000-01-01T00:00Z", "--reason", "x"], "future"),
        (["--match", "colour=red", "--for", "1h", "--reason", "x"], "unknown matcher field"),
        (["--match", "severity!=low", "--for", "1h", "--reason", "x"], "everything"),
        (["--severity", "urgent", "--for", "1h", "--reason", "x"], "names no severity"),
        (["--label", "team", "--for", "1h", "--reason", "x"], "key=value"),
        (["--check", "api-health", "--for", "1h"], "--reason"),
    ],
)  # fmt: skip
def test_silence_usage_errors(cli, write_config, args, message):
    write_config(CONFIG)
    result = cli("alerts", "silence", *args)
    assert result.code == 2, result.output
    assert message in result.output


def test_expire_unknown_silence(cli, write_config):
    write_config(CONFIG)
    result = cli("alerts", "expire", "deadbeef")
    assert result.code == 2
    assert "no silence with id 'deadbeef'" in result.stderr


def test_a_pending_silence(cli, write_config, tmp_path):
    write_config(CONFIG)
    made = cli(
        "alerts", "silence", "--check", "database", "--from", "2099-01-01T00:00:00Z",
        "--for", "1h", "--reason", "later",
    )  # fmt: skip
    assert made.code == 0, made.output
    (row,) = cli("alerts", "silences", "--format", "json").json()
    assert row["status"] == "pending"
    assert cli("alerts", "expire", row["id"]).code == 0
    (item,) = stored(tmp_path).values()
    assert item.ends_at <= time.time() + 1
    assert item.starts_at <= item.ends_at
