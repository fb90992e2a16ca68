"""Checks run from several locations, each location a network namespace of its own.

tests/test_locations.py gives each location its own path on one target; here the three
replicas stand in separate Linux network namespaces, joined to this host by a veth pair
each, and a location loses the target the way a real one does: in its namespace, the
route to the target's address is taken away (a blackhole: connecting fails at once) or
its packets leave and vanish (a neighbour entry pointing at a MAC address nobody has:
connecting times out), while the store stays reachable. One location cut off → no
notice; a second → one firing notice naming both; both back → one resolved notice.

Address plan, with X a second octet picked at random among those this host does not use
and N = 1, 2, 3 per location:

    host side of the veth   10.X.N.1/24   the store (Redis) and the webhook receiver
                            10.X.N.3/24   the target
    namespace side          10.X.N.2/24

Needs root (or CAP_SYS_ADMIN), iproute2 and redis-server; skipped, saying why, without.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.daemon_harness import Daemon, Recorder, _RecorderHandler
from tests.test_locations import alerts, api_row, wait_until
from tests.test_replicas import stop_all

pytestmark = pytest.mark.slow

LOCATIONS = ["eu", "us", "ap"]
# what each daemon reads from its environment; the defaults are for the host itself
PER_LOCATION = ("STORE_URL", "TARGET_URL", "HOOK_URL")
NOWHERE = "02:00:00:00:00:01"  # a locally administered MAC address no interface has


@dataclass
class Location:
    """One location's namespace and the addresses its daemon reaches the host at."""

    name: str
    namespace: str
    inner_link: str  # the veth end inside the namespace
    host_ip: str  # the store and the receiver, seen from the namespace
    target_ip: str  # the target, seen from the namespace
    own_ip: str  # the namespace's own address: what the target sees as the client

    def ip(self, *args: str) -> None:
        """Run `ip -n <namespace> ...`."""
        _ip("-n", self.namespace, *args)

    def blackhole(self) -> None:
        """Take the route to the target away: connecting fails at once."""
        self.ip("route", "add", "blackhole", f"{self.target_ip}/32")

    def drop_silently(self) -> None:
        """Send the target's packets to a MAC address nobody has: they go out and
        vanish, so connecting times out."""
        self.ip(
            *("neigh", "replace", self.target_ip, "lladdr", NOWHERE),
            *("nud", "permanent", "dev", self.inner_link),
        )

    def reconnect(self) -> None:
        """Undo blackhole() and drop_silently(), whichever was done."""
        for undo in (
            ["ip", "-n", self.namespace, "route", "del", "blackhole", f"{self.target_ip}/32"],
            ["ip", "-n", self.namespace, "neigh", "del", self.target_ip, "dev", self.inner_link],
        ):
            subprocess.run(undo, capture_output=True)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _unused_octet() -> int:
    """A second octet X such that nothing on this host is in 10.X.0.0/16."""
    used = (
        subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
        + subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    )
    for _ in range(100):
        octet = random.randint(200, 254)
        if f"10.{octet}." not in used:
            return octet
    pytest.skip("every 10.200-254.0.0/16 network is in use on this host")


