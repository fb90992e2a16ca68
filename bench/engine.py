"""Measure the engine: checks/s through schedule ► probe ► evaluate ► state write, beside a raw
asyncio socket client in the same run; scheduling lateness at 10,000 checks/min; RSS.

    python bench/engine.py [--checks 3000] [--seconds 20] [--lateness-checks 10000]
                           [--lateness-seconds 150] [--workers auto] [--skip-lateness]

The target is a local nginx (installed from Debian packages when missing) on a free port.
Targets on this machine (issue 3): engine >= 0.3x the raw client; p99 lateness <= 250 ms and
max <= 1 s at 10,000 checks/min; RSS <= 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import psutil
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(directory: Path) -> tuple[subprocess.Popen, int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "nginx-light"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 '{{"status":"ok"}}'; }}
    }}
}}
""")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(directory)])
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("nginx did not start")


async def raw_client(port: int, seconds: float, concurrency: int = 64) -> float:
    """Requests/s of a bare asyncio client: a fresh connection per request, like the probe."""
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request.encode())
            await writer.drain()
            await reader.read()
            writer.close()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


def write_config(directory: Path, checks: dict, workers: str) -> Path:
    config = {
        "version": 1,
        "engine": {"workers": workers if workers == "auto" else int(workers), "concurrency": 512},
        "server": {"enabled": False},
        "state": {"type": "sqlite", "path": str(directory / "state.db")},
        "checks": checks,
        "notifiers": {"console": {"type": "log"}},
        "routes": [{"match": {}, "notify": ["console"]}],
    }
    path = directory / "monitor.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rss_mb() -> tuple[float, float]:
    me = psutil.Process()
    children = me.children(recursive=True)
    own = me.memory_info().rss
    total = own + sum(
        c.memory_info().rss for c in children if c.is_running() and "nginx" not in c.name()
    )
    return own / 1e6, total / 1e6


async def run_engine(path: Path, seconds: float, warmup: float) -> dict:
    from watchkeeper.engine.daemon import load_daemon

    daemon = load_daemon(path)
    counted = {"n": 0}
    daemon.runtime.result_handlers.append(
        lambda i, r, at: counted.__setitem__("n", counted["n"] + 1)
    )
    failures = {"n": 0}
    daemon.runtime.result_handlers.append(
        lambda i, r, at: failures.__setitem__("n", failures["n"] + (not r.ok))
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.serve)
        await daemon.ready.wait()
        await anyio.sleep(warmup)
        daemon.scheduler.lateness.samples.clear()
        daemon.scheduler.lateness.worst = 0.0
        start_count, start = counted["n"], time.perf_counter()
        await anyio.sleep(seconds)
        rate = (counted["n"] - start_count) / (time.perf_counter() - start)
        own, total = rss_mb()
        lat = daemon.scheduler.lateness
        skipped = sum(j.skipped for j in daemon.scheduler.jobs.values())
        figures = {
            "rate": rate,
            "rss_main": own,
            "rss_total": total,
            "p50": lat.quantile(0.5),
            "p99": lat.quantile(0.99),
            "max": lat.worst,
            "skipped": skipped,
            "failures": failures["n"],
            "workers": getattr(daemon.executor, "count", 0),
        }
        daemon.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--lateness-checks", type=int, default=10_000)
    parser.add_argument("--lateness-seconds", type=float, default=150)
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--skip-lateness", action="store_true")
    args = parser.parse_args()
    import logging

    logging.getLogger("watchkeeper").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        nginx, port = start_nginx(tmpdir)
        try:
            raw = asyncio.run(raw_client(port, min(10.0, args.seconds)))
            print(f"raw asyncio client:   {raw:8.0f} req/s (fresh connection each, 64 at once)")
            checks = {
                f"http-{i}": {
                    "probe": "http",
                    "url": f"http://127.0.0.1:{port}/h{i}",
                    "schedule": {"every": "1s"},
                    "timeout": "5s",
                }
                for i in range(args.checks)
            }
            (tmpdir / "t").mkdir()
            path = write_config(tmpdir / "t", checks, args.workers)
            engine = anyio.run(run_engine, path, args.seconds, 5.0)
            ratio = engine["rate"] / raw
            print(
                f"engine (http checks): {engine['rate']:8.0f} checks/s through the whole "
                f"engine ({args.checks} checks every 1s, {engine['workers']} worker "
                f"process(es), {engine['skipped']} runs skipped, {engine['failures']} failed)"
            )
            print(
                f"ratio engine/raw:     {ratio:8.2f}x   target >= 0.30x   "
                f"{'MET' if ratio >= 0.3 else 'MISSED'}"
            )
            print(
                f"RSS at {args.checks} checks: daemon {engine['rss_main']:.0f} MB, "
                f"with workers {engine['rss_total']:.0f} MB"
            )
            if args.skip_lateness:
                return
            checks = {
                f"tcp-{i}": {
                    "probe": "tcp",
                    "host": "127.0.0.1",
                    "port": port,
                    "schedule": {"every": "60s"},
                    "timeout": "5s",
                }
                for i in range(args.lateness_checks)
            }
            (tmpdir / "l").mkdir()
            path = write_config(tmpdir / "l", checks, args.workers)
            late = anyio.run(run_engine, path, args.lateness_seconds, 10.0)
            print(
                f"lateness at {args.lateness_checks} checks/min over "
                f"{args.lateness_seconds:.0f}s: p50 {late['p50'] * 1000:.1f} ms, "
                f"p99 {late['p99'] * 1000:.1f} ms, max {late['max'] * 1000:.1f} ms   "
                f"targets p99 <= 250 ms, max <= 1000 ms   "
                f"{'MET' if late['p99'] <= 0.25 and late['max'] <= 1.0 else 'MISSED'}"
            )
            print(
                f"RSS at {args.lateness_checks} checks: daemon {late['rss_main']:.0f} MB, "
                f"with workers {late['rss_total']:.0f} MB   target <= 150 MB   "
                f"{'MET' if late['rss_total'] <= 150 else 'MISSED'}"
            )
        finally:
            nginx.terminate()
            nginx.wait(10)


if __name__ == "__main__":
    sys.exit(main())
