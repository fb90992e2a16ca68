"""The `watchkeeper backup` commands end to end, in fresh processes: run, list (DESIGN's JSON
shape), verify (exit 1 on a tampered byte), restore, cleanup, drill; plus restore drills
against the real PostgreSQL and Sentry Crons check-ins to a local ingest endpoint.
"""

from __future__ import annotations

import gzip
import json
import uuid

import psycopg
import pytest

from tests.pg_server import LOCAL_SERVER, PgUnavailable, local_test_database
from watchkeeper.engine.testing import HttpTestServer

FILES = """
version: 1
state: {type: sqlite, path: state.db}
backups:
  destinations:
    local: {type: local, path: backups}
  jobs:
    config:
      source: {type: files}
      schedule: {cron: "0 2 * * *"}
      to: [local]
"""

DESIGN_KEYS = ["id", "job", "started_at", "finished_at", "status", "size_bytes", "sha256",
               "destinations"]  # fmt: skip


def test_run_list_verify_restore(cli, write_config, tmp_path):
    write_config(FILES)
    run = cli("backup", "run", "config")
    assert run.code == 0, run.output
    assert "✓ config: config-" in run.stdout
    assert "files.tar.gz" in run.stderr  # plain progress lines when not on a terminal
    listed = cli("backup", "list", "--format", "json")
    assert listed.code == 0, listed.output
    [row] = listed.json()
    assert list(row)[: len(DESIGN_KEYS)] == DESIGN_KEYS
    assert row["status"] == "ok"
    assert row["destinations"] == ["local"]
    assert row["started_at"].endswith("+00:00")
    assert len(row["sha256"]) == 64
    text = cli("backup", "list")
    assert row["id"] in text.stdout
    ok = cli("backup", "verify", row["id"])
    assert ok.code == 0, ok.output
    assert "every file intact at local" in ok.stdout
    restored = cli("backup", "restore", row["id"], "--to", "out")
    assert restored.code == 0, restored.output
    assert (tmp_path / "out" / "monitor.yaml").read_text() == (
        tmp_path / "monitor.yaml"
    ).read_text()
    # one flipped byte: verify names the file and the destination, exit 1
    archive = tmp_path / "backups" / "config" / row["id"] / "files.tar.gz"
    data = bytearray(archive.read_bytes())
    data[-10] ^= 0x55
    archive.write_bytes(bytes(data))
    bad = cli("backup", "verify", row["id"], "--format", "json")
    assert bad.code == 1, bad.output
    report = bad.json()
    assert report["ok"] is False
    assert [(f["destination"], f["file"]) for f in report["files"] if not f["ok"]] == [
        ("local", "files.tar.gz")
    ]
    bad_text = cli("backup", "verify", row["id"])
    assert "✗ local: files.tar.gz" in bad_text.stdout
    refused = cli("backup", "restore", row["id"], "--to", "out2")
    assert refused.code == 1
    assert "does not match the manifest" in refused.stderr


def test_run_usage_errors(cli, write_config):
    write_config(FILES)
    assert cli("backup", "run").code == 2
    unknown = cli("backup", "run", "nope")
    assert unknown.code == 2
    assert "unknown backup job(s): nope" in unknown.stderr
    assert cli("backup", "run", "config", "--all").code == 2
    assert cli("backup", "verify", "no-such-id").code == 1


def test_a_failed_backup_exits_1(cli, write_config):
    write_config(FILES.replace("source: {type: files}", "source: {type: files, paths: [gone]}"))
    result = cli("backup", "run", "--all", "--format", "json")
    assert result.code == 1
    [row] = result.json()
    assert row["status"] == "failed"
    assert "gone: no such file" in row["error"]


def test_list_from_destination_needs_no_store(cli, write_config, tmp_path):
    write_config(FILES)
    assert cli("backup", "run", "--all").code == 0
    (tmp_path / "state.db").unlink()
    listed = cli("backup", "list", "--from-destination", "local", "--format", "json")
    assert listed.code == 0, listed.output
    [row] = listed.json()
    assert row["job"] == "config"
    # the catalog itself is empty now, yet the backup can still be verified
    assert cli("backup", "list", "--format", "json").json() == []
    assert cli("backup", "verify", row["id"]).code == 0


def test_restore_is_audited(cli, write_config, tmp_path):
    write_config(FILES)
    row = cli("backup", "run", "--all", "--format", "json").json()[0]
    assert cli("backup", "restore", row["id"], "--to", "out").code == 0
    import sqlite3

    with sqlite3.connect(tmp_path / "state.db") as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        stream = next(t for t in tables if "stream" in t or "row" in t)
        text = " ".join(str(r) for r in db.execute(f"select * from {stream}"))
    assert "restore" in text
    assert row["id"] in text


# -- drills -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_db():
    try:
        with local_test_database("wk_drill_src") as url:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "create table projects (id serial primary key, name text);"
                    "insert into projects (name) select 'p' || g from generate_series(1, 1200) g;"
                )
            yield url
    except PgUnavailable as exc:
        pytest.skip(str(exc))


