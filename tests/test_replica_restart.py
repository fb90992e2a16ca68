"""A replica on a shared store starts again under its own name (issue 15).

A clean stop gives back every lease the daemon holds; after SIGKILL the same name starts
again once the dead process's member lease has expired (within `lease_time`), with a
fencing epoch greater than its predecessor's; a live daemon holding the name still
refuses a second one with a one-line error. Real `watchkeeper run` processes, real
PostgreSQL and Redis.
"""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.daemon_harness import Daemon, Target

pytestmark = pytest.mark.slow

LEASE = 2.0  # seconds: the member lease each renewal grants is 0.6 of it
KILL_LEASE = 6.0  # longer than a daemon takes to start, so a successor has to wait
NAME = "r1"
DUPLICATE = (
    f"error: another daemon is running as replica '{NAME}'; give each replica its own "
    "name with --replica or WATCHKEEPER_REPLICA"
)


@dataclass
class SharedStore:
    """A `state:` section for a fresh shared store, and a look at its lease records."""

    state: dict[str, Any]

    def leases(self) -> dict[str, tuple[str, int]]:
        """Every lease record the store keeps, expired or not: name -> (holder, epoch)."""
        if self.state["type"] == "postgres":
            import psycopg

            with psycopg.connect(self.state["url"]) as conn:
                rows = conn.execute("SELECT name, holder, epoch FROM watchkeeper.leases").fetchall()
            return {name: (holder, int(epoch)) for name, holder, epoch in rows}
        import redis

        client = redis.Redis.from_url(self.state["url"], decode_responses=True)
        try:
            holders = client.hgetall(f"{self.state['prefix']}lease:holder")
            epochs = client.hgetall(f"{self.state['prefix']}lease:epoch")
        finally:
            client.close()
        return {name: (holder, int(epochs[name])) for name, holder in holders.items()}


@pytest.fixture(params=["postgres", "redis"])
def store(request) -> Iterator[SharedStore]:
    if request.param == "postgres":
        from tests.pg_server import PgUnavailable, local_test_database

        try:
            with local_test_database() as url:
                yield SharedStore({"type": "postgres", "url": url})
        except PgUnavailable as exc:
            pytest.skip(str(exc))
    else:
        from tests.redis_server import RedisUnavailable, delete_prefix, local_redis

        try:
            local_redis().close()
        except RedisUnavailable as exc:
            pytest.skip(str(exc))
        prefix = f"wk-test-{uuid.uuid4().hex[:8]}:"
        state = {
            "type": "redis",
            "url": "redis://127.0.0.1:6379/0",
            "prefix": prefix,
            "require_aof": False,
        }
        try:
            yield SharedStore(state)
        finally:
            delete_prefix(state["url"], prefix)


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