@pytest.fixture
def places():
    """Three namespaces joined to this host by a veth pair each; always deleted."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("the ip program (iproute2) is not installed")
    suffix = secrets.token_hex(3)
    octet = _unused_octet()
    namespaces: list[str] = []
    links: list[str] = []
    try:
        made = {}
        for n, name in enumerate(LOCATIONS, 1):
            namespace = f"wk-{name}-{suffix}"
            added = subprocess.run(
                ["ip", "netns", "add", namespace], capture_output=True, text=True
            )
            if added.returncode:
                pytest.skip(f"network namespaces are not allowed here: {added.stderr.strip()}")
            namespaces.append(namespace)
            outer, inner = f"wk{suffix}{n}h", f"wk{suffix}{n}n"
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", namespace)
            links.append(outer)
            net = f"10.{octet}.{n}"
            _ip("addr", "add", f"{net}.1/24", "dev", outer)
            _ip("addr", "add", f"{net}.3/24", "dev", outer)
            _ip("link", "set", outer, "up")
            _ip("-n", namespace, "addr", "add", f"{net}.2/24", "dev", inner)
            _ip("-n", namespace, "link", "set", inner, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            made[name] = Location(name, namespace, inner, f"{net}.1", f"{net}.3", f"{net}.2")
        yield made
    finally:
        for link in links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for namespace in namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


@pytest.fixture
def store(places):
    """A private Redis the namespaces reach at their host-side address (and this host at
    127.0.0.1); no persistence, killed and deleted at the end."""
    from tests.redis_server import RedisServer, RedisUnavailable

    # listening only where it must: loopback and the three host-side addresses
    where = ["127.0.0.1", *(p.host_ip for p in places.values())]
    try:
        server = RedisServer(appendonly=False, args=("--bind", *where, "--protected-mode", "no"))
        server.start()
    except RedisUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.cleanup()


class Target:
    """An always-healthy HTTP target on every address of this host; counts the requests
    from each client address, so a test sees which namespaces still reach it."""

    def __init__(self):
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with target.lock:
                    target.hits[self.client_address[0]] += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, address: str) -> int:
        with self.lock:
            return self.hits[address]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class OpenRecorder(Recorder):
    """The harness's webhook receiver, listening on every address of this host (the
    Recorder listens on 127.0.0.1, which a namespace cannot reach)."""

    def __init__(self):
        super().__init__()
        super().close()
        self.server = ThreadingHTTPServer(("0.0.0.0", 0), _RecorderHandler)
        self.server.daemon_threads = True
        self.server.owner = self  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def target():
    # this module's Target, which namespaces can reach (not conftest's, on loopback)
    server = Target()
    yield server
    server.close()


@pytest.fixture
def receiver():
    server = OpenRecorder()
    yield server
    server.close()


class NamespacedDaemon(Daemon):
    """A `watchkeeper run` started inside a network namespace (`ip netns exec`, which
    execs the daemon itself, so signals reach it directly)."""

    def __init__(self, directory: Path, namespace: str, **kwargs):
        super().__init__(directory, **kwargs)
        self.namespace = namespace

    def start(self, wait: bool = True, timeout: float = 30.0) -> NamespacedDaemon:
        self.log_file = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                *("ip", "netns", "exec", self.namespace),
                *(sys.executable, "-m", "watchkeeper.engine", "-c", self.config),
                *("--log-level", "debug", "run", *self.args),
            ],
            cwd=self.directory,
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_log("daemon started", timeout=timeout)
        return self


def env_or(name: str, default: str) -> str:
    """`${NAME:-default}`: a daemon's own value, or the host's when it has none."""
    return "${" + name + ":-" + default + "}"


def config(store_url: str, target: Target, receiver: Recorder, prefix: str) -> dict:
    return {
        "version": 1,
        "engine": {"workers": 0},
        "server": {"listen": "127.0.0.1:0"},
        "state": {
            "type": "redis",
            "url": env_or("STORE_URL", store_url),
            "prefix": prefix,
            "require_aof": False,
            "lease_time": "3s",
        },
        "checks": {
            "api": {
                "probe": "http",
                "url": env_or("TARGET_URL", f"http://127.0.0.1:{target.port}") + "/health",
                "schedule": {"every": "1s"},
                "timeout": "2s",
                "failure_threshold": 2,
                "locations": {"from": LOCATIONS, "quorum": 2},
            },
        },
        "notifiers": {
            "hook": {
                "type": "webhook",
                "url": env_or("HOOK_URL", f"http://127.0.0.1:{receiver.port}") + "/hook",
                "retry_initial": "300ms",
                "retry_max": "1s",
            }
        },
        "routes": [
            {
                "match": {"check": "api"},
                "notify": ["hook"],
                "group_wait": "0s",
                "group_interval": "1s",
            }
        ],
    }


def status(directory: Path) -> dict:
    """`watchkeeper status` from this host, on the defaults of monitor.yaml."""
    env = {k: v for k, v in os.environ.items() if k not in PER_LOCATION}
    out = subprocess.run(
        [sys.executable, "-m", "watchkeeper.engine", "status", "--format", "json"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def seen(directory: Path) -> dict[str, str]:
    """What each location sees of api, from this host."""
    return {s["location"]: s["status"] for s in api_row(status(directory))["locations"]}


def probing(target: Target, places: dict[str, Location], seconds: float) -> dict[str, int]:
    """How many requests each location's namespace sent the target in `seconds`."""
    before = {name: target.count(p.own_ip) for name, p in places.items()}
    time.sleep(seconds)
    return {name: target.count(p.own_ip) - before[name] for name, p in places.items()}


