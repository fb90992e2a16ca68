"""The tls probe against local TLS servers with certificates made in the test.

Plain TLS: `HttpTestServer` serving each kind of certificate. STARTTLS: a real aiosmtpd
SMTP server, a small real IMAP responder (the few lines of RFC 3501 STARTTLS), the
local PostgreSQL (which has TLS off) and, marked slow, a PostgreSQL with `ssl = on`
started by the test with initdb/pg_ctl.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from watchkeeper.engine.testing import (
    HttpTestServer,
    TcpTestServer,
    check_once,
    fired_alerts,
    free_port,
    make_certificates,
)
from watchkeeper.plugins.probes.tls import hostname_matches

DAY = 86400.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Certificates of every kind, each in its own folder with its own CA."""
    root = tmp_path_factory.mktemp("pki")
    return {
        "good": make_certificates(root / "good", valid_for=dt.timedelta(days=90)),
        "short": make_certificates(root / "short", valid_for=dt.timedelta(days=5)),
        "expired": make_certificates(root / "expired", valid_for=dt.timedelta(days=-2)),
        "self-signed": make_certificates(root / "self", self_signed=True),
        "wrong-host": make_certificates(root / "wrong", hostnames=("other.example",)),
    }


def serve(certs, **context_options):
    context = certs.server_context()
    for name, value in context_options.items():
        setattr(context, name, value)
    return HttpTestServer(context)


def tls(port: int, certs=None, **options):
    if certs is not None:
        options.setdefault("ca_bundle", str(certs.ca))
    return check_once("tls", {"host": "127.0.0.1", "port": port, **options}, timeout=5)


def test_valid_certificate(pki):
    certs = pki["good"]
    with serve(certs) as server:
        result = tls(server.port, certs)
    assert result.ok, result.message
    assert result.metrics["chain_valid"] == 1
    assert result.metrics["hostname_valid"] == 1
    assert 89 * DAY < result.metrics["certificate_expiry"] <= 90 * DAY
    assert 0 < result.metrics["handshake_time"] < 1
    assert set(result.metrics) == {
        "certificate_expiry",
        "chain_valid",
        "hostname_valid",
        "handshake_time",
    }
    details = result.details
    assert details["subject"] == "CN=localhost"
    assert details["issuer"] == "CN=watchkeeper test CA"
    assert details["sans"] == ["localhost", "127.0.0.1"]
    assert details["not_after"] == certs.not_after.isoformat().replace("+00:00", "Z")
    assert details["tls_version"].startswith("TLSv1.")
    assert "chain_error" not in details
    assert result.message.startswith(
        f"127.0.0.1:{server.port}: certificate CN=localhost for localhost, 127.0.0.1 issued "
        "by CN=watchkeeper test CA, expires in 90d ("
    )


def test_short_expiry_breaches_a_threshold(pki):
    certs = pki["short"]
    with serve(certs) as server:
        result = tls(server.port, certs)
    assert result.ok, result.message  # valid, just soon to expire
    assert 4 * DAY < result.metrics["certificate_expiry"] < 5 * DAY
    assert "expires in 5d (" in result.message
    rule = {"metric": "certificate_expiry", "below": "14d", "severity": "warning"}
    [alert] = fired_alerts(result, [rule])
    assert alert.rule == "certificate_expiry"
    assert alert.severity == "warning"
    # just under five days: 4d23h59m… or, within the display's rounding to seconds, 5d
    assert re.match(r"certificate_expiry is (4d[\dhms]*|5d), ", alert.summary), alert.summary
    assert alert.summary.endswith("below the warning threshold 14d")
    assert fired_alerts(result, [{**rule, "below": "3d"}]) == []


def test_wrong_hostname(pki):
    certs = pki["wrong-host"]
    with serve(certs) as server:
        result = tls(server.port, certs, server_name="localhost")
        lenient = tls(server.port, certs, server_name="localhost", require_valid=False)
        right = tls(server.port, certs, server_name="other.example")
    assert not result.ok
    assert result.metrics["chain_valid"] == 1
    assert result.metrics["hostname_valid"] == 0
    assert result.message.startswith(
        f"127.0.0.1:{server.port}: certificate does not match localhost; certificate "
        "CN=other.example for other.example issued by"
    )
    assert lenient.ok
    assert lenient.metrics == pytest.approx(result.metrics, abs=5)
    assert lenient.message.startswith(f"127.0.0.1:{server.port}: certificate does not match")
    assert right.ok, right.message


