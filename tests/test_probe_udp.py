"""The udp probe against UDP servers started by the tests, on IPv4 and IPv6 loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import anyio
import pytest
from pydantic import ValidationError

from watchkeeper.engine.run.declared_metrics import undeclared
from watchkeeper.engine.testing import (
    SilentUdpServer,
    acheck_cancelled,
    check_once,
    contract_problems,
    free_port,
    probe_options,
)
from watchkeeper.plugins.probes.udp import UdpProbe


class UdpServer:
    """A UDP server on loopback answering each datagram with `answer(datagram)`."""

    def __init__(self, answer: Callable[[bytes], bytes], host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, args=(answer,), daemon=True)
        self.thread.start()

    def _serve(self, answer: Callable[[bytes], bytes]) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65536)
            except OSError:  # closed by stop()
                return
            self.received.append(data)
            self.sock.sendto(answer(data), peer)

    def options(self, **options) -> dict:
        return {"host": self.host, "port": self.port, **options}

    def stop(self) -> None:
        self.sock.close()
        self.thread.join(timeout=2)


@pytest.fixture
def udp_server() -> Iterator[Callable[..., UdpServer]]:
    """Start UDP servers (an echo by default); all stop after the test."""
    servers: list[UdpServer] = []

    def start(answer: Callable[[bytes], bytes] = lambda data: data, host: str = "127.0.0.1"):
        servers.append(UdpServer(answer, host))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


# --- up ---------------------------------------------------------------------------------------


def test_echo_round_trip(udp_server):
    server = udp_server()
    result = check_once("udp", server.options(send="PING", expect={"exact": "PING"}))
    assert result.ok, result.message
    assert result.message.startswith(f"4 bytes from 127.0.0.1:{server.port} in ")
    assert 0 < result.metrics["round_trip_time"] < 1
    assert server.received == [b"PING"]
    assert undeclared(UdpProbe, result) == []


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6(udp_server):
    server = udp_server(host="::1")
    result = check_once("udp", server.options(send="hello", expect={"contains": "ell"}))
    assert result.ok, result.message
    assert result.message.startswith(f"5 bytes from [::1]:{server.port} in ")


def test_hex_payload_and_any_reply(udp_server):
    server = udp_server(lambda data: b"\x00\x01ok")
    result = check_once("udp", server.options(send_hex="de ad be ef"))
    assert result.ok, result.message
    assert server.received == [b"\xde\xad\xbe\xef"]


def test_regex_matches_the_reply(udp_server):
    server = udp_server(lambda data: b"status=ok load=0.12\n")
    result = check_once("udp", server.options(send="status", expect={"regex": r"^status=ok\b"}))
    assert result.ok, result.message


# --- down -------------------------------------------------------------------------------------


def test_wrong_answer_is_shown(udp_server):
    server = udp_server(lambda data: b"ERR busy")
    result = check_once("udp", server.options(send="PING", expect={"exact": "PONG"}))
    assert not result.ok
    assert result.message == f"127.0.0.1:{server.port} answered 'ERR busy', expected exactly 'PONG'"
    assert result.metrics["round_trip_time"] > 0  # measured even though it failed


def test_long_wrong_answer_is_cut(udp_server):
    server = udp_server(lambda data: b"x" * 5000)
    result = check_once("udp", server.options(send="PING", expect={"contains": "PONG"}))
    assert not result.ok
    assert result.message == (
        f"127.0.0.1:{server.port} answered '{'x' * 120}'…, expected it to contain 'PONG'"
    )


def test_binary_wrong_answer_is_shown_as_hex(udp_server):
    server = udp_server(lambda data: b"\xff\xfe" * 100)
    result = check_once("udp", server.options(send="PING", expect={"regex": "^PONG$"}))
    assert not result.ok
    assert result.message == (
        f"127.0.0.1:{server.port} answered 0x{'fffe' * 30}… (200 bytes), no match for /^PONG$/"
    )


def test_port_unreachable():
    port = free_port("udp")
    result = check_once("udp", {"host": "127.0.0.1", "port": port, "send": "PING"})
    assert not result.ok
    assert result.message == f"port unreachable: nothing listens on UDP 127.0.0.1:{port}"


def test_no_reply_times_out_in_time():
    started = time.monotonic()
    with SilentUdpServer() as silent:
        result = check_once(
            "udp", {"host": "127.0.0.1", "port": silent.port, "send": "PING"}, timeout=1
        )
    assert time.monotonic() - started < 1.5
    assert not result.ok
    assert result.message == f"timed out after 1s: no reply from 127.0.0.1:{silent.port}"
    assert result.details["timeout"] is True


def test_unknown_host():
    result = check_once("udp", {"host": "no-such-host.invalid", "port": 53, "send": "x"})
    assert not result.ok
    assert result.message.startswith("cannot resolve no-such-host.invalid: ")


def test_keeps_the_contract():
    assert contract_problems(UdpProbe) == []
    with SilentUdpServer() as silent:
        options = {"host": "127.0.0.1", "port": silent.port, "send": "x"}
        outcome = anyio.run(lambda: acheck_cancelled("udp", options))
    assert outcome.cancelled
    assert outcome.returned is None


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"host": "h", "send": "x"}, "port\n  Field required"),
        ({"host": "h", "port": 70000, "send": "x"}, "less than or equal to 65535"),
        ({"host": "h", "port": 53}, "give one of send (text) or send_hex (hexadecimal bytes)"),
        ({"host": "h", "port": 53, "send": "x", "send_hex": "00"}, "give one of send"),
        ({"host": "h", "port": 53, "send_hex": "zz"}, "send_hex is not hexadecimal: 'zz'"),
        ({"host": "h", "port": 53, "send": ""}, "at least 1 character"),
        ({"host": "h", "port": 53, "send_hex": " "}, "send_hex is empty"),
        (
            {"host": "h", "port": 53, "send": "x", "expect": {"exact": "a", "regex": "b"}},
            "give one of exact, contains or regex, not exact and regex",
        ),
        (
            {"host": "h", "port": 53, "send": "x", "expect": {"regex": "("}},
            "regex is not a valid regular expression",
        ),
        ({"host": "h", "port": 53, "send": "x", "expect": {"equals": "a"}}, "Extra inputs"),
    ],
)
def test_invalid_options(options, problem):
    with pytest.raises(ValidationError) as caught:
        probe_options("udp", options)
    assert problem in str(caught.value)


def test_validate_through_the_cli(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          no-port:
            probe: udp
            host: 10.0.0.1
            send: ping
          bad-hex:
            probe: udp
            host: 10.0.0.1
            port: 7
            send_hex: "0xZZ"
          good:
            probe: udp
            host: 10.0.0.1
            port: 7
            send: ping
            expect: {exact: ping}
            thresholds: [{metric: round_trip_time, above: 50ms}]
        """
    )
    result = cli("validate")
    assert result.code == 1, result.output
    assert "checks.no-port.port: missing required key 'port'" in result.output
    assert "send_hex is not hexadecimal: '0xZZ'" in result.output
    assert "checks.good" not in result.output


