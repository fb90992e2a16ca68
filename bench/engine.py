"""Measure the engine: checks/s through schedule ► probe ► evaluate ► state write, beside a raw
asyncio socket client in the same run; scheduling lateness at 10,000 checks/min; RSS.

    python bench/engine.py [--checks 6000] [--seconds 15] [--repeat 3] [--workers auto]
                           [--lateness-checks 10000] [--lateness-seconds 150]
                           [--skip-throughput] [--skip-lateness]
    python bench/engine.py --isolation [--steady-checks 4000] [--checks 5000]
                           [--seconds 30] [--repeat 3] [--shape both|steady|flat-out]
    python bench/engine.py --day [--day-checks 10000] [--day-runs N] [--day-minutes M]

The target is a local nginx (installed from Debian packages when missing) on a free port.
Each repeat measures the raw client, then the engine in a fresh process (the daemon runs
in-process there, with its worker processes), so one run's garbage never counts against
the next; the figures printed are medians over the repeats. Beside wall-clock rates it
prints CPU time per check (daemon process, worker processes, nginx), which a busy machine
disturbs far less than rates: other work on the machine slows both clients, but not the
CPU each spends on a request. The load average is printed before and after.

`--isolation` measures what the worker processes cost: CPU per probe (daemon and workers
together) with the default `engine.workers` against `workers: 0`, at a steady rate
(`--steady-checks` every 60 s: 4,000 is 67 runs/s) and flat out (`--checks` every 1 s),
the two settings interleaved in each repeat.

`--day` runs a day's worth of runs of 10,000 checks every 60 s (14.4 million) as fast as
the engine goes: the same 10,000 checks every second, default settings (HTTP server on,
one worker), with `/metrics` scraped from this process as often as a Prometheus scraping
every 15 s would over the day the runs stand for. It reads RSS every minute and prints
it beside the runs so far; memory is flat when the sum at the end is within 5 % of the
sum after the first tenth of the runs (what a day adds is what this measures: state that
grows with the runs made). At 5,000 runs/s it takes 48 minutes; `--day-minutes` stops it
sooner on a slower machine, and it says how many hours' worth it made. What depends on
the wall clock, not on runs (hourly rollups, SLO windows), it does not reach. It also
prints the state file's size per stored result, for sizing `state.retention`.

Targets on this machine (issues 3 and 23): engine >= 0.3x the raw client with a fresh
connection per check; p99 lateness <= 250 ms and max <= 1 s at 10,000 checks/min; RSS
<= 150 MB, daemon and workers together; CPU per probe with the default workers <= 1.15x
`workers: 0`; over a day's runs, RSS at the end within 5 % of RSS after the first tenth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import yaml

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from figures import verdict  # noqa: E402


def start_nginx(directory: Path) -> tuple[subprocess.Popen, int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "nginx-light"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    # imported here, in the parent: the child holding the daemon measures its RSS, and the
    # test kit (http.server, ssl) is no part of a daemon
    from watchkeeper.engine.testing import free_port

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
        listen 127.0.0.1:{port} backlog=4096;
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


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def nginx_processes(pid: int) -> list[psutil.Process]:
    main = psutil.Process(pid)
    return [main, *main.children(recursive=True)]


async def raw_client(port: int, seconds: float, concurrency: int = 64) -> int:
    """Requests done by a bare asyncio client in `seconds`: a fresh connection per request,
    like the probe."""
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

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def measure_raw(port: int, nginx_pid: int, seconds: float) -> dict:
    nginx = nginx_processes(nginx_pid)
    cpu0, ng0, t0 = time.process_time(), cpu_seconds(nginx), time.perf_counter()
    done = asyncio.run(raw_client(port, seconds))
    took = time.perf_counter() - t0
    return {
        "rate": done / took,
        "cpu_ms": 1000 * (time.process_time() - cpu0) / done,
        "nginx_ms": 1000 * (cpu_seconds(nginx) - ng0) / done,
    }


def write_config(
    directory: Path,
    checks: dict,
    workers: str,
    *,
    defaults: bool = False,
    concurrency: int | None = None,
) -> Path:
    """The bench's config; with `defaults`, as a user would start it (the HTTP server on,
    the default concurrency unless `concurrency` is given), for the memory a default
    daemon takes."""
    from watchkeeper.engine.testing import free_port

    engine = {"workers": workers if workers == "auto" else int(workers)}
    if not defaults or concurrency:
        engine["concurrency"] = concurrency or 512
    config = {
        "version": 1,
        "engine": engine,
        "server": {"listen": f"127.0.0.1:{free_port()}"} if defaults else {"enabled": False},
        "state": {"type": "sqlite", "path": str(directory / "state.db")},
        "checks": checks,
        "notifiers": {"console": {"type": "log"}},
        "routes": [{"match": {}, "notify": ["console"]}],
    }
    path = directory / "monitor.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def http_checks(port: int, count: int, every: str) -> dict:
    return {
        f"http-{i}": {
            "probe": "http",
            "url": f"http://127.0.0.1:{port}/h{i}",
            "schedule": {"every": every},
            "timeout": "5s",
        }
        for i in range(count)
    }


def run_child(mode: str, config: Path, seconds: float, warmup: float, nginx_pid: int) -> dict:
    """Run the engine part in a fresh process; return what it measured."""
    done = subprocess.run(
        [
            sys.executable,
            str(HERE),
            "--child",
            mode,
            "--config",
            str(config),
            "--seconds",
            str(seconds),
            "--warmup",
            str(warmup),
            "--nginx-pid",
            str(nginx_pid),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + warmup + 300,
    )
    if done.returncode != 0:
        raise SystemExit(f"engine run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the child: the daemon in this process --------------------------------------------------


def rss_mb() -> tuple[float, float]:
    me = psutil.Process()
    own = me.memory_info().rss
    total = own
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return own / 1e6, total / 1e6


def count_results(daemon) -> dict[str, int]:
    """Counts of the daemon's results (`n`) and failed ones, kept as they come."""
    counted = {"n": 0, "failed": 0}

    def count(instance, result, at) -> None:
        counted["n"] += 1
        if not result.ok:
            counted["failed"] += 1

    daemon.runtime.result_handlers.append(count)
    return counted


