"""https:// hops without a proxy go out on the probe's own asyncio protocol over asyncio's TLS
transport (`PlainHop`); with it switched off they go through httpx. Each case here runs
through both paths against a real server on loopback and must give the same result:
verified and unverified handshakes, every kind of refused certificate, servers that are not
TLS, that close or reset during the handshake or after it, that never answer, redirects
between http and https, and a host name that resolves to two addresses."""

from __future__ import annotations

import datetime as dt
import re
import socket
import struct
import time

import pytest

from watchkeeper.engine.testing import HttpTestServer, TcpTestServer, check_once, make_certificates
from watchkeeper.plugins.probes.http_plain_hop import PlainHop
from watchkeeper.plugins.probes.http_request import PREPARED


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"), valid_for=dt.timedelta(days=30))


def both_paths(options: dict, timeout: float = 5.0) -> tuple[tuple, tuple]:
    """The result of one check on the asyncio path, then on the httpx path, in a shape
    that compares (times and ephemeral ports masked)."""
    shapes = []
    for enabled in (True, False):
        PlainHop.enabled = enabled
        PREPARED.clear()
        try:
            result = check_once("http", options, timeout=timeout)
        finally:
            PlainHop.enabled = True
        message = re.sub(r"\bin [0-9.]+m?s\b", "in <t>", result.message)
        metrics = {
            k: round(v / 60) if k == "certificate_expiry" else v
            for k, v in result.metrics.items()
            if k != "response_time"
        }
        shapes.append((result.ok, message, metrics, result.details))
    return shapes[0], shapes[1]


def assert_same(options: dict, timeout: float = 5.0) -> tuple:
    fast, httpx_path = both_paths(options, timeout)
    assert fast == httpx_path
    return fast


def test_verified_handshake_and_expiry(certs):
    with HttpTestServer(certs.server_context()) as server:
        server.reply("/", json={"status": "ok"})
        ok, message, metrics, _ = assert_same({"url": server.url("/"), "ca_bundle": str(certs.ca)})
    assert ok, message
    assert metrics["certificate_expiry"] == pytest.approx(30 * 24 * 60, abs=2)


def test_unverified_handshake_reports_expiry(certs):
    with HttpTestServer(certs.server_context()) as server:
        server.reply("/")
        ok, _, metrics, _ = assert_same({"url": server.url("/"), "verify": False})
    assert ok
    assert "certificate_expiry" in metrics


def test_untrusted_certificate(certs):
    with HttpTestServer(certs.server_context()) as server:
        server.reply("/")
        ok, message, _, _ = assert_same({"url": server.url("/")})
    assert not ok
    assert "is not trusted" in message


@pytest.mark.parametrize(
    "kind", ["expired", "hostname", "self_signed"], ids=["expired", "hostname", "self-signed"]
)
def test_refused_certificates(tmp_path, kind):
    made = {
        "expired": dict(valid_for=dt.timedelta(hours=-1)),
        "hostname": dict(hostnames=("other.example",)),
        "self_signed": dict(self_signed=True),
    }[kind]
    bad = make_certificates(tmp_path, **made)
    with HttpTestServer(bad.server_context()) as server:
        server.reply("/")
        ok, message, _, _ = assert_same({"url": server.url("/"), "ca_bundle": str(bad.ca)})
    assert not ok
    assert "not trusted" in message


def test_client_certificate_required_and_given(certs):
    with HttpTestServer(certs.server_context(require_client_cert=True)) as server:
        server.reply("/")
        options = {"url": server.url("/"), "ca_bundle": str(certs.ca)}
        # under TLS 1.3 the refusal comes after the handshake, as an alert the server sends
        # and then closes; when its close overtakes the alert, either path sees a reset
        url = server.url("/")
        refused = {
            f"TLS handshake with {url} failed: tlsv13 alert certificate required",
            f"request to {url} failed: ReadError",
        }
        for missing in both_paths(options):
            assert not missing[0]
            assert missing[1] in refused
        given = assert_same(
            {**options, "client_cert": str(certs.client_cert), "client_key": str(certs.client_key)}
        )
    assert given[0], given[1]


def test_plain_http_server_behind_an_https_url():
    with HttpTestServer() as server:
        server.reply("/")
        ok, message, _, _ = assert_same({"url": server.url("/").replace("http:", "https:")})
    assert not ok
    assert "TLS handshake" in message


def _close_at_once(conn: socket.socket) -> None:
    conn.recv(65536)  # the client hello read, so the close is a FIN, not a reset
    conn.close()


def _reset(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _garbage(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" * 4)
    time.sleep(0.2)


@pytest.mark.parametrize("handler", [_close_at_once, _reset, _garbage], ids=lambda h: h.__name__)
def test_servers_that_break_the_handshake(handler):
    with TcpTestServer(handler) as server:
        ok, message, _, details = assert_same({"url": f"https://127.0.0.1:{server.port}/"})
    assert not ok, message
    assert details["error"] == "ConnectError"


def test_handshake_that_never_happens_times_out_connecting():
    with TcpTestServer() as silent:
        ok, message, _, _ = assert_same({"url": f"https://127.0.0.1:{silent.port}/"}, timeout=1)
    assert not ok
    assert "connecting to" in message


def _tls_then(certs, after):
    context = certs.server_context()

    def handler(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)
            after(tls)

    return handler


@pytest.mark.parametrize(
    "after",
    [
        lambda tls: None,  # closes after the handshake, without a word
        lambda tls: tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
        lambda tls: tls.sendall(b"HTTP/1.1 200 OK\r\n\r\nuntil the close"),
        lambda tls: tls.sendall(b"NOT HTTP\r\n\r\n"),
        lambda tls: tls.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ),
    ],
    ids=["silent-close", "short-body", "close-framed", "not-http", "chunked"],
)
def test_responses_after_the_handshake(certs, after):
    with TcpTestServer(_tls_then(certs, after)) as server:
        assert_same({"url": f"https://127.0.0.1:{server.port}/", "ca_bundle": str(certs.ca)})


def test_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ok, message, _, _ = assert_same({"url": f"https://127.0.0.1:{port}/"})
    assert not ok
    assert "connection refused" in message


def test_redirects_between_http_and_https(certs):
    with HttpTestServer(certs.server_context()) as tls, HttpTestServer() as plain:
        tls.reply("/final", json={"ok": True})
        tls.reply("/down", status=302, headers={"Location": plain.url("/end")})
        plain.reply("/up", status=301, headers={"Location": tls.url("/final")})
        plain.reply("/end")
        for start in (plain.url("/up"), tls.url("/down")):
            ok, message, _, details = assert_same({"url": start, "ca_bundle": str(certs.ca)})
            assert ok, message
            assert details["redirects"] == 1


def test_host_name_with_two_addresses(certs):
    # localhost is ::1 and 127.0.0.1; the server listens on the second only
    with HttpTestServer(certs.server_context()) as server:
        server.reply("/")
        url = server.url("/").replace("127.0.0.1", "localhost")
        ok, message, _, _ = assert_same({"url": url, "ca_bundle": str(certs.ca)})
    assert ok, message


def test_tls_errors_name_the_handshake_not_a_python_class(certs):
    """The messages a user reads: no exception class names, no OpenSSL file positions."""
    with HttpTestServer(certs.server_context()) as server:
        server.reply("/")
        _, message, _, _ = both_paths({"url": server.url("/")})[0]
    assert "_ssl.c" not in message
    assert "SSLCertVerificationError" not in message
