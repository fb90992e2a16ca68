"""The websocket probe against websockets servers started in the test process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from watchkeeper.engine.testing import TcpTestServer, check_once, free_port, make_certificates

TOKEN = "Bearer ws-s3cr3t-t0ken-0042"


def handler(ws: ServerConnection) -> None:
    """Answer by path: /echo echoes, /wrong answers wrongly, /greet speaks first, ..."""
    path = ws.request.path
    try:
        if path == "/greet":
            ws.send("welcome to chat v2")
        for message in ws:
            if path == "/echo":
                ws.send(message)
            elif path == "/wrong":
                ws.send("something else entirely")
            elif path == "/binary":
                ws.send(b"\x00pong")
            elif path == "/hangup":
                ws.close(1011, "backend down")
            # /silent: never answers
    except ConnectionClosed:
        pass


def refuse(conn: ServerConnection, request):
    if request.path == "/forbidden":
        return conn.respond(403, "go away\n")
    return None


def chat_only(conn: ServerConnection, offered):
    return "chat.v2" if "chat.v2" in offered else None


class Server:
    """A websockets server on its own thread; remembers the headers of each handshake."""

    def __init__(self, ssl_context=None) -> None:
        self.headers: list[dict[str, str]] = []

        def remember(conn, request):
            self.headers.append(dict(request.headers.raw_items()))
            return refuse(conn, request)

        self._server = serve(
            handler,
            "127.0.0.1",
            0,
            ssl=ssl_context,
            process_request=remember,
            select_subprotocol=chat_only,
        )
        self.port = self._server.socket.getsockname()[1]
        self.scheme = "wss" if ssl_context else "ws"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server():
    started = Server()
    yield started
    started.stop()


@pytest.fixture
def secure(certs):
    started = Server(certs.server_context())
    yield started
    started.stop()


# --- through the CLI, as a user runs it ------------------------------------------------


@pytest.mark.slow
def test_round_trip_through_the_cli(server, cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          live-updates:
            probe: websocket
            url: {server.url("/echo")}
            headers: {{Authorization: "${{WS_TOKEN}}"}}
            send: ping
            expect: {{exact: ping}}
            thresholds: [{{metric: round_trip_time, above: 2s, severity: warning}}]
        """
    )
    checked = cli("check", "live-updates", "--format", "json", env={"WS_TOKEN": TOKEN})
    assert checked.code == 0, checked.output
    [row] = checked.json()
    assert row["ok"] is True, row["message"]
    assert set(row["metrics"]) == {"connect_time", "round_trip_time"}
    assert 0 < row["metrics"]["round_trip_time"] < 2
    assert row["message"].startswith(f"{server.url('/echo')}: connected in ")
    assert server.headers[-1]["Authorization"] == TOKEN
    assert server.headers[-1]["User-Agent"] == "watchkeeper"
    assert TOKEN not in checked.output