def test_self_signed(pki):
    certs = pki["self-signed"]
    with serve(certs) as server:
        result = tls(server.port, certs)
    assert not result.ok
    assert result.metrics["chain_valid"] == 0
    assert result.metrics["hostname_valid"] == 1
    assert result.metrics["certificate_expiry"] > 29 * DAY  # inspected all the same
    assert result.details["chain_error"] == "self-signed certificate"
    assert result.details["issuer"] == result.details["subject"] == "CN=localhost"
    assert result.message.startswith(
        f"127.0.0.1:{server.port}: certificate is not trusted (self-signed certificate); "
    )


def test_expired(pki):
    certs = pki["expired"]
    with serve(certs) as server:
        result = tls(server.port, certs)
        lenient = tls(server.port, certs, require_valid=False)
    assert not result.ok
    assert result.metrics["chain_valid"] == 0
    assert -2 * DAY - 60 < result.metrics["certificate_expiry"] < -2 * DAY + 60
    assert result.details["chain_error"] == "certificate has expired"
    assert "certificate is not trusted (certificate has expired)" in result.message
    assert "expired 2d ago (" in result.message
    assert lenient.ok  # require_valid: false leaves expiry to a threshold
    [alert] = fired_alerts(lenient, [{"metric": "certificate_expiry", "below": "14d"}])
    assert alert.summary.startswith("certificate_expiry is -")


def test_unknown_ca_against_the_system_store(pki):
    with serve(pki["good"]) as server:
        result = tls(server.port)  # no ca_bundle: the system's CAs do not know ours
    assert not result.ok
    assert result.details["chain_error"] == "unable to get local issuer certificate"
    assert result.metrics["chain_valid"] == 0


def test_server_name_is_sent_as_sni(pki):
    names = []
    certs = pki["good"]
    callback = lambda sock, name, context: names.append(name)  # noqa: E731
    with serve(certs, sni_callback=callback) as server:
        assert tls(server.port, certs, server_name="localhost").ok
        assert tls(server.port, certs).ok  # an address is never sent as SNI
        result = tls(server.port, certs, server_name="www.example.com")
    assert names == ["localhost", None, "www.example.com"]
    assert result.details["server_name"] == "www.example.com"
    assert result.metrics["hostname_valid"] == 0


def test_relative_ca_bundle_and_missing_file(pki, tmp_path):
    certs = pki["good"]
    (tmp_path / "ca.pem").write_bytes(certs.ca.read_bytes())
    with serve(certs) as server:
        options = {"host": "127.0.0.1", "port": server.port, "ca_bundle": "ca.pem"}
        assert check_once("tls", options, base_dir=tmp_path).ok
        missing = check_once("tls", {**options, "ca_bundle": "nope.pem"}, base_dir=tmp_path)
    assert not missing.ok
    assert missing.message.startswith("cannot load the CA bundle nope.pem: ")


def test_connection_refused():
    port = free_port()
    result = tls(port)
    assert not result.ok
    assert result.message == f"127.0.0.1:{port}: cannot connect: connection refused"
    assert result.metrics == {}


def test_not_a_tls_server():
    with HttpTestServer() as plain:
        result = tls(plain.port)
    assert not result.ok
    assert result.message.startswith(f"127.0.0.1:{plain.port}: TLS handshake failed: ")


def test_silent_server_times_out_in_the_handshake():
    with TcpTestServer() as silent:
        start = time.perf_counter()
        result = check_once("tls", {"host": "127.0.0.1", "port": silent.port}, timeout=1)
        elapsed = time.perf_counter() - start
    assert result.message == f"127.0.0.1:{silent.port}: timed out after 1s in the TLS handshake"
    assert result.details == {"timeout": True}
    assert elapsed < 1.5


# --- STARTTLS: SMTP -----------------------------------------------------------------------


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    controllers = []

    def start(tls_context: ssl.SSLContext | None) -> int:
        class Handler:
            pass

        port = free_port()
        controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=tls_context)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


