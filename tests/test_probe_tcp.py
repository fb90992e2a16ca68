"""The tcp probe against real listeners on loopback (and the local Redis)."""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest

from watchkeeper.engine.testing import (
    HttpTestServer,
    TcpTestServer,
    check_once,
    free_port,
    make_certificates,
)


def chat(banner: bytes = b"", hang_up: bool = False):
    """A connection handler: greet with a banner (then hang up, if told), answer PING."""

    def handle(conn: socket.socket) -> None:
        conn.sendall(banner)
        if hang_up:
            return
        while data := conn.recv(1024):
            if data.strip() == b"PING":
                conn.sendall(b"PONG\r\n")

    return handle


@pytest.fixture
def chat_server():
    """Start a chatting TcpTestServer; return its port."""
    servers: list[TcpTestServer] = []

    def start(banner: bytes = b"", hang_up: bool = False) -> int:
        servers.append(TcpTestServer(chat(banner, hang_up)).start())
        return servers[-1].port

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"), valid_for=dt.timedelta(days=10))


@pytest.fixture
def tls_server(certs):
    with HttpTestServer(certs.server_context()) as server:
        yield server


def test_connect_time(chat_server):
    port = chat_server()
    result = check_once("tcp", {"host": "127.0.0.1", "port": port})
    assert result.ok, result.message
    assert result.message.startswith(f"connected to 127.0.0.1:{port} in ")
    assert 0 < result.metrics["connect_time"] < 1
    assert set(result.metrics) == {"connect_time"}


def test_connection_refused():
    port = free_port()
    result = check_once("tcp", {"host": "127.0.0.1", "port": port})
    assert not result.ok
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_banner_matches(chat_server):
    port = chat_server(banner=b"220 mail.example.com ESMTP ready\r\n")
    result = check_once(
        "tcp", {"host": "127.0.0.1", "port": port, "expect_regex": r"^220 .* ESMTP"}
    )
    assert result.ok, result.message
    assert result.metrics["response_time"] < 1


def test_send_then_expect(chat_server):
    port = chat_server()
    result = check_once(
        "tcp", {"host": "127.0.0.1", "port": port, "send": "PING\r\n", "expect_regex": "PONG"}
    )
    assert result.ok, result.message


def test_unexpected_answer_is_quoted(chat_server):
    port = chat_server(banner=b"-ERR go away\r\n", hang_up=True)
    result = check_once("tcp", {"host": "127.0.0.1", "port": port, "expect_regex": r"^\+OK"})
    assert not result.ok
    assert result.message.startswith(f"no match for /^\\+OK/ from 127.0.0.1:{port} (")
    assert result.message.endswith("(the connection closed; received '-ERR go away\\r\\n')")


def test_silent_server_times_out():
    started = time.monotonic()
    with TcpTestServer() as silent:
        result = check_once(
            "tcp", {"host": "127.0.0.1", "port": silent.port, "expect_regex": "hello"}, timeout=1
        )
    assert time.monotonic() - started < 1.5
    assert not result.ok
    assert "timed out after 1s; received nothing" in result.message
    assert result.details["timeout"] is True


def test_send_and_expect_against_redis():
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (tests/services.sh starts it)")
    result = check_once(
        "tcp",
        {"host": "127.0.0.1", "port": 6379, "send": "PING\r\n", "expect_regex": r"^\+PONG"},
    )
    assert result.ok, result.message


def test_tls_handshake_and_certificate_expiry(tls_server, certs):
    result = check_once(
        "tcp",
        {"host": "127.0.0.1", "port": tls_server.port, "tls": True, "ca_bundle": str(certs.ca)},
    )
    assert result.ok, result.message
    assert "TLS in" in result.message
    expected = (certs.not_after - dt.datetime.now(dt.UTC)).total_seconds()
    assert result.metrics["certificate_expiry"] == pytest.approx(expected, abs=60)
    assert result.metrics["tls_time"] > 0


def test_tls_untrusted_and_unverified(tls_server):
    options = {"host": "127.0.0.1", "port": tls_server.port, "tls": True}
    result = check_once("tcp", options)
    assert not result.ok
    assert result.message == (
        f"TLS certificate of 127.0.0.1:{tls_server.port} is not trusted: "
        "unable to get local issuer certificate"
    )
    result = check_once("tcp", {**options, "verify": False})
    assert result.ok, result.message
    assert result.metrics["certificate_expiry"] > 9 * 86400


def test_tls_server_name_is_verified(tls_server, certs):
    options = {
        "host": "127.0.0.1",
        "port": tls_server.port,
        "tls": True,
        "ca_bundle": str(certs.ca),
    }
    assert check_once("tcp", {**options, "server_name": "localhost"}).ok
    result = check_once("tcp", {**options, "server_name": "www.example.org"})
    assert not result.ok
    assert "www.example.org" in result.message


def test_tls_then_send_and_expect(tls_server, certs):
    tls_server.reply("/", body="hi")
    result = check_once(
        "tcp",
        {
            "host": "127.0.0.1",
            "port": tls_server.port,
            "tls": True,
            "ca_bundle": str(certs.ca),
            "send": "GET / HTTP/1.0\r\n\r\n",
            "expect_regex": r"^HTTP/1\.0 200",
        },
    )
    assert result.ok, result.message


def test_tls_against_a_plain_server(chat_server):
    port = chat_server(banner=b"hello, plain text here\r\n")
    result = check_once("tcp", {"host": "127.0.0.1", "port": port, "tls": True, "verify": False})
    assert not result.ok
    assert result.message.startswith(f"TLS handshake with 127.0.0.1:{port} failed")