# --- through the CLI --------------------------------------------------------------------------


@pytest.mark.slow
def test_check_through_the_cli(udp_server, cli, write_config):
    echo = udp_server()
    wrong = udp_server(lambda data: b"NOPE")
    closed = free_port("udp")
    write_config(
        f"""
        version: 1
        checks:
          echo:
            probe: udp
            host: 127.0.0.1
            port: {echo.port}
            send: "PING\\n"
            expect: {{exact: "PING\\n"}}
            thresholds: [{{metric: round_trip_time, above: 2s}}]
          wrong:
            probe: udp
            host: 127.0.0.1
            port: {wrong.port}
            send: PING
            expect: {{contains: PONG}}
          closed:
            probe: udp
            host: 127.0.0.1
            port: {closed}
            send: PING
        """
    )
    result = cli("check", "--format", "json")
    assert result.code == 1, result.output
    rows = {row["check"]: row for row in result.json()}
    assert rows["echo"]["ok"], rows["echo"]["message"]
    assert 0 < rows["echo"]["metrics"]["round_trip_time"] < 2
    assert not rows["wrong"]["ok"]
    assert rows["wrong"]["message"] == (
        f"127.0.0.1:{wrong.port} answered 'NOPE', expected it to contain 'PONG'"
    )
    assert (
        rows["closed"]["message"] == f"port unreachable: nothing listens on UDP 127.0.0.1:{closed}"
    )
