"""`reuse_connections: true`: the http probe keeps connections open between runs.

Against a real TLS server on loopback that speaks HTTP/1.1 with keep-alive and counts,
on its side, the connections it accepts and the TLS handshakes it completes.
"""

from __future__ import annotations

import datetime as dt
import socket
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest
import yaml

from watchkeeper.engine.testing import TcpTestServer, make_certificates, open_probe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon_harness import Daemon


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"), valid_for=dt.timedelta(days=20))


class KeepAliveServer:
    """HTTP/1.1 with keep-alive, over TLS unless `certs` is None; `handshakes` counts the
    TLS handshakes completed, `connections` the TCP connections accepted, `received` the
    requests read and `requests` those answered. `headers` go into every response;
    `answer_per_connection` limits how many requests a connection gets an answer to (the
    next one sees it closed)."""

    def __init__(
        self,
        certs=None,
        headers: str = "",
        answer_per_connection: int = 0,
        body: bytes = b'{"status":"ok"}',
    ):
        self.context = certs.server_context() if certs is not None else None
        self.headers = headers
        self.answer_per_connection = answer_per_connection
        self.body = body
        self.handshakes = 0
        self.received = 0
        self.requests = 0
        self.lock = threading.Lock()
        self.tcp = TcpTestServer(self._serve)

    def _serve(self, conn: socket.socket) -> None:
        if self.context is not None:
            conn = self.context.wrap_socket(conn, server_side=True)
            with self.lock:
                self.handshakes += 1
        answered = 0
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            _, _, data = data.partition(b"\r\n\r\n")
            with self.lock:
                self.received += 1
            if self.answer_per_connection and answered >= self.answer_per_connection:
                conn.close()  # read the request, then closed: a connection gone stale
                return
            body = self.body
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + self.headers.encode()
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
            answered += 1
            with self.lock:
                self.requests += 1

    @property
    def connections(self) -> int:
        return self.tcp.connections

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.tcp.port}{path}"

    def __enter__(self) -> KeepAliveServer:
        self.tcp.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.tcp.stop()


def run_checks(options_list: list[dict], pause: float = 0.0) -> list:
    """Run checks one after the other on one probe object (as the daemon does)."""

    async def main() -> list:
        results = []
        async with open_probe("http") as runner:
            for options in options_list:
                results.append(await runner.check(options, timeout=5))
                await anyio.sleep(pause)
        return results

    return anyio.run(main)


def test_without_reuse_every_check_makes_its_own_handshake(certs):
    with KeepAliveServer(certs) as server:
        options = {"url": server.url("/"), "ca_bundle": str(certs.ca)}
        results = run_checks([options] * 4)
        assert all(r.ok for r in results), [r.message for r in results]
        assert all("certificate_expiry" in r.metrics for r in results)
        assert (server.connections, server.handshakes, server.requests) == (4, 4, 4)


def test_reuse_keeps_one_connection_and_still_reports_expiry(certs):
    with KeepAliveServer(certs) as server:
        options = {"url": server.url("/"), "ca_bundle": str(certs.ca), "reuse_connections": True}
        results = run_checks([options] * 5, pause=0.05)
        assert all(r.ok for r in results), [r.message for r in results]
        assert (server.connections, server.handshakes, server.requests) == (1, 1, 5)
    expected = (certs.not_after - dt.datetime.now(dt.UTC)).total_seconds()
    for result in results:
        # read from the kept connection's handshake
        assert result.metrics["certificate_expiry"] == pytest.approx(expected, abs=60)


def test_checks_of_one_host_share_kept_connections(certs):
    with KeepAliveServer(certs) as server:
        options = [
            {"url": server.url(f"/{path}"), "ca_bundle": str(certs.ca), "reuse_connections": True}
            for path in ("a", "b", "c", "a", "b", "c")
        ]
        results = run_checks(options)
        assert all(r.ok for r in results)
        assert server.handshakes == 1


def test_other_tls_settings_get_their_own_connection(certs):
    with KeepAliveServer(certs) as server:
        verified = {"url": server.url("/"), "ca_bundle": str(certs.ca), "reuse_connections": True}
        unverified = {"url": server.url("/"), "verify": False, "reuse_connections": True}
        results = run_checks([verified, unverified, verified, unverified])
        assert all(r.ok for r in results)
        assert server.handshakes == 2


def test_a_kept_connection_the_server_closed_is_replaced_within_the_run(certs):
    # the server answers one request per connection, then closes on reading the next: the
    # run that meets the closed connection makes a fresh one and succeeds
    with KeepAliveServer(certs, answer_per_connection=1) as server:
        options = {"url": server.url("/"), "ca_bundle": str(certs.ca), "reuse_connections": True}
        results = run_checks([options] * 3)
        assert all(r.ok for r in results), [r.message for r in results]
        # runs 2 and 3 each sent on the kept connection first, then on a fresh one
        assert (server.received, server.requests, server.handshakes) == (5, 3, 3)


@pytest.mark.parametrize(
    "headers", ["Connection: close\r\n", "Keep-Alive: timeout=1\r\n"], ids=["close", "ka-1s"]
)
def test_server_that_will_not_keep_the_connection(certs, headers):
    with KeepAliveServer(certs, headers=headers) as server:
        options = {"url": server.url("/"), "ca_bundle": str(certs.ca), "reuse_connections": True}
        results = run_checks([options] * 3)
        assert all(r.ok for r in results)
        assert server.handshakes == 3


def test_plain_http_connections_are_kept_too():
    with KeepAliveServer() as server:
        options = {"url": server.url("/"), "reuse_connections": True}
        results = run_checks([options] * 4)
        assert all(r.ok for r in results)
        assert "certificate_expiry" not in results[0].metrics
        assert (server.connections, server.requests) == (1, 4)


def test_a_body_not_read_to_its_end_closes_the_connection(certs):
    with KeepAliveServer(certs, body=b"x" * 4_000_000) as server:
        options = {
            "url": server.url("/"),
            "ca_bundle": str(certs.ca),
            "reuse_connections": True,
            "max_body": 1000,
        }
        results = run_checks([options] * 2)
        assert all(r.ok for r in results)
        assert server.handshakes == 2


@pytest.mark.slow
def test_daemon_reuses_the_connection_of_a_frequent_check(certs, tmp_path):
    with KeepAliveServer(certs) as server:
        config = {
            "version": 1,
            "state": {"type": "sqlite", "path": "state.db"},
            "server": {"enabled": False},
            "checks": {
                "api": {
                    "probe": "http",
                    "url": server.url("/health"),
                    "ca_bundle": str(certs.ca),
                    "reuse_connections": True,
                    "schedule": {"every": "1s"},
                },
                "api-fresh": {
                    "probe": "http",
                    "url": server.url("/fresh"),
                    "ca_bundle": str(certs.ca),
                    "schedule": {"every": "1s"},
                },
            },
        }
        (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config))
        with Daemon(tmp_path) as daemon:
            deadline = time.monotonic() + 20
            while server.requests < 8 and time.monotonic() < deadline:
                time.sleep(0.1)
            daemon.stop()
        requests, handshakes = server.requests, server.handshakes
    assert requests >= 8
    # the fresh check makes one handshake a run, the kept one a single one
    fresh_runs = requests // 2
    assert handshakes <= fresh_runs + 2 < requests, (requests, handshakes)


def test_reuse_is_off_by_default():
    from watchkeeper.engine.testing import probe_options

    assert probe_options("http", {"url": "https://example.com/"}).reuse_connections is False
