"""Watchkeeper beside Prometheus + blackbox_exporter on the same http targets:

    python bench/peers.py [--targets 2000] [--window 80] [--rounds 2] [--warmup 25]
                          [--incident-targets 20] [--group-wait 0s]

Both sides probe the same N targets (`http://127.0.0.1:<nginx>/t/<i>`, every 15 s) on a
local nginx (bench/engine.py's, installed from Debian packages when missing). The sides
take turns, each in a window of its own (watchkeeper, Prometheus, watchkeeper,
Prometheus, ...), so whatever else the machine does hits both; each window starts its
side fresh, waits `--warmup` seconds (the first pass), then measures for `--window`
seconds and stops it. With the defaults the whole run takes about 7 minutes.

- watchkeeper: `watchkeeper run` as a child process on a generated monitor.yaml with
  default settings (SQLite state, the default worker), one webhook notifier, one route.
- the peer: prometheus, prometheus-blackbox-exporter and prometheus-alertmanager (Debian
  packages; installed with apt-get when this user is root, otherwise that side is
  skipped with a message). Scrape and evaluation interval 15 s, the `http_2xx` module,
  one rule `probe_success == 0` with `for: 0s`, Alertmanager routing each target in a
  group of its own (`group_by: [instance]`) to a webhook. Without Alertmanager the
  notice is the alert's `firing` state on Prometheus's /api/v1/alerts.

Figures, per window and as medians over the windows of each side:

- CPU per probe: user + system CPU time of every process of the side (watchkeeper: the
  daemon and its workers; the peer: prometheus, blackbox_exporter, alertmanager) over
  the window, divided by the probes done in it (watchkeeper: runs started, from its
  /metrics; the peer: scrapes of the probe job, Prometheus's
  `prometheus_target_interval_length_seconds_count`). nginx's share is shown apart.
- RSS: the sum over the side's processes, the highest seen in the window (sampled every
  2 s). Prometheus's head block grows for its first two hours, so its RSS here is below
  its long-run level.
- failing -> notice: `--incident-targets` targets start answering 500 at once (a file
  per path that nginx looks for); the time from then to the webhook POST that reports
  each of them firing. When all were noticed they serve again and the next ones fail,
  while the window has room for the slower side. Both sides route with `group_wait:
  --group-wait` (the default 0s: the monitor's own delay, not a configured wait).
- schedule accuracy while scraped: the bench scrapes each side's own /metrics every
  15 s (watchkeeper's /metrics; Prometheus's and blackbox_exporter's), the way a
  Prometheus would. watchkeeper: how late check runs started (the scheduler's p50/p99
  over its last 20,000 runs, its max, the window's mean). Prometheus: its scrape
  interval quantiles, as deviations from 15 s. The scrapes' answer times and sizes too.

Targets (issue 23): watchkeeper's CPU per probe <= 1.0x the peer's, its RSS <= 1.0x,
its median failing -> notice latency <= the peer's. The load average is printed before
and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figures import machine, verdict

from engine import cpu_seconds, nginx_processes, start_nginx
from watchkeeper.engine.testing import free_port

INTERVAL = 15.0
PEER_PACKAGES = {
    "prometheus": "prometheus",
    "prometheus-blackbox-exporter": "prometheus-blackbox-exporter",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


# -- the targets ------------------------------------------------------------------------------


def serve_targets(directory: Path) -> tuple[subprocess.Popen, int, Path]:
    """bench/engine.py's nginx, plus `/t/<i>` paths that answer 500 while `down/t/<i>` exists."""
    proc, port = start_nginx(directory)[:2]
    down = directory / "down"
    (down / "t").mkdir(parents=True)
    for folder in (directory, down, down / "t"):  # nginx's worker runs as nobody
        folder.chmod(0o755)
    conf = directory / "nginx.conf"
    text = conf.read_text()
    location = (
        f"location /t/ {{ if (-f {down}$uri) {{ return 500; }} "
        'return 200 \'{"status":"ok"}\'; }\n        location / {'
    )
    if "location / {" not in text:
        proc.terminate()
        raise SystemExit("bench/engine.py's nginx.conf has no 'location / {' to add /t/ beside")
    conf.write_text(text.replace("location / {", location, 1))
    proc.send_signal(signal.SIGHUP)  # nginx reloads its configuration
    (down / "t" / "0").touch()
    for _ in range(100):  # the reload is done once /t/0 follows the file
        if http_status(f"http://127.0.0.1:{port}/t/0") == 500:
            break
        time.sleep(0.05)
    else:
        proc.terminate()
        raise SystemExit("nginx did not take the /t/ location")
    (down / "t" / "0").unlink()
    return proc, port, down / "t"


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def fetch(url: str, timeout: float = 30.0) -> tuple[str, float, int]:
    """Body, seconds to the last byte, size."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body = answer.read()
    return body.decode(), time.perf_counter() - started, len(body)


def wait_ready(url: str, what: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} while starting")
        if http_status(url) == 200:
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not answer {url} within {timeout:.0f}s")


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric name in a Prometheus exposition: (labels, value)."""
    found = []
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name) :]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            close = rest.index("}")
            labels = dict(re.findall(r'(\w+)="([^"]*)"', rest[1:close]))
            rest = rest[close + 1 :]
        elif not rest.startswith(" "):
            continue  # a longer name sharing the prefix
        found.append((labels, float(rest.split()[0])))
    return found