def test_a_partition_of_two_locations_fires_one_notice_naming_them(
    tmp_path, places, store, target, receiver
):
    prefix = f"wk-netns-{secrets.token_hex(4)}:"
    (tmp_path / "monitor.yaml").write_text(
        yaml.safe_dump(config(store.url, target, receiver, prefix), sort_keys=False)
    )
    daemons = {}
    try:
        for name, place in places.items():
            daemons[name] = NamespacedDaemon(
                tmp_path,
                place.namespace,
                env={
                    "STORE_URL": f"redis://{place.host_ip}:{store.port}/0",
                    "TARGET_URL": f"http://{place.target_ip}:{target.port}",
                    "HOOK_URL": f"http://{place.host_ip}:{receiver.port}",
                },
                args=("--replica", f"{name}-1", "--location", name),
            ).start(wait=False)
        for daemon in daemons.values():
            daemon.wait_log("daemon started", timeout=40)
        wait_until(
            lambda: seen(tmp_path) == dict.fromkeys(LOCATIONS, "up"),
            20,
            "every location to see api up",
        )
        # each location probes from its own namespace, about once a second
        ran = probing(target, places, 3)
        assert all(2 <= n <= 5 for n in ran.values()), ran

        # eu loses its route to the target: nothing reaches it from there, nobody is woken
        places["eu"].blackhole()
        wait_until(lambda: seen(tmp_path)["eu"] == "down", 15, "eu to see api down")
        ran = probing(target, places, 3)
        assert ran["eu"] == 0, ran
        assert min(ran["us"], ran["ap"]) >= 2, ran
        assert alerts(receiver) == []
        assert api_row(status(tmp_path))["status"] == "up"

        # us's packets to the target vanish on the way (it times out): one firing notice
        # naming both, sent over the veth to the receiver on this host
        places["us"].drop_silently()
        receiver.wait_for(1, "/hook", timeout=25)
        time.sleep(3)
        sent = alerts(receiver)
        assert [a["status"] for a in sent] == ["firing"], sent
        assert sent[0]["locations"] == {
            "down": ["eu", "us"],
            "up": ["ap"],
            "unknown": [],
            "quorum": 2,
        }
        # the headline quotes what the first location down (eu) said, its URL left out
        assert sent[0]["summary"] == (
            "api is down in eu, us (2 of 3, quorum 2): cannot connect: invalid argument (critical)"
        ), sent[0]["summary"]
        assert "up in ap" in sent[0]["detail"]
        row = api_row(status(tmp_path))
        assert row["status"] == "down"
        assert {s["location"]: s["ok"] for s in row["locations"]} == {
            "eu": False,
            "us": False,
            "ap": True,
        }
        # eu fails at once; us waits for an answer that never comes, up to the timeout
        took = {s["location"]: s["duration"] for s in row["locations"]}
        assert took["eu"] < 1, took
        assert took["us"] >= 1.5, took

        # the partition heals: one resolved notice for the same alert
        places["eu"].reconnect()
        places["us"].reconnect()
        receiver.wait_for(2, "/hook", timeout=25)
        time.sleep(3)
        sent = alerts(receiver)
        assert [a["status"] for a in sent] == ["firing", "resolved"], sent
        assert sent[1]["id"] == sent[0]["id"]
        assert len(sent[1]["locations"]["down"]) < 2
        assert sent[1]["summary"].endswith("(was: cannot connect: invalid argument)")
        wait_until(
            lambda: seen(tmp_path) == dict.fromkeys(LOCATIONS, "up"),
            15,
            "every location to see api up again",
        )
        ran = probing(target, places, 3)
        assert all(n >= 2 for n in ran.values()), ran
    finally:
        stop_all(list(daemons.values()))
