"""The postgres probe against the local PostgreSQL (127.0.0.1:5432, user postgres)."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from watchkeeper.engine.testing import check_once

SERVER = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture(scope="module")
def database():
    """A database of our own, with a table of three rows; dropped afterwards."""
    try:
        admin = psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc}); tests/services.sh")
    name = f"wk_probe_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(f'create database "{name}"')
        try:
            with psycopg.connect(f"{SERVER}/{name}", autocommit=True) as conn:
                conn.execute("create table jobs (id int, failed bool)")
                conn.execute("insert into jobs values (1, false), (2, true), (3, false)")
            yield name
        finally:
            admin.execute(f'drop database "{name}" with (force)')


def test_connect_and_query(database):
    result = check_once("postgres", {"dsn": f"{SERVER}/{database}"})
    assert result.ok, result.message
    assert result.message.startswith(f"{SERVER}/{database}: connected in ")
    assert 0 < result.metrics["connect_time"] < 2
    assert 0 < result.metrics["query_time"] < 2
    assert result.metrics["rows"] == 1
    assert result.metrics["value"] == 1
    assert "connections" not in result.metrics


def test_query_value_and_expect_rows(database):
    dsn = f"{SERVER}/{database}"
    result = check_once("postgres", {"dsn": dsn, "query": "select count(*) from jobs where failed"})
    assert result.metrics["value"] == 1
    result = check_once(
        "postgres", {"dsn": dsn, "query": "select * from jobs where not failed", "expect_rows": 2}
    )
    assert result.ok, result.message
    assert result.metrics["rows"] == 2
    result = check_once(
        "postgres", {"dsn": dsn, "query": "select * from jobs where id > 5", "expect_rows": 1}
    )
    assert not result.ok
    assert result.message == f"query on {dsn} returned 0 rows (expected at least 1)"


def test_stats(database):
    result = check_once("postgres", {"dsn": f"{SERVER}/{database}", "stats": True})
    assert result.ok, result.message
    assert result.metrics["connections"] >= 1
    assert result.metrics["max_connections"] >= result.metrics["connections"]
    assert 0 < result.metrics["connection_usage"] <= 1
    assert result.metrics["database_size"] > 1_000_000  # bytes: an empty database is ~7MB


def test_keyword_dsn(database):
    result = check_once(
        "postgres", {"dsn": f"host=127.0.0.1 port=5432 user=postgres dbname={database}"}
    )
    assert result.ok, result.message


def test_failing_query(database):
    dsn = f"{SERVER}/{database}"
    result = check_once("postgres", {"dsn": dsn, "query": "select * from no_such_table"})
    assert not result.ok
    assert result.message == (f'the query failed on {dsn}: relation "no_such_table" does not exist')
    assert "connect_time" in result.metrics


def test_slow_query_times_out_and_the_server_stops_it(database):
    dsn = f"{SERVER}/{database}"
    started = time.monotonic()
    result = check_once("postgres", {"dsn": dsn, "query": "select pg_sleep(30)"}, timeout=1)
    assert time.monotonic() - started < 1.5
    assert not result.ok
    assert result.message == f"timed out after 1s running the query on {dsn}"
    assert result.details["timeout"] is True
    with psycopg.connect(dsn) as conn:
        (left,) = conn.execute(
            "select count(*) from pg_stat_activity"
            " where query = 'select pg_sleep(30)' and state = 'active'"
        ).fetchone()
    assert left == 0


def test_unknown_database_message_hides_the_password():
    password = "Sup3r-s3cret-pw"
    result = check_once(
        "postgres", {"dsn": f"postgresql://postgres:{password}@127.0.0.1:5432/wk_no_such_db"}
    )
    assert not result.ok
    assert password not in result.message
    assert result.message == (
        "cannot connect to postgresql://postgres@127.0.0.1:5432/wk_no_such_db: "
        'database "wk_no_such_db" does not exist'
    )


def test_unknown_user_message_hides_the_password():
    password = "An0ther-s3cret"
    result = check_once(
        "postgres",
        {"dsn": f"host=127.0.0.1 user=wk_nobody password={password} dbname=postgres"},
    )
    assert not result.ok
    assert password not in result.message
    assert result.message.startswith("cannot connect to postgresql://wk_nobody@127.0.0.1:5432/")


def test_nothing_listening():
    result = check_once("postgres", {"dsn": "postgresql://postgres:pw-1234@127.0.0.1:1/x"})
    assert not result.ok
    assert result.message == (
        "cannot connect to postgresql://postgres@127.0.0.1:1/x: Connection refused"
    )


def test_malformed_dsn():
    result = check_once("postgres", {"dsn": "host=127.0.0.1 password"})
    assert not result.ok
    assert result.message.startswith("invalid dsn: ")