async def child(mode: str, config: Path, seconds: float, warmup: float, nginx_pid: int) -> dict:
    import anyio

    from watchkeeper.engine.daemon import load_daemon

    daemon = load_daemon(config)
    counted = count_results(daemon)
    me = psutil.Process()
    nginx = nginx_processes(nginx_pid)
    peak = [0.0, 0.0]

    sampling = anyio.CancelScope()

    async def sample_rss() -> None:
        with sampling:
            while True:
                own, total = rss_mb()
                peak[0], peak[1] = max(peak[0], own), max(peak[1], total)
                await anyio.sleep(1.0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.serve)
        await daemon.ready.wait()
        await anyio.sleep(warmup)
        lateness = daemon.scheduler.lateness
        lateness.samples.clear()
        lateness.worst = 0.0
        lateness.count = 0
        for job in daemon.scheduler.jobs.values():
            job.skipped = 0
        tg.start_soon(sample_rss)
        workers = [c for c in me.children(recursive=True)]
        n0, f0 = counted["n"], counted["failed"]
        cpu0 = (cpu_seconds([me]), cpu_seconds(workers), cpu_seconds(nginx))
        t0 = time.perf_counter()
        await anyio.sleep(seconds)
        took = time.perf_counter() - t0
        runs = counted["n"] - n0
        cpu1 = (cpu_seconds([me]), cpu_seconds(workers), cpu_seconds(nginx))
        own, total = rss_mb()
        figures = {
            "rate": runs / took,
            "runs": runs,
            "failed": counted["failed"] - f0,
            "cpu_main_ms": 1000 * (cpu1[0] - cpu0[0]) / max(runs, 1),
            "cpu_workers_ms": 1000 * (cpu1[1] - cpu0[1]) / max(runs, 1),
            "nginx_ms": 1000 * (cpu1[2] - cpu0[2]) / max(runs, 1),
            "rss_main": own,
            "rss_total": total,
            "rss_main_peak": max(peak[0], own),
            "rss_total_peak": max(peak[1], total),
            "p50": lateness.quantile(0.5),
            "p99": lateness.quantile(0.99),
            "max": lateness.worst,
            "late_samples": lateness.count,
            "skipped": sum(j.skipped for j in daemon.scheduler.jobs.values()),
            "workers": getattr(daemon.executor, "count", 0),
            "replaced": getattr(daemon.executor, "replaced", 0),
        }
        sampling.cancel()
        daemon.stop()
    return figures


