"""Start-up time: `--version`, `validate` of small files and of 10,000 checks, and the daemon
ready at 10,000 http checks.

    python bench/startup.py [--repeats N] [--checks N]

Each command runs as a user runs it: the installed `watchkeeper` script in a fresh
process. Every figure is the median over the repeats of the wall time, with the median
CPU time (user + system of the process and the processes it waited for) beside it: on a
busy host the CPU time moves less. The daemon figure is the time from starting
`watchkeeper run` to its first `200` from `GET /ready`, on a config of http checks with
default settings and the SQLite store, first on an empty store, then started again on
the store the first run left.

The package is byte-compiled first, as installing it does (see bench/validate_10k.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from figures import machine, verdict  # noqa: E402
from validate_10k import byte_compile, generate  # noqa: E402

VERSION_TARGET = 0.1
SMALL_TARGET = 0.2
LARGE_TARGET = 1.5  # bench/validate_10k.py's target
READY_TARGET = 1.0

FIVE_CHECKS = """\
version: 1
checks:
  web:
    probe: http
    url: https://example.com/health
    expect: {status: 200}
  api:
    probe: http
    url: https://api.example.com/ping
    schedule: {every: 30s}
  db:
    probe: tcp
    host: db.internal
    port: 5432
  resolver:
    probe: dns
    name: example.com
  nightly:
    probe: heartbeat
    expect_every: {cron: "0 3 * * *"}
notifiers:
  console: {type: log}
routes:
  - match: {}
    notify: [console]
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], repeats: int) -> tuple[float, float]:
    """Run a command `repeats` times; return the median wall and CPU seconds."""
    walls, cpus = [], []
    for _ in range(repeats):
        used = _children_cpu()
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - used)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return statistics.median(walls), statistics.median(cpus)


def seconds(wall: float, cpu: float) -> str:
    return f"{wall:.3f} s (CPU {cpu:.3f} s)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def daemon_config(directory: Path, checks: int, port: int) -> Path:
    """http checks with default settings, against a loopback port nothing listens on
    (each run fails at once: the target's speed does not enter the figure)."""
    lines = [
        "version: 1",
        f"server: {{listen: '127.0.0.1:{port}'}}",
        f"state: {{type: sqlite, path: '{directory / 'state.db'}'}}",
        "notifiers:",
        "  console: {type: log}",
        "routes:",
        "  - {match: {}, notify: [console]}",
        "checks:",
    ]
    for i in range(checks):
        lines += [f"  http-{i}:", "    probe: http", f"    url: http://127.0.0.1:9/h{i}"]
    path = directory / "daemon.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def tree_cpu(process: psutil.Process) -> float:
    """CPU seconds of a process, the children it has waited for and those still running."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
        if proc is process:
            total += times.children_user + times.children_system
    return total


def ready_once(exe: Path, config: Path, port: int, log: Path) -> tuple[float, float]:
    """Start the daemon, wait for `GET /ready` to answer 200; return wall and CPU seconds."""
    url = f"http://127.0.0.1:{port}/ready"
    with log.open("w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(exe), "-c", str(config), "run"], stdout=subprocess.DEVNULL, stderr=err
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=2) as answer:
                        if answer.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if proc.poll() is not None:
                    sys.exit(f"the daemon exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
                time.sleep(0.005)
            wall = time.perf_counter() - start
            cpu = tree_cpu(psutil.Process(proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--daemon-repeats", type=int, default=5)
    parser.add_argument("--checks", type=int, default=10_000)
    args = parser.parse_args()
    exe = Path(sys.executable).with_name("watchkeeper")
    repo = HERE.parent
    print(f"machine: {machine()}")
    print(f"package: {byte_compile()}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        five = tmp / "five.yaml"
        five.write_text(FIVE_CHECKS)
        large = tmp / "large.yaml"
        large.write_text(generate(args.checks))

        wall, cpu = timed([str(exe), "--version"], args.repeats)
        verdict("watchkeeper --version", seconds(wall, cpu), f"<= {VERSION_TARGET} s",
                wall <= VERSION_TARGET)  # fmt: skip
        for name, path in (("monitor.yaml", repo / "monitor.yaml"), ("5 checks", five)):
            wall, cpu = timed([str(exe), "-c", str(path), "validate"], args.repeats)
            verdict(f"validate {name}", seconds(wall, cpu), f"<= {SMALL_TARGET} s",
                    wall <= SMALL_TARGET)  # fmt: skip
        wall, cpu = timed([str(exe), "-c", str(large), "validate"], max(3, args.repeats // 2))
        verdict(f"validate {args.checks:,} checks", seconds(wall, cpu), f"<= {LARGE_TARGET} s",
                wall <= LARGE_TARGET)  # fmt: skip

        port = free_port()
        config = daemon_config(tmp, args.checks, port)
        log = tmp / "daemon.log"
        first: list[tuple[float, float]] = []
        again: list[tuple[float, float]] = []
        for _ in range(args.daemon_repeats):
            for leftover in tmp.glob("state.db*"):
                leftover.unlink()
            first.append(ready_once(exe, config, port, log))
            again.append(ready_once(exe, config, port, log))
        for what, runs in (("empty store", first), ("restarted", again)):
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            verdict(f"daemon ready, {args.checks:,} http checks, {what}", seconds(wall, cpu),
                    f"<= {READY_TARGET} s", wall <= READY_TARGET)  # fmt: skip
    print(f"after: {machine()}")


if __name__ == "__main__":
    os.environ.pop("WATCHKEEPER_CONFIG", None)
    main()