def configure(directory, store: SharedStore, target: Target, lease: float = LEASE) -> None:
    config = {
        "version": 1,
        "engine": {"workers": 0},
        "server": {"listen": "127.0.0.1:0"},
        "state": {**store.state, "lease_time": f"{lease}s"},
        "checks": {
            "web": {"probe": "http", "url": f"{target.url}/health", "schedule": {"every": "1s"}}
        },
    }
    (directory / "monitor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def directory(tmp_path, store, target):
    configure(tmp_path, store, target)
    return tmp_path


@pytest.fixture
def replica(directory) -> Iterator[Callable[[], Daemon]]:
    """Make daemons named NAME on the test's config; kill any still running at the end."""
    made: list[Daemon] = []

    def make() -> Daemon:
        made.append(Daemon(directory, env={"WATCHKEEPER_REPLICA": NAME}))
        return made[-1]

    yield make
    for daemon in made:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.signal(signal.SIGCONT)
            daemon.kill()


def started(daemon: Daemon) -> float:
    """Start the daemon; return how long it took to log `daemon started`."""
    began = time.monotonic()
    daemon.start(timeout=LEASE + 30)
    return time.monotonic() - began


def stop_cleanly(daemon: Daemon) -> None:
    assert daemon.stop() == 0, daemon.log
    assert "daemon stopped" in daemon.log, daemon.log
    assert "pending_writes=0" in daemon.log, daemon.log


def refused(daemon: Daemon) -> str:
    """Start a daemon that must be refused; return what it printed."""
    daemon.start(wait=False)
    assert daemon.proc is not None
    code = daemon.proc.wait(LEASE + 30)
    daemon.log_file.close()
    output = daemon.log
    assert code == 1, output
    return output


def fence(store: SharedStore) -> tuple[str, int]:
    return store.leases()[f"fence:{NAME}"]


def test_a_clean_stop_gives_back_every_lease_and_the_name_starts_again(replica, store):
    first = replica()
    started(first)
    held = store.leases()
    assert set(held) == {f"member:{NAME}", f"fence:{NAME}"}, held
    stop_cleanly(first)
    assert store.leases() == {}  # nothing left for a successor to wait for

    second = replica()
    try:
        started(second)
        assert fence(store)[1] > held[f"fence:{NAME}"][1]
    finally:
        stop_cleanly(second)
    assert "replica name held" not in second.log  # it had nothing to wait for


def test_after_sigkill_the_name_starts_again_within_the_lease_time(
    replica, store, target, directory
):
    """The successor is started first and killing its predecessor is what lets it on,
    so the time measured is the dead lease running out, not Python starting up. (Kill,
    then start: see test_a_live_daemon_keeps_its_name.)"""
    configure(directory, store, target, lease=KILL_LEASE)
    first = replica()
    started(first)
    before = fence(store)
    second = replica()
    try:
        second.start(wait=False)
        second.wait_log("replica name held; waiting for its lease to expire", timeout=30)
        first.kill()
        killed_at = time.monotonic()
        second.wait_log("replica name taken over", timeout=KILL_LEASE + 30)
        restart = time.monotonic() - killed_at
        second.wait_log("daemon started", timeout=30)
        after = fence(store)
    finally:
        stop_cleanly(second)
    waited = re.search(r"replica name taken over .*waited=([0-9.]+)", second.log)
    assert waited, second.log
    print(
        f"{store.state['type']}: lease_time {KILL_LEASE}s, name taken {restart:.2f}s after "
        f"SIGKILL of its predecessor (waited {waited.group(1)}s for it in all)"
    )
    # a successor's epoch is greater, so a predecessor that is only cut off stays fenced
    assert after[1] > before[1]
    assert after[0] != before[0]
    # the wait is the dead process's member lease running out (0.6 x lease_time)
    assert restart <= KILL_LEASE + 1.0, f"name taken {restart:.1f}s after SIGKILL:\n{second.log}"


def test_ten_restarts_in_a_row(replica, store):
    epochs = []
    for _ in range(10):
        daemon = replica()
        started(daemon)
        epochs.append(fence(store)[1])
        stop_cleanly(daemon)
        assert store.leases() == {}
    assert epochs == sorted(set(epochs)), epochs  # every start took a greater epoch


def test_a_live_daemon_keeps_its_name(replica, store):
    """A second daemon with a live one's name is refused, also when the live one took
    the name over from a killed predecessor (as after every crash or kill -9 upgrade)."""
    predecessor = replica()
    started(predecessor)
    predecessor.kill()
    holder = replica()
    started(holder)
    try:
        held = store.leases()
        began = time.monotonic()
        output = refused(replica())
        refusal = time.monotonic() - began
        assert store.leases() == held  # the refused daemon took and gave away nothing
        assert holder.proc.poll() is None  # the live daemon carries on
    finally:
        stop_cleanly(holder)
    print(f"{store.state['type']}: duplicate refused after {refusal:.2f}s")
    lines = output.strip().splitlines()
    assert lines[-1] == DUPLICATE, output
    assert "Traceback" not in output
    assert "held elsewhere" not in output
    # the refusal is one line, whatever the debug log said before it
    assert sum(1 for line in lines if line.startswith("error:")) == 1, output


def test_a_frozen_predecessor_is_fenced_off_and_cannot_free_the_name(replica, store):
    """SIGSTOP stands for a daemon cut off from the store: its successor takes the name
    with a greater epoch, and the old process, woken, learns it lost the name and, when
    stopped, gives away none of the successor's leases."""
    first = replica()
    started(first)
    old = fence(store)
    first.signal(signal.SIGSTOP)
    second = replica()
    try:
        started(second)
        new = store.leases()
        assert new[f"fence:{NAME}"][1] > old[1]
        first.signal(signal.SIGCONT)
        first.wait_log("replica lease lost to another daemon", timeout=LEASE * 5)
        stop_cleanly(first)
        # the old process gave back only what was still its own: nothing
        assert store.leases() == new
        time.sleep(LEASE)
        assert second.proc.poll() is None
        assert store.leases()[f"member:{NAME}"][0] == new[f"member:{NAME}"][0]
    finally:
        stop_cleanly(second)
    assert store.leases() == {}