async def day_child(config: Path, runs_wanted: int, minutes: float) -> None:
    """Run until `runs_wanted` runs are done or `minutes` have passed, printing one JSON
    line of RSS a minute."""
    import anyio

    from watchkeeper.engine.daemon import load_daemon

    daemon = load_daemon(config)
    counted = count_results(daemon)

    def sample(t0: float, *, last: bool = False) -> None:
        own, total = rss_mb()
        line = {
            "last": last,
            "minute": round((time.perf_counter() - t0) / 60, 2),
            "runs": counted["n"],
            "failed": counted["failed"],
            "rss_main": own,
            "rss_total": total,
        }
        print(json.dumps(line), flush=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.serve)
        await daemon.ready.wait()
        t0 = time.perf_counter()
        sample(t0)
        next_sample, deadline = t0 + 60, t0 + 60 * minutes
        while counted["n"] < runs_wanted and time.perf_counter() < deadline:
            await anyio.sleep(1.0)
            if time.perf_counter() >= next_sample:
                sample(t0)
                next_sample += 60
        # the last line first: the parent stops scraping before the server goes
        sample(t0, last=True)
        daemon.stop()


def stored_results(folder: Path) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{folder / 'state.db'}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT rows FROM streams WHERE stream = 'results'").fetchone()
    return count


def day(args: argparse.Namespace, tmp: Path, port: int, nginx_pid: int) -> None:
    checks = args.day_checks
    runs = args.day_runs or checks * 1440
    print(
        f"\n== a day's runs: {checks} http checks every 1s until {runs:,} runs (a day at "
        f"{checks} checks every 60s), default settings (HTTP server on, workers "
        f"{args.workers}), concurrency 512; load average {load()}"
    )
    folder = tmp / "day"
    folder.mkdir()
    path = write_config(
        folder, http_checks(port, checks, "1s"), args.workers, defaults=True, concurrency=512
    )
    listen = yaml.safe_load(path.read_text())["server"]["listen"]
    scrapes = {"n": 0, "failed": 0, "bytes": 0}
    stop = threading.Event()
    interval = [1.0]  # until the first minute's rate sets it

    def scrape() -> None:
        while not stop.wait(interval[0]):
            try:
                with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as answer:
                    scrapes["bytes"] = len(answer.read())
                scrapes["n"] += 1
            except OSError as error:
                scrapes["failed"] += 1
                scrapes["error"] = str(error)

    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE),
            "--child",
            "day",
            "--config",
            str(path),
            "--day-runs",
            str(runs),
            "--day-minutes",
            str(args.day_minutes),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    scraper = threading.Thread(target=scrape, daemon=True)
    samples: list[dict] = []
    try:
        assert proc.stdout is not None
        print("  minute        runs   failed   daemon MB   workers MB   total MB   load")
        for raw in proc.stdout:
            sample = json.loads(raw)
            samples.append(sample)
            if len(samples) == 2 and sample["runs"]:
                # a Prometheus scraping every 15 s scrapes 5,760 times a day: the runs come
                # rate / (checks / 60) times faster than a day's, and so do the scrapes
                rate = sample["runs"] / (sample["minute"] * 60)
                interval[0] = max(0.2, 15.0 * (checks / 60) / rate)
            if len(samples) == 1:
                scraper.start()
            if sample["last"]:
                stop.set()
            print(
                f"  {sample['minute']:6.1f} {sample['runs']:11,} {sample['failed']:8} "
                f"{sample['rss_main']:11.1f} {sample['rss_total'] - sample['rss_main']:12.1f} "
                f"{sample['rss_total']:10.1f}   {load()}",
                flush=True,
            )
    finally:
        stop.set()
        proc.wait()
    if proc.returncode != 0 or len(samples) < 2:
        raise SystemExit(f"the day's run failed (exit {proc.returncode})")
    stored = stored_results(folder)
    last = samples[-1]
    # the first sample past a tenth of the runs made: start-up and the first passes are done
    settled = next(s for s in samples[1:] if s["runs"] >= last["runs"] / 10)
    growth = last["rss_total"] / settled["rss_total"] - 1
    minutes = last["minute"]
    print(
        f"{last['runs']:,} runs in {minutes:.1f} min ({last['runs'] / (minutes * 60):.0f}/s, "
        f"{last['failed']} failed); /metrics scraped {scrapes['n']} times "
        f"({scrapes['bytes'] / 1e6:.1f} MB each, {scrapes['failed']} failed"
        + (f": {scrapes['error']}" if scrapes["failed"] else "")
        + ")"
    )
    verdict(
        "RSS over a day's runs, daemon and workers together",
        f"{settled['rss_total']:.1f} MB at {settled['runs']:,} runs -> "
        f"{last['rss_total']:.1f} MB at {last['runs']:,} ({growth:+.1%}; daemon "
        f"{settled['rss_main']:.1f} -> {last['rss_main']:.1f}, workers "
        f"{settled['rss_total'] - settled['rss_main']:.1f} -> "
        f"{last['rss_total'] - last['rss_main']:.1f})",
        "<= +5 %",
        growth <= 0.05,
    )
    # the trend over the second half, for what the runs not made would add
    half = [s for s in samples if s["runs"] >= last["runs"] / 2]
    if len(half) >= 3:
        slope = statistics.linear_regression(
            [s["runs"] / 1e6 for s in half], [s["rss_total"] for s in half]
        ).slope
        print(
            f"trend over the second half: {slope:+.3f} MB per million runs "
            f"({slope * runs / 1e6:+.1f} MB over a whole day's {runs:,})"
        )
    size = sum(f.stat().st_size for f in folder.glob("state.db*"))
    print(
        f"state.db: {size / 1e9:.2f} GB for {stored:,} stored results = {size / stored:.0f} "
        f"bytes a result (at {checks} checks a minute: {size / stored * checks * 1440 / 1e9:.1f}"
        f" GB a day of `state.retention`)"
    )
    if last["runs"] < runs:
        print(
            f"NOTE: stopped after {minutes:.0f} minutes with {last['runs']:,} of {runs:,} runs "
            f"made: {24 * last['runs'] / runs:.1f} hours' worth at {checks} checks a minute"
        )


