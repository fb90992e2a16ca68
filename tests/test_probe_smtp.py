"""The smtp probe against real aiosmtpd servers the tests start (and small TCP responders).

aiosmtpd serves plain SMTP, STARTTLS with a certificate from a throwaway CA (AUTH only
after it), and implicit TLS; a TcpTestServer plays a server that greets with `554` and
one that never answers.
"""

from __future__ import annotations

import datetime as dt
import socket

import anyio
import pytest

from watchkeeper.engine.run.declared_metrics import undeclared
from watchkeeper.engine.testing import (
    TcpTestServer,
    acheck_cancelled,
    check_once,
    contract_problems,
    free_port,
    make_certificates,
)
from watchkeeper.plugins.probes.smtp import SmtpProbe

pytestmark = pytest.mark.slow
USER = "alice"
PASSWORD = "pa55-w0rd-of-alice"
DAY = 86400.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"), valid_for=dt.timedelta(days=30))


class Handler:
    """Accept every message (the probe never sends one)."""


def authenticate(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult

    good = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    return AuthResult(success=good, handled=False)


@pytest.fixture
def smtpd():
    """Start aiosmtpd servers on free ports; return their ports; stop them afterwards."""
    from aiosmtpd.controller import Controller

    controllers = []

    def start(**options) -> int:
        port = free_port()
        controller = Controller(Handler(), hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


def smtp(port: int, timeout: float = 5, **options):
    return check_once("smtp", {"host": "127.0.0.1", "port": port, **options}, timeout=timeout)


def test_starttls_and_login_through_the_cli(smtpd, certs, cli, write_config):
    port = smtpd(tls_context=certs.server_context(), authenticator=authenticate)
    write_config(
        f"""
        version: 1
        checks:
          mail:
            probe: smtp
            host: 127.0.0.1
            port: {port}
            ca_bundle: {certs.ca}
            username: {USER}
            password: ${{SMTP_PASSWORD}}
            thresholds: [{{metric: certificate_expiry, below: 7d, severity: warning}}]
        """
    )
    result = cli("check", "mail", "--format", "json", env={"SMTP_PASSWORD": PASSWORD})
    assert result.code == 0, result.output
    [row] = result.json()
    assert row["message"].startswith(f"SMTP 127.0.0.1:{port} ready in ")
    assert (
        f"(STARTTLS, TLSv1.3, logged in as {USER}); certificate expires in 30d" in (row["message"])
    )
    assert set(row["metrics"]) == {"connect_time", "handshake_time", "certificate_expiry"}
    assert 29 * DAY < row["metrics"]["certificate_expiry"] <= 30 * DAY
    assert PASSWORD not in result.output


def test_wrong_password_is_down_and_never_shown(smtpd, certs, cli, write_config):
    port = smtpd(tls_context=certs.server_context(), authenticator=authenticate)
    wrong = "not-the-Pa55word"
    write_config(
        f"""
        version: 1
        checks:
          mail:
            probe: smtp
            host: 127.0.0.1
            port: {port}
            ca_bundle: {certs.ca}
            username: {USER}
            password: ${{SMTP_PASSWORD}}
        """
    )
    result = cli("check", "mail", "--format", "json", env={"SMTP_PASSWORD": wrong})
    assert result.code == 1, result.output
    [row] = result.json()
    assert row["message"] == (
        f"SMTP 127.0.0.1:{port} refused the login as '{USER}': authentication failed (535)"
    )
    assert wrong not in result.output


def test_starttls_without_login(smtpd, certs):
    port = smtpd(tls_context=certs.server_context())
    result = smtp(port, ca_bundle=str(certs.ca))
    assert result.ok, result.message
    assert 0 < result.metrics["connect_time"] < 1
    assert 0 < result.metrics["handshake_time"] < 2
    assert undeclared(SmtpProbe, result) == []


def test_auth_only_after_starttls(smtpd, certs):
    port = smtpd(tls_context=certs.server_context(), authenticator=authenticate)
    result = smtp(port, tls="none", username=USER, password=PASSWORD)
    assert not result.ok
    assert result.message == (
        f"SMTP 127.0.0.1:{port} does not offer AUTH without TLS, so cannot log in as '{USER}'"
    )


def test_implicit_tls(smtpd, certs):
    port = smtpd(
        ssl_context=certs.server_context(), authenticator=authenticate, auth_require_tls=False
    )
    result = smtp(port, tls="implicit", ca_bundle=str(certs.ca), username=USER, password=PASSWORD)
    assert result.ok, result.message
    assert f"(implicit TLS, TLSv1.3, logged in as {USER})" in result.message
    assert "certificate_expiry" in result.metrics
    untrusted = smtp(port, tls="implicit")
    assert untrusted.message == (
        f"TLS certificate of 127.0.0.1:{port} is not trusted: "
        "unable to get local issuer certificate"
    )
    assert smtp(port, tls="implicit", verify=False).ok


def test_no_starttls_offered(smtpd):
    port = smtpd()
    result = smtp(port)
    assert not result.ok
    assert result.message == (
        f"SMTP 127.0.0.1:{port} does not offer STARTTLS; set `tls: none` to "
        "check it without TLS, or `tls: implicit` for its TLS port"
    )
    plain = smtp(port, tls="none")
    assert plain.ok, plain.message
    assert set(plain.metrics) == {"connect_time", "handshake_time"}


def test_connection_refused():
    port = free_port()
    result = smtp(port)
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_a_554_greeting_is_down():
    def refuse(conn: socket.socket) -> None:
        conn.sendall(b"554 5.3.2 mail.example.com not accepting connections\r\n")
        conn.recv(1024)

    with TcpTestServer(refuse) as server:
        result = smtp(server.port, tls="none")
    assert result.message == (
        f"SMTP 127.0.0.1:{server.port} greeted with 554 5.3.2 mail.example.com not accepting "
        "connections"
    )


def test_a_silent_server_times_out_in_time():
    with TcpTestServer() as silent:
        result = smtp(silent.port, timeout=1)
    assert result.message == (
        f"timed out after 1s waiting for the greeting from 127.0.0.1:{silent.port}"
    )
    assert result.details["timeout"] is True


def test_validate_refuses_bad_options(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          mail:
            probe: smtp
            host: mail.example.com
            tls: ssl
            port: 70000
        """
    )
    result = cli("validate")
    assert result.code == 1
    assert "checks.mail.tls: expected 'none', 'starttls' or 'implicit', got 'ssl'" in result.output
    assert "checks.mail.port: input should be less than or equal to 65535" in result.output


def test_keeps_the_contract():
    assert contract_problems(SmtpProbe) == []
    with TcpTestServer() as silent:
        options = {"host": "127.0.0.1", "port": silent.port}
        outcome = anyio.run(lambda: acheck_cancelled("smtp", options))
    assert outcome.cancelled
    assert outcome.returned is None
