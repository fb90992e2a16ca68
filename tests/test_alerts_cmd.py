"""`watchkeeper alerts list|ack` against a real state store, as the daemon leaves it."""

from __future__ import annotations

import socket
import time

import anyio
import pytest

from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.config.validation import validate
from watchkeeper.engine.daemon import create_store
from watchkeeper.engine.plugins import registry

CONFIG = """
version: 1
state: {type: sqlite, path: state.db}
checks:
  api-health:
    probe: tcp
    host: localhost
    port: 443
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
NOW = time.time()


def alert(id: str, check: str, severity: str, **kw) -> Alert:
    fields = {
        "id": id,
        "check": check,
        "environment": None,
        "rule": "up",
        "severity": severity,
        "status": "firing",
        "summary": f"{check} is down",
        "started_at": NOW - 600,
        "updated_at": NOW - 60,
        "fired_at": NOW - 500,
    }
    return Alert(**{**fields, **kw})


ALERTS = [
    alert("a1b2c3d4e5f6", "database", "medium"),
    alert("a1b2ffff0000", "api-health", "critical", started_at=NOW - 300, labels={"team": "web"}),
    alert("9999aaaa8888", "api-health", "high", status="resolved", resolved_at=NOW - 30),
    alert("7777bbbb6666", "database", "high", acked_by="zoe", acked_at=NOW - 10),
]


def in_store(tmp_path, work):
    result = validate(tmp_path / "monitor.yaml")
    store = create_store(result.config, registry(), result.base_dir)

    async def main():
        await store.open(role="client")
        try:
            return await work(store)
        finally:
            await store.close()

    return anyio.run(main)


@pytest.fixture
def seeded(write_config, tmp_path):
    write_config(CONFIG)

    async def put(store):
        await store.put("alerts", {a.id: a.to_doc() for a in ALERTS})

    in_store(tmp_path, put)
    return tmp_path


def test_list_open_alerts_most_severe_first(cli, seeded):
    result = cli("alerts", "list", "--format", "json")
    assert result.code == 0, result.output
    rows = result.json()
    assert [r["id"] for r in rows] == ["a1b2ffff0000", "7777bbbb6666", "a1b2c3d4e5f6"]
    assert rows[0] == ALERTS[1].public()
    assert rows[1]["acknowledged"] is True
    assert rows[1]["acked_by"] == "zoe"


def test_list_all_includes_resolved(cli, seeded):
    rows = cli("alerts", "list", "--all", "--format", "json").json()
    assert {r["id"] for r in rows} == {a.id for a in ALERTS}
    assert rows[-1]["status"] == "resolved"


def test_list_as_a_table_and_without_subcommand(cli, seeded):
    for args in (("alerts", "list"), ("alerts",)):
        result = cli(*args)
        assert result.code == 0, result.output
        assert "a1b2ffff0000" in result.stdout
        assert "critical" in result.stdout
        assert "9999aaaa8888" not in result.stdout
        assert "acked by zoe" in result.stdout


def test_list_empty_store(cli, write_config):
    write_config(CONFIG)
    result = cli("alerts", "list")
    assert result.code == 0, result.output
    assert "no open alerts" in result.stdout
    assert cli("alerts", "list", "--format", "json").json() == []


def test_ack_writes_a_request_for_the_daemon(cli, seeded):
    result = cli("alerts", "ack", "a1b2c3d4e5f6", "--comment", "looking", env={"USER": "ann"})
    assert result.code == 0, result.output
    assert "acknowledged a1b2c3d4e5f6" in result.stdout

    async def read(store):
        return await store.get("acks", "a1b2c3d4e5f6"), await store.read("audit")

    request, audit = in_store(seeded, read)
    assert request["by"] == f"ann@{socket.gethostname()}"
    assert request["comment"] == "looking"
    assert abs(request["at"] - time.time()) < 30
    assert [(r.key, r.data["alert"], r.data["by"]) for r in audit] == [
        ("ack", "a1b2c3d4e5f6", request["by"])
    ]
    listed = cli("alerts", "list")
    assert "ack requested" in listed.stdout


def test_ack_by_unique_prefix_with_author(cli, seeded):
    result = cli("alerts", "ack", "a1b2c3", "--author", "ops-bot", "--format", "json")
    assert result.code == 0, result.output
    data = result.json()
    assert (data["alert"]["id"], data["by"], data["status"]) == (
        "a1b2c3d4e5f6",
        "ops-bot",
        "requested",
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("a1b2", "ambiguous: a1b2c3d4e5f6, a1b2ffff0000"),
        ("nope", "no alert with id 'nope'"),
        ("a1b", "at least 4 characters"),
        ("a1b2c3d4e5f7", "did you mean a1b2c3d4e5f6"),
    ],
)
def test_ack_unknown_or_ambiguous_id(cli, seeded, given, message):
    result = cli("alerts", "ack", given)
    assert result.code == 2, result.output
    assert message in result.stderr


def test_ack_resolved_or_acknowledged_alert_changes_nothing(cli, seeded):
    resolved = cli("alerts", "ack", "9999aaaa8888")
    assert resolved.code == 0
    assert "already resolved" in resolved.stdout
    acked = cli("alerts", "ack", "7777bbbb6666")
    assert acked.code == 0
    assert "already acknowledged by zoe" in acked.stdout

    async def read(store):
        return await store.get_all("acks")

    assert in_store(seeded, read) == {}


def test_store_unreachable_is_exit_1(cli, write_config):
    write_config(CONFIG.replace("path: state.db", "path: missing-dir/sub/state.db"))
    (write_config("x", "missing-dir")).chmod(0o444)  # a file where a directory must be
    result = cli("alerts", "list")
    assert result.code == 1, result.output
    assert "state store" in result.stderr