def one(text: str, name: str, default: float = float("nan"), **labels: str) -> float:
    for have, value in samples(text, name):
        if all(have.get(k) == v for k, v in labels.items()):
            return value
    return default


# -- the webhook receiver ---------------------------------------------------------------------


class Receiver:
    """Records when the first firing notice for each target index arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first: dict[int, float] = {}
        self.posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                receiver.record(json.loads(body or b"{}"), arrived)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, payload: dict, arrived: float) -> None:
        with self.lock:
            self.posts += 1
            for alert in payload.get("alerts", []):
                if alert.get("status") != "firing":
                    continue
                # watchkeeper names the check (t17); Alertmanager carries the instance URL
                ident = alert.get("check") or alert.get("labels", {}).get("instance", "")
                if match := re.search(r"(\d+)$", ident):
                    self.first.setdefault(int(match.group(1)), arrived)

    def mark(self, index: int, arrived: float) -> None:
        with self.lock:
            self.first.setdefault(index, arrived)

    def reset(self) -> None:
        with self.lock:
            self.first.clear()

    def arrived(self, index: int) -> float | None:
        with self.lock:
            return self.first.get(index)

    def close(self) -> None:
        self.server.shutdown()


# -- the sides ---------------------------------------------------------------------------------


class Side:
    name = ""
    procs: list[subprocess.Popen]

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in self.procs:
            try:
                main = psutil.Process(proc.pid)
                found += [main, *main.children(recursive=True)]
            except psutil.Error:
                pass
        return found

    def rss_mb(self) -> float:
        total = 0
        for p in self.processes():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 1e6

    def rss_by_process(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for p in self.processes():
            try:
                rss = p.memory_info().rss / 1e6
            except psutil.Error:
                continue
            found[self.label(p)] = found.get(self.label(p), 0.0) + rss
        return found

    def cpu_by_process(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for p in self.processes():
            found[self.label(p)] = found.get(self.label(p), 0.0) + cpu_seconds([p])
        return found

    def label(self, p: psutil.Process) -> str:
        return str(p.pid)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs = []


class Watchkeeper(Side):
    name = "watchkeeper"

    def __init__(self, args: argparse.Namespace, urls: list[str], receiver: Receiver) -> None:
        self.args, self.urls, self.receiver = args, urls, receiver
        self.procs = []
        binary = Path(sys.executable).parent / "watchkeeper"
        self.binary = str(binary) if binary.exists() else (shutil.which("watchkeeper") or "")
        if not self.binary:
            raise SystemExit("watchkeeper is not installed (make .venv/.installed-dev)")

    def start(self, folder: Path) -> None:
        self.port = free_port()
        config = {
            "version": 1,
            "server": {"listen": f"127.0.0.1:{self.port}"},
            "state": {"type": "sqlite", "path": str(folder / "state.db")},
            "checks": {
                f"t{i}": {"probe": "http", "url": url, "schedule": {"every": f"{INTERVAL:g}s"}}
                for i, url in enumerate(self.urls)
            },
            "notifiers": {"hook": {"type": "webhook", "url": self.receiver.url}},
            "routes": [{"match": {}, "notify": ["hook"], "group_wait": self.args.group_wait}],
        }
        path = folder / "monitor.yaml"
        path.write_text(yaml.safe_dump(config))
        log = open(folder / "watchkeeper.log", "wb")  # noqa: SIM115 (the child holds it)
        proc = subprocess.Popen(
            [self.binary, "-c", str(path), "run"], stdout=log, stderr=subprocess.STDOUT, cwd=folder
        )
        self.procs = [proc]
        wait_ready(f"http://127.0.0.1:{self.port}/ready", "watchkeeper", proc, timeout=120)

    def label(self, p: psutil.Process) -> str:
        return "daemon" if p.pid == self.procs[0].pid else "workers"

    def scrape(self) -> dict:
        text, took, size = fetch(f"http://127.0.0.1:{self.port}/metrics")
        late = "watchkeeper_scheduler_lateness_seconds"
        return {
            "took": took,
            "bytes": size,
            "probes": one(text, late + "_count"),
            "late_sum": one(text, late + "_sum"),
            "p50": one(text, late, quantile="0.5"),
            "p99": one(text, late, quantile="0.99"),
            "max": one(text, "watchkeeper_scheduler_lateness_max_seconds"),
        }


class Prometheus(Side):
    name = "Prometheus"

    def __init__(self, args: argparse.Namespace, urls: list[str], receiver: Receiver) -> None:
        self.args, self.urls, self.receiver = args, urls, receiver
        self.procs = []
        self.alertmanager = bool(shutil.which("prometheus-alertmanager"))
        self.poller: threading.Thread | None = None
        self.polling = threading.Event()
        self.wanted: set[int] = set()

    def start(self, folder: Path) -> None:
        self.port, self.blackbox_port, self.am_port = free_port(), free_port(), free_port()
        (folder / "blackbox.yml").write_text(
            yaml.safe_dump({"modules": {"http_2xx": {"prober": "http"}}})
        )
        (folder / "rules.yml").write_text(
            yaml.safe_dump(
                {
                    "groups": [
                        {
                            "name": "probes",
                            "rules": [
                                {"alert": "ProbeFailed", "expr": "probe_success == 0", "for": "0s"}
                            ],
                        }
                    ]
                }
            )
        )
        prometheus = {
            "global": {
                "scrape_interval": f"{INTERVAL:g}s",
                "evaluation_interval": f"{INTERVAL:g}s",
            },
            "rule_files": [str(folder / "rules.yml")],
            "scrape_configs": [
                {
                    "job_name": "blackbox",
                    "metrics_path": "/probe",
                    "params": {"module": ["http_2xx"]},
                    "static_configs": [{"targets": self.urls}],
                    "relabel_configs": [
                        {"source_labels": ["__address__"], "target_label": "__param_target"},
                        {"source_labels": ["__param_target"], "target_label": "instance"},
                        {
                            "target_label": "__address__",
                            "replacement": f"127.0.0.1:{self.blackbox_port}",
                        },
                    ],
                }
            ],
        }
        if self.alertmanager:
            prometheus["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.am_port}"]}]}]
            }
            (folder / "alertmanager.yml").write_text(
                yaml.safe_dump(
                    {
                        "route": {
                            "receiver": "hook",
                            "group_by": ["instance"],
                            "group_wait": self.args.group_wait,
                            "group_interval": "5m",
                            "repeat_interval": "4h",
                        },
                        "receivers": [
                            {
                                "name": "hook",
                                "webhook_configs": [
                                    {"url": self.receiver.url, "send_resolved": False}
                                ],
                            }
                        ],
                    }
                )
            )
        (folder / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
        log = open(folder / "peer.log", "wb")  # noqa: SIM115 (the children hold it)
        blackbox = subprocess.Popen(
            [
                "prometheus-blackbox-exporter",
                f"--config.file={folder / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{self.blackbox_port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs = [blackbox]
        wait_ready(f"http://127.0.0.1:{self.blackbox_port}/metrics", "blackbox_exporter", blackbox)
        if self.alertmanager:
            am = subprocess.Popen(
                [
                    "prometheus-alertmanager",
                    f"--config.file={folder / 'alertmanager.yml'}",
                    f"--storage.path={folder / 'alertmanager'}",
                    f"--web.listen-address=127.0.0.1:{self.am_port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.procs.append(am)
            wait_ready(f"http://127.0.0.1:{self.am_port}/-/ready", "alertmanager", am)
        prom = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(prom)
        wait_ready(f"http://127.0.0.1:{self.port}/-/ready", "prometheus", prom)

    def label(self, p: psutil.Process) -> str:
        names = ["blackbox_exporter", "alertmanager", "prometheus"]
        if not self.alertmanager:
            names.remove("alertmanager")
        pids = [proc.pid for proc in self.procs]
        return names[pids.index(p.pid)] if p.pid in pids else "other"

    def scrape(self) -> dict:
        text, took, size = fetch(f"http://127.0.0.1:{self.port}/metrics")
        _, bb_took, bb_size = fetch(f"http://127.0.0.1:{self.blackbox_port}/metrics")
        length = "prometheus_target_interval_length_seconds"
        every = f"{INTERVAL:g}s"
        return {
            "took": took,
            "bytes": size,
            "blackbox_took": bb_took,
            "blackbox_bytes": bb_size,
            # no line before the first target's second scrape: nothing observed yet
            "probes": one(text, length + "_count", 0.0, interval=every),
            "interval_sum": one(text, length + "_sum", 0.0, interval=every),
            "q01": one(text, length, interval=every, quantile="0.01"),
            "q50": one(text, length, interval=every, quantile="0.5"),
            "q99": one(text, length, interval=every, quantile="0.99"),
        }

    def watch_alerts(self, indices: list[int]) -> None:
        """Without Alertmanager: the notice is the alert firing on Prometheus's API."""
        if self.alertmanager:
            return
        self.wanted.update(indices)
        if self.polling.is_set():
            return
        self.polling.set()
        url = f"http://127.0.0.1:{self.port}/api/v1/alerts"

        def poll() -> None:
            while self.polling.is_set():
                try:
                    text, _, _ = fetch(url, 5)
                except OSError:
                    continue
                now = time.perf_counter()
                for alert in json.loads(text)["data"]["alerts"]:
                    match = re.search(r"(\d+)$", alert["labels"].get("instance", ""))
                    if alert["state"] == "firing" and match and int(match.group(1)) in self.wanted:
                        self.receiver.mark(int(match.group(1)), now)
                time.sleep(0.1)

        self.poller = threading.Thread(target=poll, daemon=True)
        self.poller.start()

    def stop(self) -> None:
        self.polling.clear()
        self.wanted.clear()
        super().stop()


