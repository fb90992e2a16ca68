"""The pop3 probe against a real Dovecot the tests start (and small TCP responders).

Dovecot runs with TLS from a throwaway CA (STLS on the POP3 port, implicit TLS on the
POP3S port) and without TLS (it then offers no STLS); a TcpTestServer plays a server
that greets with `-ERR`.
"""

from __future__ import annotations

import datetime as dt
import socket

import anyio
import pytest

from tests.dovecot_server import PASSWORD, USER, DovecotServer, DovecotUnavailable
from watchkeeper.engine.run.declared_metrics import undeclared
from watchkeeper.engine.testing import (
    TcpTestServer,
    acheck_cancelled,
    check_once,
    contract_problems,
    free_port,
    make_certificates,
)
from watchkeeper.plugins.probes.pop3 import Pop3Probe

pytestmark = pytest.mark.slow
DAY = 86400.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"), valid_for=dt.timedelta(days=30))


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory, certs):
    try:
        server = DovecotServer(tmp_path_factory.mktemp("dovecot"), certs).start()
    except DovecotUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


def pop3(port: int, timeout: float = 5, **options):
    return check_once("pop3", {"host": "127.0.0.1", "port": port, **options}, timeout=timeout)


def test_stls_and_login_through_the_cli(dovecot, certs, cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          mailbox:
            probe: pop3
            host: 127.0.0.1
            port: {dovecot.pop3}
            ca_bundle: {certs.ca}
            username: {USER}
            password: ${{POP3_PASSWORD}}
            thresholds: [{{metric: handshake_time, above: 2s, severity: warning}}]
        """
    )
    result = cli("check", "mailbox", "--format", "json", env={"POP3_PASSWORD": PASSWORD})
    assert result.code == 0, result.output
    [row] = result.json()
    assert row["message"].startswith(f"POP3 127.0.0.1:{dovecot.pop3} ready in ")
    assert (
        f"(STARTTLS, TLSv1.3, logged in as {USER}); certificate expires in 30d" in (row["message"])
    )
    assert set(row["metrics"]) == {"connect_time", "handshake_time", "certificate_expiry"}
    assert 29 * DAY < row["metrics"]["certificate_expiry"] <= 30 * DAY
    assert PASSWORD not in result.output


def test_wrong_password_is_down_and_never_shown(dovecot, certs):
    wrong = "not-the-Pa55word"
    result = pop3(
        dovecot.pop3s, tls="implicit", ca_bundle=str(certs.ca), username=USER, password=wrong
    )
    assert not result.ok
    assert result.message == (
        f"POP3 127.0.0.1:{dovecot.pop3s} refused the login as '{USER}': authentication failed"
    )
    assert wrong not in result.message
    assert "certificate_expiry" in result.metrics  # measured before the login failed


def test_implicit_tls_and_no_tls(dovecot, certs):
    result = pop3(dovecot.pop3s, tls="implicit", ca_bundle=str(certs.ca))
    assert result.ok, result.message
    assert "(implicit TLS, TLSv1.3)" in result.message
    assert undeclared(Pop3Probe, result) == []
    result = pop3(dovecot.pop3, tls="none", username=USER, password=PASSWORD)
    assert result.ok, result.message
    assert f"(no TLS, logged in as {USER})" in result.message
    assert set(result.metrics) == {"connect_time", "handshake_time"}


def test_no_stls_offered(tmp_path):
    try:
        server = DovecotServer(tmp_path, tls=False).start()
    except DovecotUnavailable as exc:
        pytest.skip(str(exc))
    try:
        result = pop3(server.pop3)
    finally:
        server.stop()
    assert not result.ok
    assert result.message == (
        f"POP3 127.0.0.1:{server.pop3} does not offer STLS; set `tls: none` to "
        "check it without TLS, or `tls: implicit` for its TLS port"
    )


def test_connection_refused():
    port = free_port()
    result = pop3(port)
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_an_err_greeting_is_down():
    def busy(conn: socket.socket) -> None:
        conn.sendall(b"-ERR [SYS/TEMP] server busy, try later\r\n")

    with TcpTestServer(busy) as server:
        result = pop3(server.port, tls="none")
    assert result.message == (
        f"POP3 127.0.0.1:{server.port} greeted with '-ERR [SYS/TEMP] server busy, try later'"
    )


def test_a_server_without_capa_is_still_up_without_tls():
    def old(conn: socket.socket) -> None:
        conn.sendall(b"+OK POP3 ready\r\n")
        for line in conn.makefile("rb"):
            conn.sendall(b"-ERR unknown command\r\n" if line.startswith(b"CAPA") else b"+OK\r\n")

    with TcpTestServer(old) as server:
        assert pop3(server.port, tls="none").ok
        result = pop3(server.port)
    assert result.message.startswith(f"POP3 127.0.0.1:{server.port} does not offer STLS;")


def test_validate_refuses_a_password_without_a_username(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          mailbox:
            probe: pop3
            host: mail.example.com
            password: ${POP3_PASSWORD}
        """
    )
    result = cli("validate", env={"POP3_PASSWORD": "x"})
    assert result.code == 1
    assert "checks.mailbox: username and password go together: set both, or neither" in (
        result.output
    )


def test_keeps_the_contract():
    assert contract_problems(Pop3Probe) == []
    with TcpTestServer() as silent:
        options = {"host": "127.0.0.1", "port": silent.port, "tls": "none"}
        outcome = anyio.run(lambda: acheck_cancelled("pop3", options))
    assert outcome.cancelled
    assert outcome.returned is None
