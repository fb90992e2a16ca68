"""Several daemons as one (DESIGN.md Semantics ► Replicas), with real processes and stores.

Every scheduled run happens once across the replicas, two replicas send one notice, a
killed replica's checks move to the survivors within the lease time, and a store that
goes away for a while loses nothing that was accepted.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter

import pytest
import yaml

from tests.daemon_harness import Daemon, Recorder, Target
from watchkeeper.engine.state.replicas import owner

pytestmark = pytest.mark.slow

LEASE = "3s"


@pytest.fixture(params=["postgres", "redis"])
def shared_state(request):
    """A `state:` section for a store several daemons share."""
    if request.param == "postgres":
        from tests.pg_server import PgUnavailable, local_test_database

        try:
            with local_test_database() as url:
                yield {"type": "postgres", "url": url, "lease_time": LEASE}
        except PgUnavailable as exc:
            pytest.skip(str(exc))
    else:
        import redis

        try:
            redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
        except Exception as exc:
            pytest.skip(f"Redis is not reachable at 127.0.0.1:6379: {exc}")
        prefix = f"wk-test-{uuid.uuid4().hex[:8]}:"
        yield {
            "type": "redis",
            "url": "redis://127.0.0.1:6379/0",
            "prefix": prefix,
            "require_aof": False,
            "lease_time": LEASE,
        }
        client = redis.Redis(host="127.0.0.1", port=6379)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def config(target: Target, receiver: Recorder, state: dict, checks: int = 6) -> dict:
    return {
        "version": 1,
        "engine": {"workers": 0},
        "server": {"listen": "127.0.0.1:0"},
        "state": state,
        "checks": {
            f"c{i}": {
                "probe": "http",
                "url": f"{target.url}/c{i}",
                "schedule": {"every": "1s"},
                "timeout": "2s",
            }
            for i in range(checks)
        },
        "notifiers": {
            "hook": {
                "type": "webhook",
                "url": f"{receiver.url}/hook",
                "retry_initial": "300ms",
                "retry_max": "1s",
            }
        },
        "routes": [{"match": {}, "notify": ["hook"], "group_wait": "0s", "group_interval": "1s"}],
    }


def write(tmp_path, data: dict) -> None:
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def start_replicas(tmp_path, names: list[str]) -> list[Daemon]:
    daemons = [Daemon(tmp_path, args=("--replica", name)).start(wait=False) for name in names]
    for daemon in daemons:
        daemon.wait_log("daemon started", timeout=40)
    return daemons


def stop_all(daemons: list[Daemon]) -> None:
    """Stop every daemon; when the test is failing, print their logs first."""
    import sys

    if sys.exc_info()[0] is not None:
        for daemon in daemons:
            print(
                f"--- {' '.join(daemon.args)}\n"
                + "\n".join(line for line in daemon.log.splitlines() if " debug " not in line)
            )
    for daemon in daemons:
        try:
            daemon.stop()
        except Exception:
            daemon.kill()


def notices(receiver: Recorder) -> list[tuple[str, str, str]]:
    return [
        (a["check"], a["status"], a["id"])
        for body in receiver.json("/hook")
        for a in body["alerts"]
    ]


def deliveries(receiver: Recorder) -> dict[str, list[dict]]:
    """Each notice the webhook accepted, by its Idempotency-Key, with every delivery of it."""
    with receiver.lock:
        accepted = [r for r in receiver.requests if r["path"] == "/hook"]
    out: dict[str, list[dict]] = {}
    for request in accepted:
        out.setdefault(request["headers"]["Idempotency-Key"], []).append(request)
    return out


def distinct_notices(receiver: Recorder) -> list[tuple[str, str, str]]:
    """What the webhook was told, each notice once however often it was delivered."""
    return [
        (a["check"], a["status"], a["id"])
        for requests in deliveries(receiver).values()
        for a in json.loads(requests[0]["body"])["alerts"]
    ]


class PathCounter:
    """Count the target's requests per path by wrapping its handler."""

    def __init__(self, target: Target):
        self.counts: Counter[str] = Counter()
        handler = target.server.RequestHandlerClass
        original = handler.do_GET
        counts = self.counts

        def do_get(self):
            counts[self.path] += 1
            original(self)

        handler.do_GET = do_get

    def snapshot(self) -> Counter[str]:
        return Counter(self.counts)


@pytest.mark.parametrize("replicas", [2, 3])
def test_every_run_happens_once_across_replicas(tmp_path, target, receiver, shared_state, replicas):
    counter = PathCounter(target)
    write(tmp_path, config(target, receiver, shared_state))
    daemons = start_replicas(tmp_path, [f"r{i}" for i in range(replicas)])
    try:
        time.sleep(4)  # membership settles
        before = counter.snapshot()
        time.sleep(8)
        after = counter.snapshot()
    finally:
        stop_all(daemons)
    for i in range(6):
        runs = after[f"/c{i}"] - before[f"/c{i}"]
        assert 6 <= runs <= 10, f"/c{i} ran {runs} times in 8 s with {replicas} replicas"