# -- the report -----------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt: str) -> str:
    return "[" + " ".join(format(v, fmt) for v in values) + "]"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def throughput(args: argparse.Namespace, tmp: Path, port: int, nginx_pid: int) -> None:
    print(
        f"\n== throughput: {args.checks} http checks every 1s (more than the engine can run: "
        f"it runs flat out), workers: {args.workers}, {args.repeat} repeat(s) of "
        f"{args.seconds:.0f}s; load average {load()}"
    )
    raws, engines = [], []
    for index in range(args.repeat):
        raw = measure_raw(port, nginx_pid, min(10.0, args.seconds))
        folder = tmp / f"t{index}"
        folder.mkdir()
        path = write_config(folder, http_checks(port, args.checks, "1s"), args.workers)
        engine = run_child("throughput", path, args.seconds, 5.0, nginx_pid)
        raws.append(raw)
        engines.append(engine)
        print(
            f"  run {index + 1}: raw {raw['rate']:6.0f}/s   engine {engine['rate']:6.0f}/s   "
            f"ratio {engine['rate'] / raw['rate']:.2f}x   CPU/check: daemon "
            f"{engine['cpu_main_ms']:.3f} ms + workers {engine['cpu_workers_ms']:.3f} ms "
            f"(raw client {raw['cpu_ms']:.3f} ms)   failed {engine['failed']}, workers replaced "
            f"{engine['replaced']}   "
            f"load {load()}"
        )
    ratios = [e["rate"] / r["rate"] for e, r in zip(engines, raws, strict=True)]
    raw_cpu = median([r["cpu_ms"] for r in raws])
    engine_cpu = median([e["cpu_main_ms"] + e["cpu_workers_ms"] for e in engines])
    workers = engines[0]["workers"]
    print(
        f"raw asyncio client:   {median([r['rate'] for r in raws]):8.0f} req/s (median; "
        f"fresh connection each, 64 at once; {raw_cpu:.3f} ms CPU per request, nginx "
        f"{median([r['nginx_ms'] for r in raws]):.3f} ms)"
    )
    print(
        f"engine (http checks): {median([e['rate'] for e in engines]):8.0f} checks/s through "
        f"the whole engine (median; {workers} worker process(es); CPU per check: daemon "
        f"{median([e['cpu_main_ms'] for e in engines]):.3f} ms + workers "
        f"{median([e['cpu_workers_ms'] for e in engines]):.3f} ms = {engine_cpu:.3f} ms, "
        f"nginx {median([e['nginx_ms'] for e in engines]):.3f} ms; "
        f"{sum(e['failed'] for e in engines)} failed)"
    )
    ratio = median(ratios)
    if median([e["rate"] for e in engines]) >= 0.95 * args.checks:
        print(
            f"NOTE: the engine kept up with all {args.checks} checks/s: it did not run flat "
            "out, so the ratio understates it; raise --checks"
        )
    verdict(
        "throughput, engine / raw client",
        f"{ratio:.2f}x (per run {spread(ratios, '.2f')})",
        ">= 0.30x",
        ratio >= 0.3,
    )
    print(
        f"CPU per check:        engine {engine_cpu:.3f} ms vs raw client {raw_cpu:.3f} ms "
        f"= {raw_cpu / engine_cpu:.2f}x the raw client's efficiency (the engine spreads its "
        f"CPU over {1 + workers} processes; the raw client is one)"
    )
    print(
        f"RSS at {args.checks} checks: daemon {median([e['rss_main'] for e in engines]):.0f} "
        f"MB, with workers {median([e['rss_total'] for e in engines]):.0f} MB"
    )


