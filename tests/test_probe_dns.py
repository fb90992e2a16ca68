"""The dns probe against a real DNS server on loopback: dnsmasq, started by the tests."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from pydantic import ValidationError

from watchkeeper.engine.testing import (
    DnsmasqServer,
    SilentUdpServer,
    TcpTestServer,
    check_once,
    free_port,
    probe_options,
)

RECORDS = (
    "--local=/test/",  # names under test. that are not listed here: NXDOMAIN
    "--address=/gone.test/",  # NXDOMAIN for a whole domain
    "--host-record=www.test,10.0.0.1",
    "--host-record=www.test,10.0.0.2",
    "--host-record=v6.test,2001:db8::1",
    "--cname=alias.test,www.test",
    "--txt-record=txt.test,v=spf1 -all",
    "--txt-record=long.test,first part ,second part",
    "--mx-host=mail.test,mx1.mail.test,10",
    "--ptr-record=1.0.0.10.in-addr.arpa,www.test",
)


@pytest.fixture(scope="module")
def dns_server():
    if DnsmasqServer.binary() is None:
        pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base; .ci/run does)")
    with DnsmasqServer(*RECORDS) as server:
        yield server


def query(server: DnsmasqServer, name: str, record_type: str = "A", **options):
    return check_once(
        "dns",
        {"name": name, "record_type": record_type, "resolvers": [server.address], **options},
        timeout=5,
    )


def test_a_records(dns_server):
    result = query(dns_server, "www.test")
    assert result.ok, result.message
    assert result.message.startswith(f"www.test A via {dns_server.address}: 10.0.0.")
    assert sorted(result.details["answers"]) == ["10.0.0.1", "10.0.0.2"]
    assert result.details["rcode"] == "NOERROR"
    assert result.details["answered_by"] == dns_server.address
    assert result.metrics["answer_count"] == 2
    assert 0 < result.metrics["resolution_time"] < 1
    assert set(result.metrics) == {"resolution_time", "answer_count"}


def test_exact_answers_in_any_order(dns_server):
    assert query(dns_server, "www.test", expect={"answers": ["10.0.0.2", "10.0.0.1"]}).ok
    result = query(dns_server, "www.test", expect={"answers": ["10.0.0.1"]})
    assert not result.ok
    assert "(expected exactly 10.0.0.1)" in result.message
    assert result.message.startswith(f"www.test A via {dns_server.address}: answers are 10.0.0.")
    assert result.metrics["answer_count"] == 2  # reported even when the expectation fails


def test_contains_regex_and_min_answers(dns_server):
    assert query(
        dns_server,
        "www.test",
        expect={"contains": ["10.0.0.2"], "regex": r"^10\.0\.0\.\d+$", "min_answers": 2},
    ).ok
    result = query(dns_server, "www.test", expect={"contains": ["10.0.0.9", "10.0.0.1"]})
    assert not result.ok
    assert "missing 10.0.0.9 (got 10.0.0." in result.message
    result = query(dns_server, "www.test", expect={"regex": r"^10\.0\.0\.1$"})
    assert not result.ok
    assert "' does not match /^10\\.0\\.0\\.1$/" in result.message
    result = query(dns_server, "www.test", expect={"min_answers": 3})
    assert result.message.endswith(": 2 answers (expected at least 3)")


def test_several_failed_expectations_are_all_named(dns_server):
    result = query(dns_server, "www.test", expect={"min_answers": 3, "contains": ["10.9.9.9"]})
    assert "2 answers (expected at least 3); missing 10.9.9.9" in result.message


def test_cname_is_followed_and_named(dns_server):
    result = query(dns_server, "alias.test", expect={"answers": ["10.0.0.1", "10.0.0.2"]})
    assert result.ok, result.message
    assert result.details["canonical_name"] == "www.test"
    cname = query(dns_server, "alias.test", "CNAME", expect={"answers": ["WWW.test."]})
    assert cname.ok, cname.message  # names compare without case or final dot
    assert cname.details["answers"] == ["www.test"]


def test_txt_strings_are_joined_without_quotes(dns_server):
    result = query(dns_server, "txt.test", "TXT", expect={"answers": ["v=spf1 -all"]})
    assert result.ok, result.message
    joined = query(dns_server, "long.test", "TXT")
    assert joined.details["answers"] == ["first part second part"]


def test_mx_aaaa_and_ptr(dns_server):
    mx = query(dns_server, "mail.test", "MX", expect={"contains": ["10 MX1.mail.test."]})
    assert mx.ok, mx.message
    assert mx.details["answers"] == ["10 mx1.mail.test"]
    v6 = query(dns_server, "v6.test", "AAAA", expect={"answers": ["2001:DB8:0::1"]})
    assert v6.ok, v6.message  # addresses compare by value
    ptr = query(dns_server, "10.0.0.1", "PTR", expect={"answers": ["www.test"]})
    assert ptr.ok, ptr.message  # an address is turned into its in-addr.arpa name


def test_nxdomain_is_reported_by_its_rcode(dns_server):
    result = query(dns_server, "nope.test")
    assert not result.ok
    assert result.message == f"nope.test A via {dns_server.address}: NXDOMAIN (expected NOERROR)"
    assert result.details["rcode"] == "NXDOMAIN"
    assert result.metrics["answer_count"] == 0
    assert "resolution_time" in result.metrics
    expected = query(dns_server, "host.gone.test", expect={"rcode": "nxdomain"})
    assert expected.ok, expected.message
    assert expected.message.startswith(
        f"host.gone.test A via {dns_server.address}: NXDOMAIN as expected in "
    )
    wrong = query(dns_server, "www.test", expect={"rcode": "NXDOMAIN"})
    assert wrong.message.endswith(": NOERROR (expected NXDOMAIN)")


def test_refused(dns_server):
    result = query(dns_server, "example.org")  # not ours, and there is no upstream
    assert not result.ok
    assert result.message == f"example.org A via {dns_server.address}: REFUSED (expected NOERROR)"
    assert query(dns_server, "example.org", expect={"rcode": "REFUSED"}).ok


def test_no_data_is_an_empty_noerror_answer(dns_server):
    result = query(dns_server, "www.test", "AAAA")
    assert result.ok, result.message
    assert " no answers in " in result.message
    assert result.metrics["answer_count"] == 0
    assert query(dns_server, "www.test", "AAAA", expect={"min_answers": 1}).message.endswith(
        ": 0 answers (expected at least 1)"
    )
    assert not query(dns_server, "www.test", "AAAA", expect={"regex": "."}).ok


def _tcp_relay(server: DnsmasqServer):
    """Relay DNS-over-TCP messages to the server: TCP answers, UDP on this port does not."""

    def relay(conn: socket.socket) -> None:
        stream = conn.makefile("rb")
        while header := stream.read(2):
            message = stream.read(struct.unpack("!H", header)[0])
            with socket.create_connection((server.host, server.port), timeout=5) as upstream:
                upstream.sendall(header + message)
                upstream_stream = upstream.makefile("rb")
                size = upstream_stream.read(2)
                conn.sendall(size + upstream_stream.read(struct.unpack("!H", size)[0]))

    return TcpTestServer(relay)


def test_tcp(dns_server):
    with _tcp_relay(dns_server) as relay:
        options = {"name": "www.test", "resolvers": [relay.address]}
        result = check_once("dns", {**options, "protocol": "tcp"}, timeout=5)
        assert result.ok, result.message
        assert result.metrics["answer_count"] == 2
        assert relay.connections == 1
        udp = check_once("dns", options, timeout=0.5)
        assert not udp.ok
        assert udp.details.get("timeout")


def test_next_resolver_is_asked_when_one_refuses(dns_server):
    with DnsmasqServer() as empty:  # knows nothing: REFUSED for everything
        result = check_once(
            "dns",
            {"name": "www.test", "resolvers": [empty.address, dns_server.address]},
            timeout=5,
        )
        assert result.ok, result.message
        assert result.details["answered_by"] == dns_server.address
        assert result.message.startswith(
            f"www.test A via {empty.address}, {dns_server.address}: 10.0.0."
        )
        refused = check_once("dns", {"name": "www.test", "resolvers": [empty.address]})
        assert refused.message.endswith("REFUSED (expected NOERROR)")


def test_silent_resolver_times_out_with_a_message():
    with SilentUdpServer() as silent:
        start = time.perf_counter()
        result = check_once("dns", {"name": "www.test", "resolvers": [silent.address]}, timeout=1)
        elapsed = time.perf_counter() - start
    assert not result.ok
    assert result.message == f"timed out after 1s resolving www.test A via {silent.address}"
    assert result.details["timeout"] is True
    assert elapsed < 1.5


def test_refused_connection_is_named():
    port = free_port()
    options = {"name": "www.test", "protocol": "tcp"}
    one = check_once("dns", {**options, "resolvers": [f"127.0.0.1:{port}"]}, timeout=2)
    assert one.message == (
        f"no answer resolving www.test A via 127.0.0.1:{port}: connection refused"
    )
    two = check_once(
        "dns", {**options, "resolvers": [f"127.0.0.1:{port}", f"127.0.0.2:{port}"]}, timeout=2
    )
    assert two.message.endswith(
        f": 127.0.0.1:{port}: connection refused; 127.0.0.2:{port}: connection refused"
    )


def test_port_53_is_left_out_of_names():
    with SilentUdpServer() as silent:
        result = check_once(
            "dns", {"name": "www.test", "resolvers": [silent.address, "127.0.0.1"]}, timeout=0.3
        )
    assert f"via {silent.address}, 127.0.0.1" in result.message


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"resolvers": ["dns.google"]}, "resolver 'dns.google' is not an IP address"),
        ({"resolvers": ["127.0.0.1:99999"]}, "port must be 1-65535"),
        ({"resolvers": ["[::1]x"]}, "expected [ipv6]:port"),
        ({"expect": {"regex": "("}}, "not a valid regular expression"),
        ({"expect": {"rcode": "NOPE"}}, "NXDOMAIN"),
        ({"record_type": "XYZ"}, "AAAA"),
        ({"timeout": "2s"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_options(options, problem):
    with pytest.raises(ValidationError) as caught:
        probe_options("dns", {"name": "www.test", **options})
    assert problem in str(caught.value)


def test_resolver_forms_accepted():
    parsed = probe_options(
        "dns", {"name": "x.test", "resolvers": ["::1", "[::1]:5353", "10.0.0.1"]}
    )
    assert parsed.resolvers == ["::1", "[::1]:5353", "10.0.0.1"]


@pytest.mark.slow
def test_through_the_cli(dns_server, cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          www:
            probe: dns
            name: www.test
            resolvers: ["{dns_server.address}"]
            expect: {{contains: [10.0.0.1]}}
          gone:
            probe: dns
            name: nope.test
            resolvers: ["{dns_server.address}"]
        """
    )
    result = cli("check", "--format", "json")
    assert result.code == 1, result.output
    rows = {row["check"]: row for row in result.json()}
    assert rows["www"]["ok"]
    assert rows["www"]["metrics"]["answer_count"] == 2
    assert not rows["gone"]["ok"]
    assert rows["gone"]["message"].endswith("NXDOMAIN (expected NOERROR)")