def test_two_replicas_send_one_notice_per_transition(tmp_path, target, receiver, shared_state):
    write(tmp_path, config(target, receiver, shared_state))
    daemons = start_replicas(tmp_path, ["a", "b"])
    try:
        time.sleep(4)
        target.status = 500
        receiver.wait_for(6, "/hook", timeout=30)
        time.sleep(3)
        target.status = 200
        receiver.wait_for(12, "/hook", timeout=30)
        time.sleep(3)
    finally:
        stop_all(daemons)
    sent = notices(receiver)
    assert Counter((check, status) for check, status, _ in sent) == {
        (f"c{i}", status): 1 for i in range(6) for status in ("firing", "resolved")
    }


def test_a_killed_replicas_incident_is_resolved_by_the_survivor(
    tmp_path, target, receiver, shared_state
):
    write(tmp_path, config(target, receiver, shared_state))
    victim_name = owner(["a", "b"], "c0")
    daemons = dict(zip(["a", "b"], start_replicas(tmp_path, ["a", "b"]), strict=True))
    survivor = daemons["b" if victim_name == "a" else "a"]
    try:
        time.sleep(4)
        target.status = 500
        receiver.wait_for(6, "/hook", timeout=30)
        firing = {
            check: alert_id for check, status, alert_id in notices(receiver) if status == "firing"
        }
        daemons[victim_name].signal(signal.SIGKILL)
        daemons[victim_name].proc.wait(10)
        # the survivor cannot take over before the victim's lease lapses: all it sent so far
        sent_before_kill = set(deliveries(receiver))
        killed_at = time.monotonic()
        survivor.wait_log("checks rebalanced", timeout=30)
        takeover = time.monotonic() - killed_at
        target.status = 200
        deadline = time.monotonic() + 30
        while len(distinct_notices(receiver)) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(distinct_notices(receiver)) < 12:
            for name, daemon in daemons.items():
                print(
                    f"--- {name}\n"
                    + "\n".join(line for line in daemon.log.splitlines() if " debug " not in line)
                )
            raise AssertionError(f"expected 12 notices, got {distinct_notices(receiver)}")
        time.sleep(3)
    finally:
        stop_all(list(daemons.values()))
    assert takeover <= 3 + 2, f"takeover took {takeover:.1f}s with a 3s lease"
    sent = distinct_notices(receiver)
    resolved = {check: alert_id for check, status, alert_id in sent if status == "resolved"}
    assert resolved == firing  # the same incidents, resolved once each
    assert Counter(status for _, status, _ in sent) == {"firing": 6, "resolved": 6}
    # the receiver records a notice before it answers, so the kill may land between its
    # acceptance and the victim marking it sent: then the survivor sends it once more, with
    # the same Idempotency-Key and body (Semantics > Outbox), never more, and nothing else
    for key, requests in deliveries(receiver).items():
        assert len(requests) <= 2, f"notice {key} delivered {len(requests)} times"
        if len(requests) == 2:
            assert key in sent_before_kill
            assert json.loads(requests[0]["body"]) == json.loads(requests[1]["body"])


def test_a_store_restart_loses_nothing(tmp_path, target, receiver):
    from tests.pg_server import PgServer, PgUnavailable

    try:
        server = PgServer()
        server.start()
    except PgUnavailable as exc:
        pytest.skip(str(exc))
    try:
        state = {"type": "postgres", "url": server.url, "lease_time": "10s"}
        write(tmp_path, config(target, receiver, state, checks=2))
        with Daemon(tmp_path, args=("--replica", "solo")) as daemon:
            time.sleep(3)
            server.stop()
            target.status = 500  # an incident while the store is away
            receiver.wait_for(2, "/hook", timeout=30)
            daemon.wait_log("state store unreachable", timeout=20)
            time.sleep(3)
            server.start()
            daemon.wait_log("state store reachable again", timeout=30)
            target.status = 200
            receiver.wait_for(4, "/hook", timeout=30)
            time.sleep(2)
        import psycopg

        with psycopg.connect(server.url) as conn:
            rows = conn.execute(
                "select key, count(*) from watchkeeper.rows where stream = 'results' group by key"
            ).fetchall()
    finally:
        server.stop()
    counts = dict(rows)
    assert all(count >= 12 for count in counts.values()), counts  # the outage left no gap
    assert Counter(status for _, status, _ in notices(receiver)) == {"firing": 2, "resolved": 2}