def peer_available() -> str | None:
    """None when prometheus and blackbox_exporter are here (installed if root), else why not."""
    missing = [package for binary, package in PEER_PACKAGES.items() if not shutil.which(binary)]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)} (apt-get)", flush=True)
        for package in missing:
            done = subprocess.run(
                ["apt-get", "install", "-y", "-qq", package],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
            if done.returncode != 0:
                print(f"could not install {package} (apt-get exit {done.returncode})")
    lacking = [b for b in ("prometheus", "prometheus-blackbox-exporter") if not shutil.which(b)]
    if lacking:
        return (
            f"{' and '.join(lacking)} not installed (install with: sudo apt-get install -y "
            "prometheus prometheus-blackbox-exporter prometheus-alertmanager)"
        )
    return None


# -- one window -------------------------------------------------------------------------------


def window(
    side: Side, folder: Path, args: argparse.Namespace, nginx_pid: int, down: Path, pool: list[int]
) -> dict:
    """Start the side, warm up, measure one window, stop it. Incidents follow each other:
    `--incident-targets` of `pool` fail at once; when every one of them was noticed they
    serve again, and 3 s later the next ones fail, while enough of the window is left
    for the slower side to notice (two intervals and 10 s)."""
    folder.mkdir()
    receiver: Receiver = side.receiver  # type: ignore[attr-defined]
    receiver.reset()
    chunks = [
        pool[i : i + args.incident_targets] for i in range(0, len(pool), args.incident_targets)
    ]
    incidents: list[tuple[float, list[int]]] = []
    side.start(folder)
    try:
        time.sleep(args.warmup)
        nginx = nginx_processes(nginx_pid)
        first = side.scrape()
        cpu0, ng0 = side.cpu_by_process(), cpu_seconds(nginx)
        t0 = time.perf_counter()
        scrapes = [first]
        peak = side.rss_mb()
        current: list[int] | None = None
        next_incident = t0 + 2.0
        next_scrape, next_rss = t0 + INTERVAL, t0 + 2.0
        while (now := time.perf_counter()) < t0 + args.window:
            room = t0 + args.window - now >= 2 * INTERVAL + 10
            if current is None and now >= next_incident and room and chunks:
                current = chunks.pop(0)
                for index in current:
                    (down / str(index)).touch()
                incidents.append((time.perf_counter(), current))
                if isinstance(side, Prometheus):
                    side.watch_alerts(current)
            if current is not None and all(receiver.arrived(i) is not None for i in current):
                for index in current:
                    (down / str(index)).unlink(missing_ok=True)
                current, next_incident = None, now + 3.0
            if now >= next_scrape:
                scrapes.append(side.scrape())
                next_scrape += INTERVAL
            if now >= next_rss:
                peak = max(peak, side.rss_mb())
                next_rss += 2.0
            time.sleep(0.02)
        last = side.scrape()
        cpu1, ng1 = side.cpu_by_process(), cpu_seconds(nginx)
        took = time.perf_counter() - t0
        scrapes.append(last)
        rss = side.rss_mb()
        rss_parts = side.rss_by_process()
        peak = max(peak, rss)
    finally:
        for index in pool:
            (down / str(index)).unlink(missing_ok=True)
        side.stop()
    probes = last["probes"] - first["probes"]
    cpu = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
    latencies = sorted(
        arrived - failed_at
        for failed_at, targets in incidents
        for i in targets
        if (arrived := receiver.arrived(i)) is not None
    )
    result = {
        "seconds": took,
        "probes": probes,
        "cpu_ms": 1000 * sum(cpu.values()) / max(probes, 1),
        "cpu_parts": {k: 1000 * v / max(probes, 1) for k, v in cpu.items()},
        "nginx_ms": 1000 * (ng1 - ng0) / max(probes, 1),
        "rss": rss,
        "rss_peak": peak,
        "latencies": latencies,
        "missing": sum(len(targets) for _, targets in incidents) - len(latencies),
        "incidents": len(incidents),
        "rss_parts": rss_parts,
        "scrape_took": [s["took"] for s in scrapes],
        "scrape_bytes": last["bytes"],
        "last": last,
    }
    if isinstance(side, Watchkeeper):
        result["late_mean"] = (last["late_sum"] - first["late_sum"]) / max(probes, 1)
        result["max_warmup"] = first["max"]
    else:
        result["interval_mean"] = (last["interval_sum"] - first["interval_sum"]) / max(probes, 1)
        result["blackbox_took"] = [s["blackbox_took"] for s in scrapes]
    return result


# -- the report --------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load() -> str:
    one_, five, fifteen = os.getloadavg()
    return f"{one_:.2f} {five:.2f} {fifteen:.2f}"


def show(side: Side, index: int, r: dict) -> None:
    parts = " + ".join(f"{k} {v:.3f}" for k, v in sorted(r["cpu_parts"].items()))
    memory = " + ".join(f"{k} {v:.0f}" for k, v in sorted(r["rss_parts"].items()))
    lat = r["latencies"]
    notices = (
        f"{r['incidents']} incidents, notices {len(lat)}/{len(lat) + r['missing']} p50 "
        f"{quantile(lat, 0.5):.1f} s "
        f"max {quantile(lat, 1.0):.1f} s"
    )
    last = r["last"]
    if isinstance(side, Watchkeeper):
        accuracy = (
            f"start lateness p50 {last['p50'] * 1000:.1f} ms p99 {last['p99'] * 1000:.1f} ms "
            f"max {last['max'] * 1000:.0f} ms (in the warm-up {r['max_warmup'] * 1000:.0f}) "
            f"mean {r['late_mean'] * 1000:.1f} ms"
        )
    else:
        accuracy = (
            f"scrape interval p01 {last['q01']:.3f} s p50 {last['q50']:.3f} s "
            f"p99 {last['q99']:.3f} s"
        )
    print(
        f"  round {index} {side.name}: {r['probes']:.0f} probes in {r['seconds']:.0f} s; CPU "
        f"{r['cpu_ms']:.3f} ms/probe ({parts}); nginx {r['nginx_ms']:.3f} ms; RSS "
        f"{r['rss']:.0f} MB ({memory}; peak {r['rss_peak']:.0f}); {notices}; {accuracy}; /metrics "
        f"{median(r['scrape_took']) * 1000:.0f} ms, {r['scrape_bytes'] / 1e3:.0f} kB; "
        f"load {load()}",
        flush=True,
    )


def report(args: argparse.Namespace, runs: dict[str, list[dict]]) -> None:
    wk, peer = runs["watchkeeper"], runs.get("Prometheus", [])
    print(f"\n== medians over {len(wk)} window(s) a side")
    figures = {}
    for name, rs in runs.items():
        if not rs:
            continue
        lat = [x for r in rs for x in r["latencies"]]
        figures[name] = {
            "cpu": median([r["cpu_ms"] for r in rs]),
            "cpu_runs": [r["cpu_ms"] for r in rs],
            "rss": median([r["rss_peak"] for r in rs]),
            "lat": lat,
            "missing": sum(r["missing"] for r in rs),
            "nginx": median([r["nginx_ms"] for r in rs]),
        }
    w = figures["watchkeeper"]
    if not peer:
        print(
            f"watchkeeper: CPU per probe {w['cpu']:.3f} ms; RSS {w['rss']:.0f} MB; failing -> "
            f"notice p50 {quantile(w['lat'], 0.5):.1f} s (no peer to compare with)"
        )
    else:
        p = figures["Prometheus"]
        ratio = w["cpu"] / p["cpu"]
        peers = " + ".join(sorted(runs["Prometheus"][0]["cpu_parts"]))
        verdict(
            f"CPU per probe, watchkeeper / {peers}",
            f"{w['cpu']:.3f} ms vs {p['cpu']:.3f} ms = {ratio:.2f}x (per window "
            f"{' '.join(f'{x:.3f}' for x in w['cpu_runs'])} vs "
            f"{' '.join(f'{x:.3f}' for x in p['cpu_runs'])} ms)",
            "<= 1.00x",
            ratio <= 1.0,
        )
        ratio = w["rss"] / p["rss"]
        verdict(
            f"RSS at {args.targets} targets (all processes of a side)",
            f"{w['rss']:.0f} MB vs {p['rss']:.0f} MB = {ratio:.2f}x",
            "<= 1.00x",
            ratio <= 1.0,
        )
        w50, p50 = quantile(w["lat"], 0.5), quantile(p["lat"], 0.5)
        verdict(
            f"failing -> notice, median of {len(w['lat'])} / {len(p['lat'])} targets "
            f"(group_wait {args.group_wait})",
            f"watchkeeper {w50:.1f} s vs {p50:.1f} s = {w50 / p50:.2f}x (p90 "
            f"{quantile(w['lat'], 0.9):.1f} vs {quantile(p['lat'], 0.9):.1f} s; max "
            f"{quantile(w['lat'], 1.0):.1f} vs {quantile(p['lat'], 1.0):.1f} s; "
            f"no notice within the window: {w['missing']} vs {p['missing']})",
            "<= the peer's",
            w50 <= p50 and w["missing"] == 0,
        )
        print(
            f"nginx CPU per probe: watchkeeper's {w['nginx']:.3f} ms, blackbox_exporter's "
            f"{p['nginx']:.3f} ms"
        )
    wl = [r["last"] for r in wk]
    print(
        "schedule while scraped every 15 s, watchkeeper: runs started late p50 "
        f"{median([x['p50'] for x in wl]) * 1000:.1f} ms, p99 "
        f"{median([x['p99'] for x in wl]) * 1000:.1f} ms, max "
        f"{max(x['max'] for x in wl) * 1000:.0f} ms (worst window), mean "
        f"{median([r['late_mean'] for r in wk]) * 1000:.1f} ms; /metrics "
        f"answered in {median([t for r in wk for t in r['scrape_took']]) * 1000:.0f} ms median, "
        f"{max(t for r in wk for t in r['scrape_took']) * 1000:.0f} ms max, "
        f"{median([r['scrape_bytes'] for r in wk]) / 1e3:.0f} kB"
    )
    if peer:
        pl = [r["last"] for r in peer]
        q01, q99 = median([x["q01"] for x in pl]), median([x["q99"] for x in pl])
        print(
            "schedule while scraped every 15 s, Prometheus: scrape interval p01 "
            f"{(q01 - INTERVAL) * 1000:+.1f} ms, p50 "
            f"{(median([x['q50'] for x in pl]) - INTERVAL) * 1000:+.1f} ms, p99 "
            f"{(q99 - INTERVAL) * 1000:+.1f} ms off 15 s; its /metrics answered in "
            f"{median([t for r in peer for t in r['scrape_took']]) * 1000:.0f} ms, "
            f"{median([r['scrape_bytes'] for r in peer]) / 1e3:.0f} kB (blackbox_exporter's "
            f"{median([t for r in peer for t in r['blackbox_took']]) * 1000:.0f} ms)"
        )
        w99 = median([x["p99"] for x in wl])
        p99 = max(abs(q99 - INTERVAL), abs(q01 - INTERVAL))
        print(
            f"schedule p99 off its time: watchkeeper {w99 * 1000:.1f} ms vs Prometheus "
            f"{p99 * 1000:.1f} ms = {w99 / p99 if p99 else float('inf'):.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--window", type=float, default=80, help="measured seconds a window")
    parser.add_argument("--rounds", type=int, default=2, help="windows a side")
    parser.add_argument("--warmup", type=float, default=25, help="seconds before measuring")
    parser.add_argument("--incident-targets", type=int, default=20)
    parser.add_argument("--group-wait", default="0s")
    args = parser.parse_args()
    print(f"{machine()}; {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    skip = peer_available()
    if skip:
        print(f"SKIPPED the Prometheus + blackbox_exporter side: {skip}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        nginx, port, down = serve_targets(tmpdir)
        receiver = Receiver()
        urls = [f"http://127.0.0.1:{port}/t/{i}" for i in range(args.targets)]
        sides: list[Side] = [Watchkeeper(args, urls, receiver)]
        if not skip:
            peer = Prometheus(args, urls, receiver)
            sides.append(peer)
            if not peer.alertmanager:
                print(
                    "prometheus-alertmanager is not installed: the peer's notice is the alert "
                    "firing on Prometheus's /api/v1/alerts (no delivery)"
                )
        print(
            f"\n== {args.targets} http targets every {INTERVAL:g}s on nginx; {args.rounds} "
            f"round(s) of {' then '.join(s.name for s in sides)}, each a fresh start, "
            f"{args.warmup:g} s warm-up, {args.window:g} s measured; "
            f"{args.incident_targets} targets fail at a time, one incident after another",
            flush=True,
        )
        runs: dict[str, list[dict]] = {s.name: [] for s in sides}
        rng = random.Random(23)
        try:
            for index in range(1, args.rounds + 1):
                for side in sides:
                    pool = rng.sample(
                        range(1, args.targets), min(args.targets - 1, 8 * args.incident_targets)
                    )
                    folder = tmpdir / f"{side.name}-{index}"
                    result = window(side, folder, args, nginx.pid, down, pool)
                    runs[side.name].append(result)
                    show(side, index, result)
            report(args, runs)
        finally:
            for side in sides:
                side.stop()
            receiver.close()
            nginx.terminate()
            nginx.wait(10)
    print(f"load average after: {load()}")


if __name__ == "__main__":
    sys.exit(main())
