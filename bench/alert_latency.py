"""Time from a failing result to the webhook POST: python bench/alert_latency.py

A real daemon runs in this process on a config of N http checks (every 1s) against a local
test server whose answers the bench flips between healthy and failing, with one route
(`group_wait: 0s`, `group_interval: 0s`) to a webhook notifier that posts to a recording
receiver. For each incident the clock starts when the first failing result of that check
is ingested (a `runtime.result_handlers` hook, which runs inside `Runtime.ingest` before
alerting sees the change) and stops when the receiver has read the POST that reports the
alert firing. The check is then made healthy again, and the next incident starts once its
resolved notice has arrived. Flap detection is set out of the way (every check flips many
times).

    python bench/alert_latency.py [--checks 20] [--incidents 300] [--store sqlite]

Target (issue 4): p99 <= 100 ms with group_wait 0. The receiver and the target are
threaded servers in this process: their share of the GIL is part of what is measured, so
the figures are an upper bound on the daemon's own latency. The load average is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import yaml

from watchkeeper.engine.testing import HttpTestServer, RecordedRequest, Reply


class Receiver:
    """Records when each webhook POST arrived and what it said."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.firing: dict[str, list[float]] = {}  # check -> arrival times of firing posts
        self.resolved: dict[str, list[float]] = {}
        self.posts = 0

    def handle(self, request: RecordedRequest) -> Reply:
        arrived = time.perf_counter()
        payload = json.loads(request.body)
        with self.lock:
            self.posts += 1
            for alert in payload.get("alerts", []):
                target = self.firing if alert.get("status") == "firing" else self.resolved
                target.setdefault(alert["check"], []).append(arrived)
        return Reply(200, b"ok")


def write_config(directory: Path, target: HttpTestServer, hook: str, checks: int, state: dict):
    config = {
        "version": 1,
        "engine": {"workers": 0},
        "server": {"enabled": False},
        "state": state,
        "checks": {
            f"c{i}": {
                "probe": "http",
                "url": target.url(f"/c{i}"),
                "schedule": {"every": "1s"},
                "timeout": "2s",
                "severity": "critical",
                "failure_threshold": 1,
                "success_threshold": 1,
                "flap_threshold": 1_000_000,
            }
            for i in range(checks)
        },
        "notifiers": {"hook": {"type": "webhook", "url": hook, "send_resolved": True}},
        "routes": [{"match": {}, "notify": ["hook"], "group_wait": "0s", "group_interval": "0s"}],
    }
    path = directory / "monitor.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def store_state(store: str, folder: Path) -> Iterator[dict]:
    """The `state:` section: SQLite in the temporary folder, or a fresh PostgreSQL
    database / Redis prefix on the local servers (see bench/replicas.py)."""
    if store == "sqlite":
        yield {"type": "sqlite", "path": str(folder / "state.db")}
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from replicas import shared_state

    with shared_state(store, "15s") as state:
        yield state


async def until(predicate, timeout: float = 30.0) -> None:
    """Wait until what the receiver's thread recorded satisfies `predicate` (it only paces
    the incidents: latencies come from the receiver's own timestamps)."""
    with anyio.move_on_after(timeout):
        while not predicate():  # noqa: ASYNC110 (state written by a server thread)
            await anyio.sleep(0.005)


async def bench(args: argparse.Namespace) -> list[float]:
    from watchkeeper.engine.daemon import load_daemon

    receiver = Receiver()
    latencies: list[float] = []
    with (
        HttpTestServer() as target,
        HttpTestServer() as hooks,
        tempfile.TemporaryDirectory() as tmp,
        contextlib.ExitStack() as stack,
    ):
        hooks.reply("/hook", handler=receiver.handle)
        for i in range(args.checks):
            target.reply(f"/c{i}", json={"status": "ok"})
        state = stack.enter_context(store_state(args.store, Path(tmp)))
        path = write_config(Path(tmp), target, hooks.url("/hook"), args.checks, state)
        daemon = load_daemon(path)
        failing_since: dict[str, float] = {}
        last_ok: dict[str, bool] = {}

        def on_result(instance, result, at) -> None:
            if not result.ok and last_ok.get(instance.check, True):
                failing_since[instance.check] = time.perf_counter()
            last_ok[instance.check] = result.ok

        daemon.runtime.result_handlers.append(on_result)
        remaining = [args.incidents]

        async def incidents(i: int) -> None:
            check = f"c{i}"
            await anyio.sleep(i * 1.0 / args.checks)  # spread the checks' incidents
            while remaining[0] > 0:
                remaining[0] -= 1
                seen = len(receiver.firing.get(check, []))
                resolved = len(receiver.resolved.get(check, []))
                target.reply(f"/c{i}", status=500, json={"status": "down"})
                await until(lambda n=seen: len(receiver.firing.get(check, [])) > n)
                arrived = receiver.firing.get(check, [])
                if len(arrived) > seen and check in failing_since:
                    latencies.append(arrived[seen] - failing_since[check])
                target.reply(f"/c{i}", json={"status": "ok"})
                await until(lambda n=resolved: len(receiver.resolved.get(check, [])) > n)
                await anyio.sleep(0.2)

        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.serve)
            await daemon.ready.wait()
            await anyio.sleep(2.0)  # every check has run and is up
            async with anyio.create_task_group() as runs:
                for i in range(args.checks):
                    runs.start_soon(incidents, i)
            daemon.stop()
    return latencies


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=20)
    parser.add_argument("--incidents", type=int, default=300)
    parser.add_argument(
        "--store",
        default="sqlite",
        choices=["sqlite", "postgres", "redis"],
        help="postgres/redis: the local servers, or WATCHKEEPER_BENCH_PG / _REDIS",
    )
    args = parser.parse_args()
    logging.getLogger("watchkeeper").setLevel(logging.ERROR)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{args.incidents} incidents over {args.checks} http checks (every 1s), webhook "
        f"route with group_wait 0s, {args.store} store; load average {load}"
    )
    latencies = anyio.run(bench, args)
    if not latencies:
        raise SystemExit("no incident was notified")
    ms = [x * 1000 for x in latencies]
    p99 = quantile(ms, 0.99)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"failing result ingested -> webhook POST received, over {len(ms)} incidents: "
        f"p50 {quantile(ms, 0.5):.1f} ms, p90 {quantile(ms, 0.9):.1f} ms, p99 {p99:.1f} ms, "
        f"max {max(ms):.1f} ms, mean {statistics.fmean(ms):.1f} ms"
    )
    print(f"target p99 <= 100 ms   {'MET' if p99 <= 100 else 'MISSED'}   (load average {load})")


if __name__ == "__main__":
    sys.exit(main())
