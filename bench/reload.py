"""Measure reloads at scale: a daemon running 10,000 http checks against a local nginx is
reloaded 20 times, alternately by SIGHUP and by `POST /api/reload`, between two configs
that differ in a few checks, while /health is polled and the event loop is watched.

    python bench/reload.py [--checks 10000] [--reloads 20] [--changed 5] [--warmup 65]
                           [--pause 3] [--workers auto]

The daemon runs in a process of its own (this script again, with `--child`), with a task
beside it that sleeps 10 ms at a time and keeps how late each wake-up was: the longest
step the event loop took. The scheduler's lateness of every run is kept with its time.
This process polls /health every 50 ms, triggers the reloads one after the other (each
once the previous one is done, then `--pause` seconds of quiet) and reads the RSS of the
daemon and its probe workers before the first reload (with /health already polled) and
after the last. At 10,000 checks /health answers every check, so its own answer is a long
step of the loop: the quiet-time figures beside each target show what is not the reload's.
The config watcher is off in the child, so each file written is reloaded once, by the
trigger.

Targets (issue 23): no loop step over 50 ms during a reload, /health p99 under 100 ms
during reloads, no run started more than 250 ms late in a reload (or the second after
it), RSS after the reloads within 5 % of before.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine import http_checks, start_nginx, write_config
from bench.figures import machine, verdict
from watchkeeper.engine.testing import free_port

HERE = Path(__file__).resolve()
TOKEN = "bench-reload-token-5d1e"
AFTER = 1.0  # seconds after a reload whose runs still count as started in it


# -- the child: the daemon in this process --------------------------------------------------


async def child(config: Path, out: Path) -> None:
    import anyio

    from watchkeeper.engine.daemon import load_daemon

    daemon = load_daemon(config)
    lags: list[tuple[float, float]] = []
    late: list[tuple[float, float]] = []
    windows: list[tuple[float, float, bool]] = []

    async def no_watcher() -> None:
        await anyio.sleep_forever()

    daemon._watch_config = no_watcher
    lateness_add = daemon.scheduler.lateness.add

    def add(seconds: float) -> None:
        late.append((time.time(), seconds))
        lateness_add(seconds)

    daemon.scheduler.lateness.add = add
    reload = daemon.reload

    async def timed_reload() -> bool:
        began = time.time()
        ok = await reload()
        windows.append((began, time.time(), ok))
        print(f"reloaded {len(windows)} {ok}", flush=True)
        return ok

    daemon.reload = timed_reload

    async def sample() -> None:
        while True:
            began = time.perf_counter()
            await anyio.sleep(0.01)
            lags.append((time.time(), time.perf_counter() - began - 0.01))

    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.serve)
        await daemon.ready.wait()
        tg.start_soon(sample)
        print("ready", flush=True)
        await daemon.stopping.wait()
        await daemon.scheduler.finished.wait()
        # the figures first: a server cancelled mid-shutdown may raise on its way out
        out.write_text(json.dumps({"lags": lags, "late": late, "windows": windows}))  # noqa: ASYNC240
        tg.cancel_scope.cancel()


# -- this process ---------------------------------------------------------------------------


class Poller:
    """GET /health every 50 ms in a thread; keep (start time, seconds taken)."""

    def __init__(self, url: str):
        self.url = url
        self.times: list[tuple[float, float]] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                began, t0 = time.time(), time.perf_counter()
                try:
                    client.get(self.url + "/health").raise_for_status()
                except httpx.HTTPError:
                    self.failures += 1
                self.times.append((began, time.perf_counter() - t0))
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def rss(pid: int) -> tuple[float, float]:
    """MB of the daemon, and of the daemon with its workers."""
    main = psutil.Process(pid)
    own = main.memory_info().rss
    total = own
    for process in main.children(recursive=True):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return own / 1e6, total / 1e6


def configs(folder: Path, port: int, args: argparse.Namespace) -> tuple[str, str]:
    """Two monitor.yaml texts, the second with `--changed` checks of another timeout."""
    nginx_port = args.nginx_port
    path = write_config(folder, http_checks(nginx_port, args.checks, "60s"), args.workers)
    data = yaml.safe_load(path.read_text())
    data["server"] = {"listen": f"127.0.0.1:{port}", "admin_token": "${ADMIN_TOKEN}"}
    first = yaml.safe_dump(data)
    for i in range(args.changed):
        data["checks"][f"http-{i}"]["timeout"] = "4s"
    return first, yaml.safe_dump(data)


def inside(at: float, windows: list[tuple[float, float, bool]], after: float = 0.0) -> bool:
    return any(began <= at <= ended + after for began, ended, _ in windows)


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def run(args: argparse.Namespace) -> None:
    print(f"reloads at scale; {machine()}")
    with tempfile.TemporaryDirectory(prefix="wk-reload-") as tmp:
        folder = Path(tmp)
        nginx, args.nginx_port = start_nginx(folder)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        first, second = configs(folder, port, args)
        path = folder / "monitor.yaml"
        path.write_text(first)
        out = folder / "figures.json"
        env = {**os.environ, "ADMIN_TOKEN": TOKEN, "PYTHONPATH": str(HERE.parent.parent)}
        proc = subprocess.Popen(
            [sys.executable, str(HERE), "--child", "--config", str(path), "--out", str(out)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit("the daemon did not start")
            print(f"daemon ready with {args.checks} checks; {args.warmup:.0f} s of warm-up")
            time.sleep(args.warmup)
            # RSS "before" with /health already being polled: answering it at 10,000
            # checks takes memory of its own, which is not the reloads'
            poller = Poller(url)
            time.sleep(args.settle)
            before = rss(proc.pid)
            with httpx.Client(timeout=120) as client:
                for index in range(args.reloads):
                    path.write_text(second if index % 2 == 0 else first)
                    if index % 2 == 0:
                        proc.send_signal(signal.SIGHUP)
                    else:
                        answer = client.post(
                            url + "/api/reload", headers={"Authorization": f"Bearer {TOKEN}"}
                        )
                        if answer.status_code != 200:
                            raise SystemExit(f"reload refused: {answer.text[:500]}")
                    line = proc.stdout.readline().split()
                    if line[:1] != ["reloaded"] or line[-1] != "True":
                        raise SystemExit(f"reload {index + 1} failed: {line}")
                    time.sleep(args.pause)
            time.sleep(max(0.0, args.settle - args.pause))
            after = rss(proc.pid)
            poller.stop()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            nginx.kill()
        report(json.loads(out.read_text()), poller, before, after, args)


def report(figures: dict, poller: Poller, before, after, args: argparse.Namespace) -> None:
    windows = [tuple(w) for w in figures["windows"]]
    took = [ended - began for began, ended, _ in windows]
    print(
        f"{len(windows)} reloads of {args.checks} checks ({args.changed} changed each time), "
        f"{statistics.median(took):.2f} s each (median; max {max(took):.2f} s)"
    )
    during = [lag for at, lag in figures["lags"] if inside(at, windows)]
    quiet = [lag for at, lag in figures["lags"] if not inside(at, windows, 2.0)]
    print(
        f"loop steps: {len(during)} samples during reloads, {len(quiet)} in quiet time "
        f"(max {max(quiet, default=0) * 1000:.0f} ms)"
    )
    worst = max(during, default=float("nan"))
    verdict("max loop step during a reload", f"{worst * 1000:.0f} ms", "<= 50 ms", worst <= 0.05)
    health = [took for at, took in poller.times if inside(at, windows)]
    quiet_health = [took for at, took in poller.times if not inside(at, windows, 2.0)]
    print(
        f"/health: {len(health)} answers during reloads (max {max(health, default=0) * 1000:.0f}"
        f" ms), in quiet time median {statistics.median(quiet_health) * 1000:.0f} ms, p99 "
        f"{p99(quiet_health) * 1000:.0f} ms, {poller.failures} failed"
    )
    h99 = p99(health)
    verdict("/health p99 during reloads", f"{h99 * 1000:.0f} ms", "< 100 ms", h99 < 0.1)
    runs = [late for at, late in figures["late"] if inside(at, windows, AFTER)]
    quiet_runs = [late for at, late in figures["late"] if not inside(at, windows, 2.0)]
    print(
        f"runs started: {len(runs)} during reloads (or {AFTER:.0f} s after), worst quiet "
        f"{max(quiet_runs, default=0) * 1000:.0f} ms late"
    )
    late = max(runs, default=0.0)
    verdict("worst run lateness in a reload", f"{late * 1000:.0f} ms", "<= 250 ms", late <= 0.25)
    print(
        f"RSS before the reloads: daemon {before[0]:.0f} MB, with workers {before[1]:.0f} MB; "
        f"after: daemon {after[0]:.0f} MB, with workers {after[1]:.0f} MB"
    )
    for what, index in (("daemon", 0), ("daemon with workers", 1)):
        grew = after[index] / before[index] - 1
        verdict(
            f"RSS growth over {len(windows)} reloads ({what})",
            f"{before[index]:.0f} -> {after[index]:.0f} MB ({grew:+.1%})",
            "<= +5 %",
            grew <= 0.05,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--changed", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=65.0)
    parser.add_argument("--pause", type=float, default=3.0)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import logging

    logging.getLogger("watchkeeper").setLevel(logging.ERROR)
    if args.child:
        import anyio

        with contextlib.suppress(Exception):  # the figures are written by then
            anyio.run(child, args.config, args.out)
    else:
        run(args)


if __name__ == "__main__":
    main()
