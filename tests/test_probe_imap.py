"""The imap probe against a real Dovecot the tests start (and small TCP responders).

Dovecot runs twice: with TLS from a throwaway CA (STARTTLS on the IMAP port, implicit
TLS on the IMAPS port) and without TLS (it then offers no STARTTLS). A TcpTestServer
plays the servers Dovecot cannot be made into: one that greets with `* BYE`, one that
never answers, one that sends bytes after agreeing to STARTTLS.
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
from watchkeeper.plugins.probes.imap import ImapProbe

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


@pytest.fixture(scope="module")
def plain_dovecot(tmp_path_factory):
    try:
        server = DovecotServer(tmp_path_factory.mktemp("dovecot-plain"), tls=False).start()
    except DovecotUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


def imap(port: int, timeout: float = 5, **options):
    return check_once("imap", {"host": "127.0.0.1", "port": port, **options}, timeout=timeout)


def test_starttls_and_login_through_the_cli(dovecot, certs, cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          mailbox:
            probe: imap
            host: 127.0.0.1
            port: {dovecot.imap}
            ca_bundle: {certs.ca}
            username: {USER}
            password: ${{IMAP_PASSWORD}}
            thresholds: [{{metric: certificate_expiry, below: 7d, severity: warning}}]
        """
    )
    result = cli("check", "mailbox", "--format", "json", env={"IMAP_PASSWORD": PASSWORD})
    assert result.code == 0, result.output
    [row] = result.json()
    assert row["message"].startswith(f"IMAP 127.0.0.1:{dovecot.imap} ready in ")
    assert (
        f"(STARTTLS, TLSv1.3, logged in as {USER}); certificate expires in 30d" in (row["message"])
    )
    assert set(row["metrics"]) == {"connect_time", "handshake_time", "certificate_expiry"}
    assert 29 * DAY < row["metrics"]["certificate_expiry"] <= 30 * DAY
    assert PASSWORD not in result.output


def test_wrong_password_is_down_and_never_shown(dovecot, certs, cli, write_config):
    wrong = "not-the-Pa55word"
    write_config(
        f"""
        version: 1
        checks:
          mailbox:
            probe: imap
            host: 127.0.0.1
            port: {dovecot.imap}
            ca_bundle: {certs.ca}
            username: {USER}
            password: ${{IMAP_PASSWORD}}
        """
    )
    result = cli("check", "mailbox", "--format", "json", env={"IMAP_PASSWORD": wrong})
    assert result.code == 1, result.output
    [row] = result.json()
    assert row["message"] == (
        f"IMAP 127.0.0.1:{dovecot.imap} refused the login as '{USER}': authentication failed"
    )
    assert wrong not in result.output


def test_implicit_tls(dovecot, certs):
    result = imap(dovecot.imaps, tls="implicit", ca_bundle=str(certs.ca))
    assert result.ok, result.message
    assert "(implicit TLS, TLSv1.3)" in result.message
    assert 0 < result.metrics["connect_time"] < 1
    assert 0 < result.metrics["handshake_time"] < 2
    assert undeclared(ImapProbe, result) == []


def test_no_tls_login(dovecot):
    result = imap(dovecot.imap, tls="none", username=USER, password=PASSWORD)
    assert result.ok, result.message
    assert f"(no TLS, logged in as {USER})" in result.message
    assert set(result.metrics) == {"connect_time", "handshake_time"}


def test_an_untrusted_certificate_is_down_unless_verify_is_off(dovecot):
    result = imap(dovecot.imaps, tls="implicit")
    assert not result.ok
    assert result.message == (
        f"TLS certificate of 127.0.0.1:{dovecot.imaps} is not trusted: "
        "unable to get local issuer certificate"
    )
    assert imap(dovecot.imaps, tls="implicit", verify=False).ok


def test_no_starttls_offered(plain_dovecot):
    result = imap(plain_dovecot.imap)
    assert not result.ok
    assert result.message == (
        f"IMAP 127.0.0.1:{plain_dovecot.imap} does not offer STARTTLS; set `tls: none` to "
        "check it without TLS, or `tls: implicit` for its TLS port"
    )
    assert imap(plain_dovecot.imap, tls="none").ok


def test_connection_refused():
    port = free_port()
    result = imap(port, tls="implicit")
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_a_bye_greeting_is_down():
    def bye(conn: socket.socket) -> None:
        conn.sendall(b"* BYE too many connections from your address\r\n")

    with TcpTestServer(bye) as server:
        result = imap(server.port, tls="none")
    assert result.message == (
        f"IMAP 127.0.0.1:{server.port} greeted with '* BYE too many connections from your address'"
    )


def test_a_silent_server_times_out_in_time():
    with TcpTestServer() as silent:
        result = imap(silent.port, timeout=1)
    assert (
        result.message
        == f"timed out after 1s waiting for the greeting from 127.0.0.1:{silent.port}"
    )
    assert result.details["timeout"] is True


def test_bytes_after_starttls_are_refused(certs):
    def injecting(conn: socket.socket) -> None:
        conn.sendall(b"* OK ready\r\n")
        for line in conn.makefile("rb"):
            tag = line.split()[0]
            if b"CAPABILITY" in line:
                conn.sendall(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n" + tag + b" OK done\r\n")
            elif b"STARTTLS" in line:
                conn.sendall(tag + b" OK begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
                return

    with TcpTestServer(injecting) as server:
        result = imap(server.port, ca_bundle=str(certs.ca))
    assert result.message == f"IMAP 127.0.0.1:{server.port} sent data after agreeing to STARTTLS"


def test_validate_refuses_bad_options(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          mailbox:
            probe: imap
            host: mail.example.com
            port: 0
            tls: sometimes
          half-login:
            probe: imap
            host: mail.example.com
            username: alice
        """
    )
    result = cli("validate")
    assert result.code == 1
    assert "checks.mailbox.port: input should be greater than or equal to 1" in result.output
    assert "checks.mailbox.tls: expected 'none', 'starttls' or 'implicit', got 'sometimes'" in (
        result.output
    )
    assert "checks.half-login: username and password go together: set both, or neither" in (
        result.output
    )


def test_keeps_the_contract():
    assert contract_problems(ImapProbe) == []
    with TcpTestServer() as silent:
        options = {"host": "127.0.0.1", "port": silent.port}
        outcome = anyio.run(lambda: acheck_cancelled("imap", options))
    assert outcome.cancelled
    assert outcome.returned is None