def lateness(args: argparse.Namespace, tmp: Path, port: int, nginx_pid: int) -> None:
    print(
        f"\n== lateness and RSS: {args.lateness_checks} http checks every 60s "
        f"({args.lateness_checks / 60:.0f} runs/s), default settings (HTTP server on), "
        f"workers: {args.workers}, "
        f"{args.lateness_seconds:.0f}s after a 10s warm-up; load average {load()}"
    )
    folder = tmp / "late"
    folder.mkdir()
    path = write_config(
        folder, http_checks(port, args.lateness_checks, "60s"), args.workers, defaults=True
    )
    late = run_child("lateness", path, args.lateness_seconds, 10.0, nginx_pid)
    print(
        f"lateness over {late['late_samples']} runs: p50 {late['p50'] * 1000:.1f} ms "
        f"({late['skipped']} skipped, {late['failed']} failed, {late['replaced']} workers "
        "replaced)"
    )
    verdict(
        f"lateness at {args.lateness_checks} checks/min",
        f"p99 {late['p99'] * 1000:.1f} ms, max {late['max'] * 1000:.1f} ms",
        "p99 <= 250 ms, max <= 1000 ms",
        late["p99"] <= 0.25 and late["max"] <= 1.0,
    )
    print(
        f"CPU per check at this rate: daemon {late['cpu_main_ms']:.3f} ms + workers "
        f"{late['cpu_workers_ms']:.3f} ms ({late['rate']:.0f} runs/s)"
    )
    print(
        f"RSS at {args.lateness_checks} checks: daemon {late['rss_main']:.0f} MB (peak "
        f"{late['rss_main_peak']:.0f}), its {late['workers']} worker(s) "
        f"{late['rss_total'] - late['rss_main']:.0f} MB"
    )
    verdict(
        f"RSS at {args.lateness_checks} http checks, daemon and workers together",
        f"{late['rss_total_peak']:.0f} MB (peak over {args.lateness_seconds:.0f} s; "
        f"{late['rss_total']:.0f} MB at the end)",
        "<= 150 MB",
        late["rss_total_peak"] <= 150,
    )
    print(f"load average after: {load()}")


