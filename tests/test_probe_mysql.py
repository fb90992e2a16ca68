"""The mysql probe against MariaDB: the shared local server and, marked slow, private ones.

The shared server (127.0.0.1:3306, root without a password) serves the everyday cases
through throwaway databases. Private servers started by the tests (tests/mysql_server.py)
serve what the shared one must not be changed for: TLS, and a primary with a replica.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import anyio
import pytest
from pydantic import ValidationError

pytest.importorskip("aiomysql", reason="the mysql extra is not installed")

from tests.mysql_server import (
    SHARED_DSN,
    SHARED_SOCKETS,
    MariadbServer,
    MariadbUnavailable,
    shared,
    throwaway_database,
)
from watchkeeper.engine.run.declared_metrics import undeclared
from watchkeeper.engine.testing import (
    TcpTestServer,
    acheck_cancelled,
    check_once,
    contract_problems,
    fired_alerts,
    free_port,
    make_certificates,
    probe_options,
)
from watchkeeper.plugins.probes.mysql import INSTALL, MysqlProbe, parse_dsn

PASSWORD = "n0t-the-pa55word"
ENCRYPTED = (
    "SELECT VARIABLE_VALUE <> '' FROM information_schema.SESSION_STATUS "
    "WHERE VARIABLE_NAME = 'Ssl_cipher'"
)


@pytest.fixture(scope="module")
def server():
    """The shared server; the tests skip when it does not answer."""
    try:
        conn = shared()
    except MariadbUnavailable as exc:
        pytest.skip(str(exc))
    conn.close()


@pytest.fixture
def database(server):
    with throwaway_database() as name:
        yield name


def mysql(options: dict, **kwargs):
    return check_once("mysql", options, **kwargs)


# --- up -------------------------------------------------------------------------------------


def test_up_with_stats(server):
    result = mysql({"dsn": SHARED_DSN, "stats": True})
    assert result.ok, result.message
    assert result.message.startswith(f"{SHARED_DSN}: connected in ")
    assert ", query in " in result.message
    assert 0 < result.metrics["connect_time"] < 1
    assert 0 < result.metrics["query_time"] < 1
    assert result.metrics["rows"] == 1
    assert result.metrics["value"] == 1  # SELECT 1
    assert result.metrics["threads_connected"] >= 1  # the probe's own connection at least
    assert result.metrics["slow_queries"] >= 0
    assert "replication_lag" not in result.metrics  # the shared server is no replica
    assert undeclared(MysqlProbe, result) == []


def test_stats_are_left_out_unless_asked(server):
    result = mysql({"dsn": SHARED_DSN})
    assert result.ok, result.message
    assert set(result.metrics) == {"connect_time", "query_time", "rows", "value"}


def test_query_on_a_throwaway_table(database):
    conn = shared(database=database)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE jobs (id INT PRIMARY KEY, failed BOOL)")
        cur.execute("INSERT INTO jobs VALUES (1, 1), (2, 0), (3, 1), (4, 1)")
    conn.close()
    dsn = f"mariadb://root@127.0.0.1:3306/{database}"
    counted = mysql({"dsn": dsn, "query": "SELECT COUNT(*) FROM jobs WHERE failed"})
    listed = mysql({"dsn": dsn, "query": "SELECT id, failed FROM jobs ORDER BY id"})
    assert counted.ok, counted.message
    assert counted.metrics["value"] == 3
    assert counted.message.startswith(f"{dsn}: connected in ")
    [alert] = fired_alerts(counted, [{"metric": "value", "above": 2, "severity": "medium"}])
    assert alert.rule == "value"
    assert listed.metrics["rows"] == 4
    assert listed.metrics["value"] == 1


def test_through_the_socket(server):
    socket = next((path for path in SHARED_SOCKETS if os.path.exists(path)), None)
    if socket is None:
        pytest.skip("the shared server's socket is not at /run/mysqld/mysqld.sock")
    dsn = f"mysql://root@localhost/test?unix_socket={socket}"
    result = mysql({"dsn": dsn, "query": "SELECT @@socket"})
    assert result.ok, result.message
    assert result.message.startswith(f"{dsn}: connected in ")


# --- down -----------------------------------------------------------------------------------


def test_wrong_password_says_auth_failed_and_hides_it(server):
    result = mysql({"dsn": f"mysql://root:{PASSWORD}@127.0.0.1:3306/test"})
    assert not result.ok
    assert PASSWORD not in result.message
    assert result.message == (
        "cannot connect to mysql://root@127.0.0.1:3306/test: auth failed: "
        "Access denied for user 'root'@'127.0.0.1' (using password: YES)"
    )


def test_unknown_database(server):
    name = f"wk_missing_{uuid.uuid4().hex[:8]}"
    result = mysql({"dsn": f"mysql://root@127.0.0.1:3306/{name}"})
    assert not result.ok
    assert result.message == (
        f"cannot connect to mysql://root@127.0.0.1:3306/{name}: "
        f"Unknown database '{name}' (error 1049)"
    )


def test_closed_port_is_refused():
    port = free_port()
    result = mysql({"dsn": f"mysql://root:{PASSWORD}@127.0.0.1:{port}/test"})
    assert not result.ok
    assert (
        result.message
        == f"cannot connect to mysql://root@127.0.0.1:{port}/test: connection refused"
    )


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("SELECT * FROM wk_nothing", "Table 'test.wk_nothing' doesn't exist (error 1146)"),
        ("SELEC 1", "You have an error in your SQL syntax;"),
    ],
)  # fmt: skip
def test_a_query_error_names_the_error(server, query, error):
    result = mysql({"dsn": SHARED_DSN, "query": query})
    assert not result.ok
    assert result.message.startswith(f"the query failed on {SHARED_DSN}: {error}")
    assert "Traceback" not in result.message
    assert "query_time" not in result.metrics
    assert result.metrics["connect_time"] > 0  # measured before the query failed


def test_a_slow_query_times_out_and_the_server_stops_it(server):
    marker = f"wk-{uuid.uuid4().hex[:8]}"
    result = mysql({"dsn": SHARED_DSN, "query": f"SELECT SLEEP(30) /* {marker} */"}, timeout=1)
    assert not result.ok
    assert result.message == f"timed out after 1s running the query on {SHARED_DSN}"
    assert result.details["timeout"] is True
    # the session limit the probe set ends the query in the server, not only in the probe
    conn = shared()
    try:
        deadline = time.monotonic() + 5
        while True:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.processlist "
                    "WHERE info LIKE %s AND info NOT LIKE '%%processlist%%'",
                    (f"%{marker}%",),
                )
                [(running,)] = cur.fetchall()
            if running == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        conn.close()
    assert running == 0, "the query ran on in the server after the check gave up"


def test_a_silent_server_times_out_in_time():
    with TcpTestServer() as silent:  # accepts, never sends the handshake
        start = time.perf_counter()
        result = mysql({"dsn": f"mysql://root@127.0.0.1:{silent.port}/test"}, timeout=1)
        elapsed = time.perf_counter() - start
    assert (
        result.message
        == f"timed out after 1s connecting to mysql://root@127.0.0.1:{silent.port}/test"
    )
    assert result.details["timeout"] is True
    assert elapsed < 1.5


def test_tls_required_but_not_offered(server):
    # the shared server has TLS off: the probe stops before sending the login in the clear
    result = mysql({"dsn": f"mysql://root:{PASSWORD}@127.0.0.1:3306/test", "tls": True})
    assert not result.ok
    assert result.message == (
        "cannot connect to mysql://root@127.0.0.1:3306/test: TLS failed: "
        "the server does not offer TLS"
    )


def test_missing_library_names_the_extra(monkeypatch, server):
    monkeypatch.setitem(sys.modules, "aiomysql", None)  # `import aiomysql` now fails
    result = mysql({"dsn": SHARED_DSN})
    assert not result.ok
    assert result.message == f"the mysql probe needs aiomysql: {INSTALL}"
    assert INSTALL == "pip install 'watchkeeper[mysql]'"


def test_keeps_the_contract():
    assert contract_problems(MysqlProbe) == []
    with TcpTestServer() as silent:
        options = {"dsn": f"mysql://root:{PASSWORD}@127.0.0.1:{silent.port}/test"}
        outcome = anyio.run(lambda: acheck_cancelled("mysql", options))
    assert outcome.cancelled
    assert outcome.returned is None


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"dsn": f"postgresql://a:{PASSWORD}@db/app"}, "expected a mysql:// or mariadb:// DSN"),
        ({"dsn": f"mysql://:{PASSWORD}@db/app"}, "the DSN names no user"),
        ({"dsn": "mysql://app@db:99999/app"}, "not a valid mysql:// DSN"),
        ({"dsn": "mysql://app@db/app?ssl-mode=REQUIRED"}, "use the tls and ca_bundle options"),
        ({"dsn": "mysql://app@db/app?charset=utf8"}, "unknown DSN parameter 'charset'"),
        ({"dsn": "mysql://app@db/a/b"}, "one database name"),
        ({"dsn": SHARED_DSN, "ca_bundle": "ca.pem"}, "ca_bundle needs tls: true"),
        ({"dsn": SHARED_DSN, "stats": "often"}, "valid boolean"),
        ({"query": "SELECT 1"}, "Field required"),
    ],
)  # fmt: skip
def test_invalid_options(options, problem):
    with pytest.raises(ValidationError) as caught:
        probe_options("mysql", options)
    assert problem in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_dsn_forms():
    full = parse_dsn("mariadb://app:p%40ss@db.internal:3307/shop")
    assert (full.user, full.password, full.host, full.port, full.database) == (
        "app", "p@ss", "db.internal", 3307, "shop",
    )  # fmt: skip
    assert full.shown == "mariadb://app@db.internal:3307/shop"
    assert parse_dsn("mysql://app@[::1]/x").shown == "mysql://app@[::1]:3306/x"
    assert parse_dsn("mysql://app@db").database is None
    socket = parse_dsn("mysql://app@localhost/x?unix_socket=/run/mysqld/mysqld.sock")
    assert socket.unix_socket == "/run/mysqld/mysqld.sock"
    assert socket.shown == "mysql://app@localhost/x?unix_socket=/run/mysqld/mysqld.sock"


def test_validate_through_the_cli(cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          wrong-scheme:
            probe: mysql
            dsn: postgresql://app:{PASSWORD}@db/app
          no-dsn:
            probe: mysql
            query: SELECT 1
          good:
            probe: mysql
            dsn: mysql://app@db/app
            thresholds: [{{metric: replication_lag, above: 30s}}]
        """
    )
    result = cli("validate")
    assert result.code == 1, result.output
    assert (
        "monitor.yaml:5:10: checks.wrong-scheme.dsn: expected a mysql:// or mariadb:// DSN, "
        "got postgresql://" in result.output
    )
    assert "monitor.yaml:7:5: checks.no-dsn.dsn: missing required key 'dsn'" in result.output
    assert "checks.good" not in result.output
    assert PASSWORD not in result.output


