"""Replicas: store round trips per check run, one node vs two; takeover after SIGKILL.

    python bench/replicas.py [--stores postgres,redis] [--checks 300] [--seconds 20]
                             [--lease 5s] [--takeover-checks 60] [--repeat 3]

1. Round trips per run. Real daemons run in this process on a shared store (PostgreSQL
   and Redis; SQLite cannot be shared), N http checks every 1s against a local nginx.
   Once alone ("one node": a replica set of one, which is what a daemon on a shared store
   is), once as two replicas `a` and `b` splitting the checks. The stores count the
   requests they send (`round_trips`: statements, pipelines, scripts); the figure is
   round trips of all daemons / runs of all daemons over the measured window, after a
   warm-up in which membership settles. Target (issue 5): two replicas <= 1.1x one node
   (coordination must not add a round trip per run). Lease renewals and the other
   background work are per second, not per run, and are included.
2. Takeover. Two replicas run as real processes (`watchkeeper run --replica a|b`) with
   `lease_time` L; each check hits its own path on a recording server. `a` is killed with
   SIGKILL; for every check the gap from the kill to its next request is measured. The
   checks `a` owned show a gap of about the time it takes `b` to notice and take them;
   the largest gap is the takeover time, compared with L.

PostgreSQL and Redis are the local servers unless WATCHKEEPER_BENCH_PG /
WATCHKEEPER_BENCH_REDIS say otherwise; a store that cannot be reached is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import start_nginx
from watchkeeper.engine.testing import HttpTestServer, RecordedRequest, Reply

PG_SERVER = os.environ.get("WATCHKEEPER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("WATCHKEEPER_BENCH_REDIS", "redis://127.0.0.1:6379/0")


@contextlib.contextmanager
def shared_state(store: str, lease: str) -> Iterator[dict]:
    """A fresh `state:` section on the local PostgreSQL or Redis; removed afterwards."""
    if store == "postgres":
        import psycopg

        name = f"watchkeeper_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        try:
            yield {"type": "postgres", "url": f"{PG_SERVER}/{name}", "lease_time": lease}
        finally:
            with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as db:
                db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    else:
        import redis

        prefix = f"wkbench:{uuid.uuid4().hex[:8]}:"
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
        try:
            yield {
                "type": "redis",
                "url": REDIS_URL,
                "prefix": prefix,
                "require_aof": False,
                "lease_time": lease,
            }
        finally:
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)


def write_config(folder: Path, state: dict, urls: list[str]) -> Path:
    config = {
        "version": 1,
        "engine": {"workers": 0},
        "server": {"enabled": False},
        "state": state,
        "checks": {
            f"c{i}": {"probe": "http", "url": url, "schedule": {"every": "1s"}, "timeout": "5s"}
            for i, url in enumerate(urls)
        },
        "notifiers": {"console": {"type": "log"}},
        "routes": [{"match": {}, "notify": ["console"]}],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "monitor.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# -- 1. round trips per run -----------------------------------------------------------------


async def round_trips(path: Path, replicas: list[str | None], seconds: float) -> dict:
    """Run daemons in this process; return round trips per run over `seconds`."""
    from watchkeeper.engine.daemon import load_daemon

    daemons = [load_daemon(path, replica=name) for name in replicas]
    runs = [0]

    def count(instance, result, at) -> None:
        runs[0] += 1

    for daemon in daemons:
        daemon.runtime.result_handlers.append(count)
    lease = daemons[0].config.state.lease_time
    async with anyio.create_task_group() as tg:
        for daemon in daemons:
            tg.start_soon(daemon.serve)
            await daemon.ready.wait()
        await anyio.sleep(max(5.0, lease))  # membership settles, every daemon owns its share
        trips0, runs0, t0 = sum(d.store.round_trips for d in daemons), runs[0], time.monotonic()
        flushes0 = sum(d.writer.flushes for d in daemons)
        await anyio.sleep(seconds)
        trips = sum(d.store.round_trips for d in daemons) - trips0
        flushes = sum(d.writer.flushes for d in daemons) - flushes0
        done = runs[0] - runs0
        took = time.monotonic() - t0
        owned = [len(d.runtime.instances) for d in daemons]
        for daemon in daemons:
            daemon.stop()
    return {
        "per_run": trips / max(done, 1),
        "runs": done / took,
        "trips": trips / took,
        "flushes": flushes / took,
        "owned": owned,
    }


def measure_round_trips(args: argparse.Namespace, port: int, tmp: Path) -> None:
    print(
        f"\n== store round trips per check run: http checks every 1s, {args.repeat} repeat(s) "
        f"of {args.seconds:.0f}s; load average {load()}"
    )
    n = args.checks
    setups = [
        ("one node", [None], n),
        ("two replicas, same total load", ["a", "b"], n),
        ("two replicas, same load each", ["a", "b"], 2 * n),
    ]
    for store in args.stores:
        figures: dict[str, list[dict]] = {label: [] for label, _, _ in setups}
        try:
            for index in range(args.repeat):
                for label, names, count in setups:
                    urls = [f"http://127.0.0.1:{port}/c{i}" for i in range(count)]
                    with shared_state(store, args.lease) as state:
                        folder = tmp / f"rt-{store}-{index}-{len(names)}-{count}"
                        path = write_config(folder, state, urls)
                        figures[label].append(anyio.run(round_trips, path, names, args.seconds))
        except Exception as exc:  # a store that is not there
            print(f"{store}: skipped ({type(exc).__name__}: {exc})")
            continue
        per_run = {k: statistics.median(r["per_run"] for r in v) for k, v in figures.items()}
        one = per_run["one node"]
        print(f"{store}:")
        for label, _names, count in setups:
            print(
                f"  {label:<31} {count:>5} checks: {per_run[label]:.3f} round trips/run "
                f"= {per_run[label] / one:.2f}x one node ({_rates(figures[label])})"
            )
        ratio = per_run["two replicas, same load each"] / one
        print(
            f"  target (two replicas, each as busy as the one node) <= 1.10x: {ratio:.2f}x   "
            f"{'MET' if ratio <= 1.1 else 'MISSED'}"
        )


def _rates(figures: list[dict]) -> str:
    runs = statistics.median(r["runs"] for r in figures)
    trips = statistics.median(r["trips"] for r in figures)
    flushes = statistics.median(r["flushes"] for r in figures)
    per_run = " ".join(f"{r['per_run']:.3f}" for r in figures)
    return (
        f"{runs:.0f} runs/s, {trips:.1f} round trips/s, {flushes:.1f} writer flushes/s; "
        f"per run [{per_run}]"
    )


# -- 2. takeover after SIGKILL --------------------------------------------------------------


class Arrivals:
    """When each path was last requested (wall clock: the daemons are other processes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = {}

    def handle(self, request: RecordedRequest) -> Reply:
        now = time.time()
        with self.lock:
            self.times.setdefault(request.path, []).append(now)
        return Reply(200, b'{"status":"ok"}', {"Content-Type": "application/json"})


def spawn(path: Path, name: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchkeeper.engine",
            "-c",
            str(path),
            "--log-level",
            "info",
            "--log-format",
            "json",
            "run",
            "--replica",
            name,
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=path.parent,
    )


def takeover_once(store: str, args: argparse.Namespace, tmp: Path, index: int) -> dict:
    arrivals = Arrivals()
    lease = args.lease_seconds
    with HttpTestServer() as target, shared_state(store, args.lease) as state:
        paths = [f"/t{i}" for i in range(args.takeover_checks)]
        for p in paths:
            target.reply(p, handler=arrivals.handle)
        folder = tmp / f"takeover-{store}-{index}"
        path = write_config(folder, state, [target.url(p) for p in paths])
        a = spawn(path, "a", folder / "a.log")
        b = spawn(path, "b", folder / "b.log")
        try:
            time.sleep(max(8.0, 2 * lease + 4))  # both started, the split settled
            killed = time.time()
            a.send_signal(signal.SIGKILL)
            a.wait()
            time.sleep(lease * 2 + 6)
        finally:
            for proc in (a, b):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    gaps = []
    with arrivals.lock:
        for p in paths:
            after = [t for t in arrivals.times.get(p, []) if t > killed]
            gaps.append((after[0] if after else float("inf")) - killed)
    moved = [g for g in gaps if g > 1.5]  # runs every 1s: a longer gap is a check that moved
    return {
        "takeover": max(gaps),
        "owned": _rebalanced_after(folder / "b.log", killed) - killed,
        "moved": len(moved),
        "checks": len(paths),
    }


def _rebalanced_after(log: Path, since: float) -> float:
    """When the survivor logged taking checks over (its JSON log line), after `since`."""
    import calendar
    import json

    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") != "checks rebalanced" or not entry.get("gained"):
            continue
        stamp, _, fraction = entry["time"].rstrip("Z").partition(".")
        at = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{fraction}")
        if at > since:
            return at
    return float("inf")


def measure_takeover(args: argparse.Namespace, tmp: Path) -> None:
    print(
        f"\n== takeover after SIGKILL: 2 replicas, {args.takeover_checks} http checks every "
        f"1s, lease_time {args.lease}, {args.repeat} repeat(s); load average {load()}"
    )
    for store in args.stores:
        try:
            results = [takeover_once(store, args, tmp, i) for i in range(args.repeat)]
        except Exception as exc:
            print(f"{store}: skipped ({type(exc).__name__}: {exc})")
            continue
        worst = [r["takeover"] for r in results]
        owned = [r["owned"] for r in results]
        lease = args.lease_seconds
        print(
            f"{store:<9} ownership moved (kill -> survivor takes the checks): median "
            f"{statistics.median(owned):.2f}s [{' '.join(f'{w:.2f}' for w in owned)}] = "
            f"{statistics.median(owned) / lease:.2f}x the lease time ({args.lease})   "
            f"{'within the lease time' if max(owned) <= lease else 'LONGER than the lease time'}"
        )
        print(
            f"{'':<9} runs again (kill -> last moved check runs on the survivor): median "
            f"{statistics.median(worst):.2f}s [{' '.join(f'{w:.2f}' for w in worst)}] = "
            f"{statistics.median(worst) / lease:.2f}x the lease time (a taken-over check "
            f"runs at once); checks moved "
            f"{[r['moved'] for r in results]} of {args.takeover_checks}"
        )


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    from watchkeeper.schema.units import parse_duration

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="postgres,redis", help="comma-separated")
    parser.add_argument("--checks", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--lease", default="5s")
    parser.add_argument("--takeover-checks", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-round-trips", action="store_true")
    parser.add_argument("--skip-takeover", action="store_true")
    args = parser.parse_args()
    args.stores = [s for s in args.stores.split(",") if s]
    args.lease_seconds = parse_duration(args.lease)
    logging.getLogger("watchkeeper").setLevel(logging.ERROR)
    logging.getLogger("psycopg").setLevel(logging.ERROR)  # pools cut off as daemons stop
    print(f"{os.cpu_count()} CPUs; load average {load()}")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if not args.skip_round_trips:
            nginx, port = start_nginx(tmp)
            try:
                measure_round_trips(args, port, tmp)
            finally:
                nginx.terminate()
                nginx.wait(10)
        if not args.skip_takeover:
            measure_takeover(args, tmp)


if __name__ == "__main__":
    sys.exit(main())
