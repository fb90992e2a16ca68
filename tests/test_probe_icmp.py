"""The icmp probe: loopback pings, and network namespaces the tests make.

Namespaces (`ip netns`) give each case a network of its own: one with only a loopback
(nothing is routable), one joined by a veth pair to a peer that ignores echo requests
(nothing answers), and one where `net.ipv4.ping_group_range` lets an unprivileged user
ping through a datagram socket. They need root (or CAP_SYS_ADMIN) and iproute2; without
them those tests are skipped, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import anyio
import pytest

from watchkeeper.engine.run.declared_metrics import undeclared
from watchkeeper.engine.testing import acheck_cancelled, check_once, contract_problems
from watchkeeper.plugins.probes.icmp import IcmpProbe

WATCHKEEPER = [sys.executable, "-m", "watchkeeper.engine"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
# runs one check in the calling process and prints what a result holds, details included
RUN_ONCE = textwrap.dedent(
    """
    import json, sys
    from watchkeeper.engine.testing import check_once
    result = check_once("icmp", json.loads(sys.argv[1]), timeout=float(sys.argv[2]))
    print(json.dumps({"ok": result.ok, "message": result.message,
                      "metrics": result.metrics, "details": result.details}))
    """
)


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def config(tmp_path: Path, **options) -> None:
    lines = "".join(f"    {key}: {value}\n" for key, value in options.items())
    (tmp_path / "monitor.yaml").write_text(
        f"version: 1\nchecks:\n  ping:\n    probe: icmp\n{lines}"
    )


def check_row(tmp_path: Path, prefix: tuple[str, ...] = ()) -> tuple[int, dict]:
    """Run `watchkeeper check ping --format json` (inside `prefix`); return (code, row)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    proc = subprocess.run(
        [*prefix, *WATCHKEEPER, "check", "ping", "--format", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.startswith("["), proc.stdout + proc.stderr
    [row] = json.loads(proc.stdout)
    return proc.returncode, row


def run_once(prefix: list[str], options: dict, timeout: float = 2) -> dict:
    """Run one check with `prefix` (a namespace, another user); return the result's fields."""
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", RUN_ONCE, json.dumps(options), str(timeout)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- loopback, in this machine's own network -------------------------------------------------


@pytest.mark.slow
def test_loopback_answers_through_the_cli(tmp_path):
    config(tmp_path, host="127.0.0.1", thresholds="[{metric: packet_loss, above: 0%}]")
    code, row = check_row(tmp_path)
    assert code == 0, row
    assert row["ok"] is True
    assert row["message"].startswith("3 of 3 pings answered by 127.0.0.1: rtt min ")
    metrics = row["metrics"]
    assert set(metrics) == {"rtt_min", "rtt_avg", "rtt_max", "packet_loss"}
    assert metrics["packet_loss"] == 0
    assert 0 < metrics["rtt_min"] <= metrics["rtt_avg"] <= metrics["rtt_max"] < 1


@pytest.mark.slow
def test_ipv6_loopback_answers(tmp_path):
    if not has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    config(tmp_path, host='"::1"', count=2, interval="50ms")
    code, row = check_row(tmp_path)
    assert code == 0, row
    assert row["message"].startswith("2 of 2 pings answered by ::1: rtt min ")
    assert row["metrics"]["packet_loss"] == 0


def test_a_name_is_resolved_in_the_family_asked_for():
    result = check_once("icmp", {"host": "localhost", "family": "ipv4", "count": 1})
    assert result.ok, result.message
    assert result.message.startswith("1 of 1 ping answered by localhost (127.0.0.1): ")
    assert result.details["address"] == "127.0.0.1"
    assert undeclared(IcmpProbe, result) == []


@pytest.mark.parametrize("size", [0, 8, 1472, 65507])
def test_payload_sizes(size):
    result = check_once("icmp", {"host": "127.0.0.1", "count": 2, "size": size})
    assert result.ok, result.message
    assert result.details["received"] == 2


def test_an_unresolvable_host_is_down():
    result = check_once("icmp", {"host": "no-such-host.invalid"}, timeout=5)
    assert not result.ok
    assert result.message.startswith("cannot resolve no-such-host.invalid: ")
    assert result.metrics == {}


def test_validate_refuses_bad_options(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          ping:
            probe: icmp
            host: 127.0.0.1
            count: 0
            interval: 1ms
            size: 70000
            family: ipv5
        """
    )
    result = cli("validate")
    assert result.code == 1
    assert "monitor.yaml:6:12: checks.ping.count: input should be greater than or equal to 1" in (
        result.output
    )
    assert "checks.ping.interval: interval must be at least 10ms, got 1ms" in result.output
    assert "checks.ping.size: input should be less than or equal to 65507" in result.output
    assert "checks.ping.family: expected 'auto', 'ipv4' or 'ipv6', got 'ipv5'" in result.output


def test_keeps_the_contract():
    assert contract_problems(IcmpProbe) == []
    # a hundred pings a second apart: still running when cancelled
    options = {"host": "127.0.0.1", "count": 100, "interval": "1s"}
    outcome = anyio.run(lambda: acheck_cancelled("icmp", options))
    assert outcome.cancelled
    assert outcome.returned is None
    assert outcome.elapsed < 2


# --- network namespaces ----------------------------------------------------------------------


@pytest.fixture
def netns():
    """Make network namespaces (loopback up) for one test; delete them afterwards."""
    if shutil.which("ip") is None:
        pytest.skip("the ip program (iproute2) is not installed")
    made: list[str] = []

    def make() -> str:
        name = f"wk-icmp-{os.getpid()}-{len(made)}"
        added = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if added.returncode:
            pytest.skip(f"network namespaces are not allowed here: {added.stderr.strip()}")
        made.append(name)
        inside(name, "ip", "link", "set", "lo", "up")
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def inside(namespace: str, *command: str) -> None:
    subprocess.run(["ip", "netns", "exec", namespace, *command], check=True, capture_output=True)


def allow_unprivileged_ping(namespace: str, allowed: bool = True) -> None:
    # the sysctl belongs to the namespace: this machine's own setting is untouched
    groups = "0 2147483647" if allowed else "1 0"
    inside(namespace, "sysctl", "-qw", f"net.ipv4.ping_group_range={groups}")


@pytest.fixture
def silent_peer(netns):
    """A namespace joined by a veth pair to a peer (192.0.2.2) that ignores echo requests."""
    here, peer = netns(), netns()
    link = f"wk{os.getpid() % 100000}"
    subprocess.run(
        [
            *("ip", "link", "add", f"{link}a", "netns", here, "type", "veth"),
            *("peer", "name", f"{link}b", "netns", peer),
        ],
        check=True,
        capture_output=True,
    )
    inside(here, "ip", "addr", "add", "192.0.2.1/24", "dev", f"{link}a")
    inside(here, "ip", "link", "set", f"{link}a", "up")
    inside(peer, "ip", "addr", "add", "192.0.2.2/24", "dev", f"{link}b")
    inside(peer, "ip", "link", "set", f"{link}b", "up")
    inside(peer, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
    return here, peer


@pytest.mark.slow
def test_an_address_that_does_not_answer_is_down(tmp_path, silent_peer):
    here, _ = silent_peer
    config(tmp_path, host="192.0.2.2", timeout="1s")
    code, row = check_row(tmp_path, ("ip", "netns", "exec", here))
    assert code == 1, row
    assert row["ok"] is False
    # the probe gives up just before the timeout, with its own verdict
    assert row["message"] == "no reply from 192.0.2.2 to 3 pings (timed out after 1s)"
    assert row["metrics"] == {"packet_loss": 1}


@pytest.mark.slow
def test_some_replies_lost_is_up_with_the_loss(silent_peer):
    here, peer = silent_peer
    inside(peer, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0")
    # pings at 0, 0.5, 1 and 1.5s; the peer stops answering at 0.75s
    stop = textwrap.dedent(
        f"""
        import json, subprocess, sys, threading
        from watchkeeper.engine.testing import check_once
        check_once("icmp", {{"host": "127.0.0.1", "count": 1}})  # load everything first
        ignore = "net.ipv4.icmp_echo_ignore_all=1"
        argv = ["ip", "netns", "exec", "{peer}", "sysctl", "-qw", ignore]
        threading.Timer(0.75, subprocess.run, [argv]).start()
        result = check_once("icmp", json.loads(sys.argv[1]), timeout=float(sys.argv[2]))
        print(json.dumps({{"ok": result.ok, "message": result.message,
                          "metrics": result.metrics}}))
        """
    )
    options = {"host": "192.0.2.2", "count": 4, "interval": "500ms"}
    proc = subprocess.run(
        ["ip", "netns", "exec", here, sys.executable, "-c", stop, json.dumps(options), "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is True, result
    assert result["message"].startswith("2 of 4 pings answered by 192.0.2.2 (50% loss): ")
    assert result["metrics"]["packet_loss"] == 0.5


def test_no_route_is_network_unreachable(netns):
    here = netns()  # only a loopback: nothing else is routable
    for address in ("192.0.2.1", "2001:db8::1"):
        result = run_once(["ip", "netns", "exec", here], {"host": address})
        assert result["ok"] is False
        assert result["message"] == f"cannot ping {address}: network is unreachable"


@pytest.fixture
def shared_dir():
    """A folder any user may read and write (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="wk-icmp-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_unprivileged_users_ping_through_datagram_sockets(shared_dir, netns):
    here = netns()
    allow_unprivileged_ping(here)
    as_nobody = ["ip", "netns", "exec", here, *NOBODY]
    for address in ("127.0.0.1", "::1"):
        result = run_once(as_nobody, {"host": address, "count": 2})
        assert result["ok"] is True, result
        assert result["details"]["socket"] == "datagram"
    config(shared_dir, host="127.0.0.1")
    code, row = check_row(shared_dir, tuple(as_nobody))
    assert code == 0, row
    assert row["metrics"]["packet_loss"] == 0


def test_root_falls_back_to_raw_sockets(netns):
    here = netns()
    allow_unprivileged_ping(here, allowed=False)
    for address in ("127.0.0.1", "::1"):
        result = run_once(["ip", "netns", "exec", here], {"host": address, "count": 2})
        assert result["ok"] is True, result
        assert result["details"]["socket"] == "raw"


def test_neither_socket_allowed_says_what_to_change(netns):
    here = netns()
    allow_unprivileged_ping(here, allowed=False)
    result = run_once(["ip", "netns", "exec", here, *NOBODY], {"host": "127.0.0.1"})
    assert result["ok"] is False
    assert result["message"] == (
        "cannot open an ICMP socket: this user's group is not allowed unprivileged ping "
        "(sysctl net.ipv4.ping_group_range) and raw sockets need root or CAP_NET_RAW"
    )