def drill_config(url: str, *, min_rows: int, query: str = "select count(*) from projects") -> str:
    return f"""
version: 1
state: {{type: sqlite, path: state.db}}
checks:
  database:
    probe: postgres
    dsn: "{url}"
    query: "{query}"
    expect_rows: 1
backups:
  destinations:
    local: {{type: local, path: backups}}
  jobs:
    database:
      source: {{type: postgres, dsn: "{url}"}}
      schedule: {{cron: "0 2 * * *"}}
      to: [local]
    export:
      source: {{type: json_export, dsn: "{url}"}}
      schedule: {{cron: "0 2 * * *"}}
      to: [local]
  drills:
    weekly-restore:
      job: database
      schedule: {{cron: "0 4 * * MON"}}
      scratch_dsn: "{LOCAL_SERVER}/postgres"
      verify: [database]
      min_rows: {min_rows}
    export-restore:
      job: export
      schedule: {{cron: "0 4 * * MON"}}
      scratch_dsn: "{LOCAL_SERVER}/postgres"
      min_rows: {min_rows}
"""


def scratch_databases() -> list[str]:
    with psycopg.connect(f"{LOCAL_SERVER}/postgres") as conn:
        return [r[0] for r in conn.execute(
            "select datname from pg_database where datname like 'wk_drill_weekly%%' "
            "or datname like 'wk_drill_export%%'")]  # fmt: skip


@pytest.mark.slow
def test_a_drill_restores_verifies_records_and_drops_the_scratch_database(
    cli, write_config, app_db
):
    write_config(drill_config(app_db, min_rows=1000))
    assert cli("backup", "run", "--all").code == 0
    before = scratch_databases()
    result = cli("backup", "drill", "weekly-restore", "--format", "json")
    assert result.code == 0, result.output
    record = result.json()
    assert record["status"] == "ok", record
    assert record["rows"] == 1200
    [check] = record["checks"]
    assert check["check"] == "database"
    assert check["ok"]
    assert check["pointed_at_copy"]
    assert scratch_databases() == before  # dropped
    export = cli("backup", "drill", "export-restore")
    assert export.code == 0, export.output
    assert "1200 rows" in export.stdout


@pytest.mark.slow
def test_a_failing_drill_exits_1_and_still_drops_the_scratch_database(cli, write_config, app_db):
    write_config(drill_config(app_db, min_rows=5000))
    assert cli("backup", "run", "database").code == 0
    result = cli("backup", "drill", "weekly-restore", "--format", "json")
    assert result.code == 1
    record = result.json()
    assert record["status"] == "failed"
    assert "fewer than min_rows 5000" in record["error"]
    assert scratch_databases() == []


@pytest.mark.slow
def test_a_drill_whose_check_fails_on_the_copy_fails(cli, write_config, app_db):
    write_config(drill_config(app_db, min_rows=1, query="select * from no_such_table"))
    assert cli("backup", "run", "database").code == 0
    result = cli("backup", "drill", "weekly-restore", "--format", "json")
    assert result.code == 1
    assert "verify check(s) failed on the restored copy: database" in result.json()["error"]


@pytest.mark.slow
def test_the_restore_target_dsn_password_is_masked(cli, write_config, app_db):
    write_config(drill_config(app_db, min_rows=1))
    row = cli("backup", "run", "database", "--format", "json").json()[0]
    name = f"wk_backup_cli_{uuid.uuid4().hex[:8]}"
    target = f"postgresql://postgres:cli-secret-pw@127.0.0.1:5432/{name}"
    try:
        result = cli("backup", "restore", row["id"], "--to", target)
        assert result.code == 0, result.output
        assert "cli-secret-pw" not in result.output
        assert "rows 1200" in result.stdout
    finally:
        with psycopg.connect(f"{LOCAL_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


# -- Sentry Crons -------------------------------------------------------------------------------


def envelopes(server: HttpTestServer) -> list[dict]:
    """Return the check-in items of every envelope the fake Sentry ingest received."""
    found = []
    for request in server.requests:
        body = request.body
        if request.headers.get("Content-Encoding") == "gzip" or body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        lines = body.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "check_in":
                found.append(json.loads(payload))
    return found


def test_sentry_crons_check_ins_per_job(cli, write_config):
    with HttpTestServer() as sentry:
        sentry.reply("/api/1/envelope/", status=200, body="{}")
        host = sentry.url("/").split("//")[1].rstrip("/")
        write_config(FILES + f"sentry: {{dsn: 'http://publickey@{host}/1', environment: ops}}\n")
        assert cli("backup", "run", "config").code == 0
        checkins = envelopes(sentry)
    assert [c["status"] for c in checkins] == ["in_progress", "ok"]
    assert {c["monitor_slug"] for c in checkins} == {"backup-config"}
    assert checkins[0]["check_in_id"] == checkins[1]["check_in_id"]
    assert checkins[0]["monitor_config"]["schedule"] == {"type": "crontab", "value": "0 2 * * *"}
    assert checkins[1]["duration"] >= 0
    assert checkins[0]["environment"] == "ops"


def test_no_sentry_dsn_no_check_ins(cli, write_config):
    with HttpTestServer() as sentry:
        write_config(FILES)
        assert cli("backup", "run", "config").code == 0
        assert sentry.requests == []