def isolation(args: argparse.Namespace, tmp: Path, port: int, nginx_pid: int) -> None:
    """CPU per probe with the default workers against `workers: 0`, steady and flat out."""
    shapes = [
        ("steady", args.steady_checks, "60s", 15.0),
        ("flat out", args.checks, "1s", 5.0),
    ]
    if args.shape != "both":
        shapes = [s for s in shapes if s[0].replace(" ", "-") == args.shape]
    for shape, count, every, warmup in shapes:
        print(
            f"\n== isolation, {shape}: {count} http checks every {every}, workers auto vs 0, "
            f"{args.repeat} repeat(s) of {args.seconds:.0f}s; load average {load()}"
        )
        figures: dict[str, list[float]] = {"auto": [], "0": []}
        for index in range(args.repeat):
            for workers in ("auto", "0"):
                folder = tmp / f"i-{shape.replace(' ', '')}-{workers}-{index}"
                folder.mkdir()
                path = write_config(folder, http_checks(port, count, every), workers)
                engine = run_child("throughput", path, args.seconds, warmup, nginx_pid)
                cpu = engine["cpu_main_ms"] + engine["cpu_workers_ms"]
                figures[workers].append(cpu)
                print(
                    f"  run {index + 1}, workers {workers:>4}: {engine['rate']:6.0f} runs/s, "
                    f"CPU per probe {cpu:.3f} ms (daemon {engine['cpu_main_ms']:.3f} + workers "
                    f"{engine['cpu_workers_ms']:.3f}), {engine['failed']} failed, "
                    f"RSS {engine['rss_total']:.0f} MB; load {load()}"
                )
        default, alone = median(figures["auto"]), median(figures["0"])
        ratio = default / alone
        verdict(
            f"CPU per probe {shape} ({count} checks every {every}), default workers vs 0",
            f"{default:.3f} vs {alone:.3f} ms = {ratio:.2f}x (per run default "
            f"{spread(figures['auto'], '.3f')}, 0 {spread(figures['0'], '.3f')})",
            "<= 1.15x",
            ratio <= 1.15,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=6000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lateness-checks", type=int, default=10_000)
    parser.add_argument("--lateness-seconds", type=float, default=150)
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-lateness", action="store_true")
    parser.add_argument(
        "--isolation",
        action="store_true",
        help="only CPU per probe, default workers vs workers: 0, steady and flat out",
    )
    parser.add_argument("--steady-checks", type=int, default=4000)
    parser.add_argument(
        "--day",
        action="store_true",
        help="only RSS over a day's runs of --day-checks checks a minute, made flat out",
    )
    parser.add_argument("--day-checks", type=int, default=10_000)
    parser.add_argument(
        "--day-runs", type=int, help="runs to make (default: a day's, --day-checks x 1440)"
    )
    parser.add_argument(
        "--day-minutes",
        type=float,
        default=float("inf"),
        help="stop after this many minutes even if the day's runs are not all made",
    )
    parser.add_argument(
        "--shape",
        choices=["both", "steady", "flat-out"],
        default="both",
        help="with --isolation: measure only the steady rate, or only flat out",
    )
    # the engine's own process (internal)
    parser.add_argument(
        "--child", choices=["throughput", "lateness", "day"], help=argparse.SUPPRESS
    )
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=5.0, help=argparse.SUPPRESS)
    parser.add_argument("--nginx-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import logging

    logging.getLogger("watchkeeper").setLevel(logging.ERROR)
    if args.child == "day":
        import anyio

        anyio.run(day_child, args.config, args.day_runs or 0, args.day_minutes)
        return
    if args.child:
        import anyio

        figures = anyio.run(
            child, args.child, args.config, args.seconds, args.warmup, args.nginx_pid
        )
        print(json.dumps(figures))
        return
    print(f"{os.cpu_count()} CPUs; load average {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        nginx, port = start_nginx(tmpdir)
        try:
            if args.isolation:
                isolation(args, tmpdir, port, nginx.pid)
                return
            if args.day:
                day(args, tmpdir, port, nginx.pid)
                return
            if not args.skip_throughput:
                throughput(args, tmpdir, port, nginx.pid)
            if not args.skip_lateness:
                lateness(args, tmpdir, port, nginx.pid)
        finally:
            nginx.terminate()
            nginx.wait(10)


if __name__ == "__main__":
    sys.exit(main())