# --- through the CLI --------------------------------------------------------------------------


@pytest.mark.slow
def test_check_through_the_cli(server, cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          db:
            probe: mysql
            dsn: {SHARED_DSN}
            stats: true
            thresholds:
              - {{metric: query_time, above: 2s, severity: medium}}
              - {{metric: threads_connected, above: 500, severity: high}}
          db-wrong-password:
            probe: mysql
            dsn: mysql://root:{PASSWORD}@127.0.0.1:3306/test
        """
    )
    result = cli("check", "--format", "json")
    assert result.code == 1, result.output
    rows = {row["check"]: row for row in result.json()}
    assert rows["db"]["ok"] is True, rows["db"]["message"]
    assert rows["db"]["metrics"]["threads_connected"] >= 1
    assert 0 < rows["db"]["metrics"]["connect_time"] < 1
    assert rows["db-wrong-password"]["ok"] is False
    assert "auth failed: Access denied for user 'root'" in rows["db-wrong-password"]["message"]
    assert PASSWORD not in result.output


# --- private servers: TLS, and a primary with a replica ------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def primary(certs):
    """A MariaDB with TLS on and a binary log, replicated by `replica`."""
    options = (f"--ssl-cert={certs.cert}", f"--ssl-key={certs.key}", f"--ssl-ca={certs.ca}")
    try:
        server = MariadbServer("--server-id=1", "--log-bin=primary-bin", *options).start()
    except MariadbUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replica(primary):
    server = MariadbServer("--server-id=2", "--relay-log=replica-relay").start()
    server.sql(
        f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port}, "
        "MASTER_USER='root', MASTER_PASSWORD='', MASTER_CONNECT_RETRY=1"
    )
    server.sql("START SLAVE")
    wait_for(server, io="Yes", sql="Yes")
    yield server
    server.stop()


def wait_for(server: MariadbServer, *, io: str, sql: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        [status] = server.sql("SHOW SLAVE STATUS")
        if (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == (io, sql):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"replica never reached IO={io}, SQL={sql}: {status}")
        time.sleep(0.1)


def replicated(server: MariadbServer, count: str) -> None:
    """Wait until `count` (a query selecting `n`) finds a row on the replica."""
    deadline = time.monotonic() + 30
    while server.sql(count)[0]["n"] == 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"never replicated: {count}")
        time.sleep(0.1)


@pytest.mark.slow
def test_tls_with_a_private_ca(primary, certs, tmp_path):
    (tmp_path / "ca.pem").write_bytes(certs.ca.read_bytes())
    dsn = primary.dsn()
    trusted = check_once(
        "mysql",
        {"dsn": dsn, "tls": True, "ca_bundle": "ca.pem", "query": ENCRYPTED},
        base_dir=tmp_path,
    )
    untrusted = mysql({"dsn": dsn, "tls": True})
    missing = mysql({"dsn": dsn, "tls": True, "ca_bundle": str(tmp_path / "nope.pem")})
    assert trusted.ok, trusted.message
    assert trusted.metrics["value"] == 1  # the session is encrypted
    assert untrusted.message.startswith(
        f"cannot connect to {dsn}: TLS failed: self-signed certificate in certificate chain"
    )
    assert not missing.ok
    assert missing.message.startswith(f"cannot load ca_bundle {tmp_path / 'nope.pem'}: ")


@pytest.mark.slow
def test_tls_checks_the_host_name(primary, tmp_path):
    # a trusted certificate for another name: the probe reaches it as 127.0.0.1
    wrong = make_certificates(tmp_path / "wrong", hostnames=("db.example",))
    with MariadbServer(
        f"--ssl-cert={wrong.cert}", f"--ssl-key={wrong.key}", f"--ssl-ca={wrong.ca}"
    ) as other:
        result = mysql({"dsn": other.dsn(), "tls": True, "ca_bundle": str(wrong.ca)})
    assert not result.ok
    assert result.message.startswith(f"cannot connect to {other.dsn()}: TLS failed: ")
    assert "127.0.0.1" in result.message  # OpenSSL names the address that did not match


@pytest.mark.slow
def test_replica_lag_and_stopped_replication(primary, replica):
    dsn = replica.dsn()
    healthy = mysql({"dsn": dsn, "stats": True})
    assert healthy.ok, healthy.message
    assert healthy.metrics["replication_lag"] == 0
    assert healthy.message.endswith("; replica 0s behind")
    assert undeclared(MysqlProbe, healthy) == []
    [alert] = fired_alerts(healthy, [{"metric": "replication_lag", "above": -1}])
    assert alert.rule == "replication_lag"
    # the primary is no replica: no lag, no replication verdict
    assert "replication_lag" not in mysql({"dsn": primary.dsn(), "stats": True}).metrics

    replica.sql("STOP SLAVE SQL_THREAD")
    wait_for(replica, io="Yes", sql="No")
    stopped = mysql({"dsn": dsn, "stats": True})
    assert not stopped.ok
    assert stopped.message == f"{dsn}: the replica's SQL thread is stopped: it was stopped"
    assert "threads_connected" in stopped.metrics  # figures measured before the verdict
    assert mysql({"dsn": dsn}).ok  # without stats, replication is not looked at

    # a change the replica cannot apply stops its SQL thread with an error
    replica.sql("START SLAVE SQL_THREAD")
    primary.sql("CREATE DATABASE app")
    primary.sql("CREATE TABLE app.jobs (id INT PRIMARY KEY)")
    replicated(
        replica, "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_name = 'jobs'"
    )
    replica.sql("INSERT INTO app.jobs VALUES (1)")  # written on the replica by mistake
    primary.sql("INSERT INTO app.jobs VALUES (1)")
    wait_for(replica, io="Yes", sql="No")
    broken = mysql({"dsn": dsn, "stats": True})
    assert not broken.ok
    assert broken.message.startswith(f"{dsn}: the replica's SQL thread is stopped: ")
    assert "Duplicate entry '1'" in broken.message

    replica.sql("DELETE FROM app.jobs")  # the primary's row then applies
    replica.sql("START SLAVE SQL_THREAD")
    wait_for(replica, io="Yes", sql="Yes")
    replicated(replica, "SELECT COUNT(*) AS n FROM app.jobs")
    replica.sql("STOP SLAVE IO_THREAD")
    wait_for(replica, io="No", sql="Yes")
    unfed = mysql({"dsn": dsn, "stats": True})
    assert not unfed.ok
    assert unfed.message == (
        f"{dsn}: the replica is not receiving from 127.0.0.1:{primary.port}: IO thread No"
    )
    replica.sql("START SLAVE IO_THREAD")
    wait_for(replica, io="Yes", sql="Yes")
    assert mysql({"dsn": dsn, "stats": True}).ok