def test_smtp_starttls(pki, smtp_server):
    certs = pki["short"]
    port = smtp_server(certs.server_context())
    result = tls(port, certs, starttls="smtp", server_name="localhost")
    assert result.ok, result.message
    assert result.message.startswith(f"127.0.0.1:{port} (STARTTLS smtp): certificate CN=localhost")
    assert result.metrics["certificate_expiry"] < 5 * DAY


def test_smtp_without_starttls(smtp_server):
    port = smtp_server(None)
    result = tls(port, starttls="smtp")
    assert not result.ok
    assert (
        result.message == f"127.0.0.1:{port} (STARTTLS smtp): SMTP server does not offer STARTTLS"
    )


def test_smtp_refusing_us():
    def refuse(conn: socket.socket) -> None:
        conn.sendall(b"554 5.7.1 no service for you\r\n")

    with TcpTestServer(refuse) as server:
        result = tls(server.port, starttls="smtp")
    assert result.message == (
        f"127.0.0.1:{server.port} (STARTTLS smtp): SMTP server greeted with "
        "'554 5.7.1 no service for you'"
    )


def test_silent_smtp_server_times_out_in_the_exchange():
    with TcpTestServer() as silent:
        result = check_once(
            "tls", {"host": "127.0.0.1", "port": silent.port, "starttls": "smtp"}, timeout=0.5
        )
    assert result.message == (
        f"127.0.0.1:{silent.port} (STARTTLS smtp): timed out after 500ms in the smtp "
        "STARTTLS exchange"
    )


# --- STARTTLS: IMAP -----------------------------------------------------------------------


def imap_server(context: ssl.SSLContext, answer: bytes = b"a001 OK Begin TLS now\r\n"):
    """A real, if tiny, IMAP server: greeting, CAPABILITY, STARTTLS, then TLS."""
    commands: list[str] = []

    def handle(conn: socket.socket) -> None:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
        reader = conn.makefile("rb")
        line = reader.readline().decode().strip()
        commands.append(line)
        tag, _, command = line.partition(" ")
        if command.upper() != "STARTTLS":
            conn.sendall(f"{tag} BAD unknown command\r\n".encode())
            return
        conn.sendall(b"* CAPABILITY IMAP4rev1\r\n" + answer)
        if b" OK" not in answer:
            return
        with context.wrap_socket(conn, server_side=True) as secure:
            secure.recv(1024)  # until the client goes

    server = TcpTestServer(handle)
    server.commands = commands
    return server


def test_imap_starttls(pki):
    certs = pki["good"]
    with imap_server(certs.server_context()) as server:
        result = tls(server.port, certs, starttls="imap")
    assert result.ok, result.message
    assert server.commands == ["a001 STARTTLS"]
    assert result.message.startswith(f"127.0.0.1:{server.port} (STARTTLS imap): certificate")


def test_imap_refusing_starttls(pki):
    with imap_server(pki["good"].server_context(), b"a001 NO not now\r\n") as server:
        result = tls(server.port, starttls="imap")
    assert result.message == (
        f"127.0.0.1:{server.port} (STARTTLS imap): IMAP server answered STARTTLS with "
        "'a001 NO not now'"
    )


def test_data_injected_after_starttls_is_refused(pki):
    injected = b"a001 OK Begin TLS now\r\n* injected before the handshake\r\n"
    with imap_server(pki["good"].server_context(), injected) as server:
        result = tls(server.port, starttls="imap")
    assert result.message.endswith("the server sent data after agreeing to STARTTLS")


# --- STARTTLS: PostgreSQL -----------------------------------------------------------------


def test_postgres_without_tls():
    """The local PostgreSQL (tests/services.sh) runs with ssl = off."""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError as exc:
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc}); tests/services.sh")
    result = tls(5432, starttls="postgres")
    if result.ok:
        pytest.skip("the local PostgreSQL has TLS on; test_postgres_starttls covers it")
    assert result.message == (
        "127.0.0.1:5432 (STARTTLS postgres): PostgreSQL does not accept TLS connections (ssl = off)"
    )