@pytest.mark.slow
def test_wrong_answer_through_the_cli(server, cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          live-updates:
            probe: websocket
            url: {server.url("/wrong")}
            send: ping
            expect: {{contains: pong}}
        """
    )
    checked = cli("check", "live-updates", "--format", "json")
    assert checked.code == 1, checked.output
    [row] = checked.json()
    assert row["ok"] is False
    assert row["message"] == (
        f"{server.url('/wrong')}: the answer does not contain 'pong': 'something else entirely'"
    )
    assert "round_trip_time" in row["metrics"]  # measured even though it failed


@pytest.mark.slow
def test_wss_with_a_private_ca_through_the_cli(secure, certs, cli, write_config, tmp_path):
    (tmp_path / "ca.pem").write_bytes(certs.ca.read_bytes())
    write_config(
        f"""
        version: 1
        checks:
          secure-feed:
            probe: websocket
            url: {secure.url("/echo")}
            ca_bundle: ca.pem
            send: hello
            expect: {{regex: "^hel+o$"}}
        """
    )
    checked = cli("check", "secure-feed", "--format", "json")
    assert checked.code == 0, checked.output
    [row] = checked.json()
    assert row["ok"] is True, row["message"]
    assert set(row["metrics"]) == {"connect_time", "round_trip_time", "certificate_expiry"}
    assert 29 * 86400 < row["metrics"]["certificate_expiry"] < 31 * 86400


# --- direct runs: each way the server can be wrong ---------------------------------------


@pytest.mark.slow
def test_handshake_refused_with_its_status(server):
    result = check_once(
        "websocket", {"url": server.url("/forbidden"), "headers": {"Authorization": TOKEN}}
    )
    assert not result.ok
    assert result.message == (
        f"{server.url('/forbidden')} refused the WebSocket handshake: HTTP 403 Forbidden"
    )
    assert result.details["status_code"] == 403
    assert TOKEN not in result.message


@pytest.mark.slow
def test_connect_only(server):
    result = check_once("websocket", {"url": server.url("/echo")})
    assert result.ok, result.message
    assert set(result.metrics) == {"connect_time"}


@pytest.mark.slow
def test_untrusted_certificate_and_verify_off(secure):
    result = check_once("websocket", {"url": secure.url("/echo")})
    assert not result.ok
    assert result.message == (
        f"TLS certificate of {secure.url('/echo')} is not trusted: "
        "unable to get local issuer certificate"
    )
    result = check_once("websocket", {"url": secure.url("/echo"), "verify": False})
    assert result.ok, result.message


@pytest.mark.slow
def test_subprotocols(server):
    result = check_once("websocket", {"url": server.url("/echo"), "subprotocols": ["chat.v2"]})
    assert result.ok, result.message
    assert result.details["subprotocol"] == "chat.v2"
    assert "(chat.v2)" in result.message
    result = check_once("websocket", {"url": server.url("/echo"), "subprotocols": ["mqtt"]})
    assert not result.ok
    assert result.message == (
        f"{server.url('/echo')} accepted none of the subprotocols offered (mqtt)"
    )


@pytest.mark.slow
def test_a_greeting_is_judged_without_sending(server):
    result = check_once("websocket", {"url": server.url("/greet"), "expect": {"regex": r"v\d"}})
    assert result.ok, result.message
    assert "round_trip_time" in result.metrics


@pytest.mark.slow
def test_binary_answers_are_read_as_text(server):
    options = {"url": server.url("/binary"), "send": "ping", "expect": {"contains": "pong"}}
    result = check_once("websocket", options)
    assert result.ok, result.message
    assert result.details["binary"] is True


@pytest.mark.slow
def test_server_closing_instead_of_answering(server):
    result = check_once("websocket", {"url": server.url("/hangup"), "send": "ping"})
    assert not result.ok
    assert result.message == (
        f"{server.url('/hangup')} closed the connection (code 1011 'backend down') before answering"
    )


@pytest.mark.slow
def test_no_answer_times_out_waiting_for_it(server):
    result = check_once("websocket", {"url": server.url("/silent"), "send": "ping"}, timeout=1)
    assert not result.ok
    expected = f"timed out after 1s waiting for a message from {server.url('/silent')}"
    assert result.message == expected
    assert result.details["timeout"] is True
    assert "connect_time" in result.metrics


@pytest.mark.slow
def test_silent_port_times_out_connecting():
    with TcpTestServer() as silent:
        url = f"ws://127.0.0.1:{silent.port}/"
        result = check_once("websocket", {"url": url}, timeout=1)
    assert result.message == f"timed out after 1s connecting to {url}"
    assert result.details["timeout"] is True


def test_refused_port_hides_the_password_in_the_url():
    port = free_port()
    result = check_once("websocket", {"url": f"ws://feed:hunter2-pw@127.0.0.1:{port}/x"})
    assert not result.ok
    assert result.message == (
        f"cannot connect to ws://feed:**********@127.0.0.1:{port}/x: connection refused"
    )


# --- options ---------------------------------------------------------------------------


def test_validate_names_each_bad_option(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          no-url:
            probe: websocket
          http-url:
            probe: websocket
            url: https://feed.example.com/socket
          empty-expect:
            probe: websocket
            url: wss://feed.example.com/socket
            expect: {}
          bad-regex:
            probe: websocket
            url: wss://feed.example.com/socket
            expect: {regex: "(unclosed"}
        """
    )
    checked = cli("validate")
    assert checked.code == 1
    out = checked.stdout
    assert "checks.no-url.url: missing required key 'url'" in out
    assert "checks.http-url.url: expected a ws:// or wss:// URL" in out
    assert "give at least one of contains, regex, exact" in out
    assert "regex is not a valid regular expression" in out


def test_missing_library_names_the_extra():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["websockets"] = None  # as if the extra were not installed
        from watchkeeper.engine.testing import check_once
        print(check_once("websocket", {"url": "ws://127.0.0.1:9/"}).message)
        """
    )
    from tests.conftest import REPO

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.stdout.strip() == (
        "the websocket probe needs websockets: pip install 'watchkeeper[websocket]'"
    ), done.stderr