def _postgres_bin() -> Path | None:
    for folder in [
        Path(p).parent for p in (shutil.which("initdb"), shutil.which("pg_ctl")) if p
    ] + sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


@pytest.fixture
def postgres_with_tls(pki):
    """A PostgreSQL of our own with ssl = on and the `short` certificate, on a free port."""
    folder = _postgres_bin()
    if folder is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    certs = pki["short"]
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        run_as = ["runuser", "-u", "postgres", "--"]
    # not under pytest's tmp_path: its parents are private to the user running the tests
    scratch = tempfile.TemporaryDirectory(prefix="watchkeeper-pg-")
    home = Path(scratch.name)
    shutil.copy(certs.cert, home / "server.crt")
    shutil.copy(certs.key, home / "server.key")
    os.chmod(home / "server.key", 0o600)
    if run_as:
        for path in [home, *home.iterdir()]:
            shutil.chown(path, "postgres")
    data, port = home / "data", free_port()

    def run(*argv: str) -> None:
        done = subprocess.run([*run_as, *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

    run(str(folder / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    settings = (
        f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c ssl=on "
        f"-c ssl_cert_file={home}/server.crt -c ssl_key_file={home}/server.key -c fsync=off"
    )
    log = home / "log"
    run(str(folder / "pg_ctl"), "-D", str(data), "-o", settings, "-l", str(log), "-w", "start")
    try:
        yield port
    finally:
        subprocess.run(
            [*run_as, str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        scratch.cleanup()


@pytest.mark.slow
def test_postgres_starttls(pki, postgres_with_tls):
    port = postgres_with_tls
    result = tls(port, pki["short"], starttls="postgres", server_name="localhost")
    assert result.ok, result.message
    assert result.message.startswith(f"127.0.0.1:{port} (STARTTLS postgres): certificate")
    assert result.metrics["chain_valid"] == 1
    assert result.metrics["certificate_expiry"] < 5 * DAY


# --- through the CLI ----------------------------------------------------------------------


@pytest.mark.slow
def test_threshold_through_the_cli(pki, cli, write_config):
    certs = pki["short"]
    with serve(certs) as server:
        write_config(
            f"""
            version: 1
            checks:
              cert:
                probe: tls
                host: 127.0.0.1
                port: {server.port}
                server_name: localhost
                ca_bundle: {certs.ca}
                thresholds:
                  - {{metric: certificate_expiry, below: 14d, severity: warning}}
            notifiers:
              console: {{type: log}}
            routes:
              - match: {{}}
                notify: [console]
            """
        )
        checked = cli("check", "cert", "--format", "json")
        ran = cli("run", "--once", "--dry-run")
    assert checked.code == 0, checked.output
    [row] = checked.json()
    assert row["ok"] is True
    assert 4 * DAY < row["metrics"]["certificate_expiry"] < 5 * DAY
    assert row["metrics"]["chain_valid"] == 1
    assert ran.code == 0, ran.output
    assert "cert: certificate_expiry 5d below 14d (warning)" in ran.stdout  # the headline


# --- matching host names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sans", "name", "matches"),
    [
        ([("DNS", "example.com")], "example.com", True),
        ([("DNS", "example.com")], "EXAMPLE.com.", True),
        ([("DNS", "example.com")], "www.example.com", False),
        ([("DNS", "*.example.com")], "www.example.com", True),
        ([("DNS", "*.example.com")], "example.com", False),
        ([("DNS", "*.example.com")], "a.b.example.com", False),
        ([("DNS", "*.com")], "example.com", False),
        ([("DNS", "w*.example.com")], "www.example.com", False),
        ([("DNS", "xn--bcher-kva.example")], "bücher.example", True),
        ([("IP Address", "127.0.0.1")], "127.0.0.1", True),
        ([("IP Address", "2001:DB8:0:0:0:0:0:1\n")], "2001:db8::1", True),
        ([("DNS", "127.0.0.1")], "127.0.0.1", False),
        ([("IP Address", "127.0.0.1")], "localhost", False),
        ([], "localhost", False),
    ],
)
def test_hostname_matches(sans, name, matches):
    cert = {"subject": ((("commonName", name),),), "subjectAltName": tuple(sans)}
    assert hostname_matches(cert, name) is matches  # the subject's CN never counts
