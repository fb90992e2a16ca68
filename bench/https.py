"""Measure https:// checks: the engine beside a raw asyncio + ssl client in the same run.

    python bench/https.py [--checks 3000] [--seconds 15] [--repeat 3] [--workers auto]
                          [--reuse-checks 300] [--skip-reuse]

The target is a local nginx serving TLS with a certificate from a CA generated for the run
(nginx is installed from Debian packages when missing, as bench/engine.py does). Every
check makes a fresh connection and a full TLS handshake, verifying the chain against that
CA and the host name, as an uptime check should; so does the raw client (64 at once: a
fresh connection, handshake and GET each, reading the peer certificate as the probe does).
Each repeat measures the raw client, then the engine in a fresh process (bench/engine.py's
child: the daemon with its worker processes, checks every 1 s, more than it can run, so
it runs flat out). Then, at a rate the engine keeps up with (--reuse-checks checks every
1 s), the engine with and without `reuse_connections: true`. Medians over the repeats
are printed, with CPU time per check for each client and for nginx. nginx logs each
request with its connection's serial number, so the connections per request are counted
on the server side.

Targets (issue 23): the engine >= 0.4x the raw client's throughput with a fresh handshake
per check; the certificate expiry read from the check's own handshake (one connection
per check, none opened for the certificate).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import machine, verdict

from engine import (
    cpu_seconds,
    load,
    median,
    nginx_processes,
    run_child,
    spread,
    write_config,
)
from watchkeeper.engine.testing import free_port, make_certificates

RAW_CONCURRENCY = 64


class TlsNginx:
    """nginx serving https on one port (the checks) and plain http on another (its
    stub_status, so reading the counters never adds a TLS connection)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.certs = make_certificates(directory / "pki", valid_for=dt.timedelta(days=45))
        self.port = free_port()
        self.status_port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> TlsNginx:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "nginx-light"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        d = self.directory
        conf = d / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    log_format conn '$connection';
    server {{
        listen 127.0.0.1:{self.port} ssl backlog=4096;
        access_log {d}/requests.log conn;
        ssl_certificate {self.certs.cert};
        ssl_certificate_key {self.certs.key};
        ssl_session_tickets off;
        location / {{ return 200 '{{"status":"ok"}}'; }}
    }}
    server {{
        listen 127.0.0.1:{self.status_port};
        location / {{ stub_status; }}
    }}
}}
""")
        self.proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(d)])
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("nginx did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def accepted(self) -> int:
        """Connections nginx has accepted so far, not counting the ones that read this."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/", timeout=5) as r:
            text = r.read().decode()
        accepts = int(re.search(r"\n\s*(\d+) \d+ \d+", text).group(1))
        self._reads = getattr(self, "_reads", 0) + 1
        return accepts - self._reads

    def log_size(self) -> int:
        path = self.directory / "requests.log"
        return path.stat().st_size if path.exists() else 0

    def connections_per_request(self, since: int) -> float:
        """Distinct connections ÷ requests, over the requests logged after `since` bytes."""
        with open(self.directory / "requests.log", "rb") as log:
            log.seek(since)
            lines = log.read().split()
        return len(set(lines)) / max(len(lines), 1)

    def client_context(self) -> ssl.SSLContext:
        """What the probe builds for `ca_bundle:` this CA (and a raw client should verify
        the same way)."""
        context = ssl.create_default_context(cafile=str(self.certs.ca))
        context.set_alpn_protocols(["http/1.1"])
        return context

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"


# -- the raw client --------------------------------------------------------------------------


async def raw_client(port: int, context: ssl.SSLContext, seconds: float) -> int:
    """Requests done in `seconds` by bare asyncio + ssl: a fresh connection and handshake
    per request, the peer certificate read as the probe reads it."""
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    data = request.encode()
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
            )
            writer.get_extra_info("ssl_object").getpeercert()
            writer.write(data)
            await writer.drain()
            await reader.read()
            writer.close()
            done += 1

    await asyncio.gather(*(worker() for _ in range(RAW_CONCURRENCY)))
    return done


def measure_raw(server: TlsNginx, seconds: float) -> dict:
    nginx = nginx_processes(server.pid)
    logged = server.log_size()
    cpu0, ng0, t0 = time.process_time(), cpu_seconds(nginx), time.perf_counter()
    done = asyncio.run(raw_client(server.port, server.client_context(), seconds))
    took = time.perf_counter() - t0
    cpu1, ng1 = time.process_time(), cpu_seconds(nginx)
    return {
        "rate": done / took,
        "cpu_ms": 1000 * (cpu1 - cpu0) / done,
        "nginx_ms": 1000 * (ng1 - ng0) / done,
        "connections": server.connections_per_request(logged),
    }


# -- the engine ------------------------------------------------------------------------------


def https_checks(server: TlsNginx, count: int, every: str, reuse: bool) -> dict:
    extra = {"reuse_connections": True} if reuse else {}
    return {
        f"https-{i}": {
            "probe": "http",
            "url": server.url(f"/h{i}"),
            "ca_bundle": str(server.certs.ca),
            "schedule": {"every": every},
            "timeout": "5s",
            **extra,
        }
        for i in range(count)
    }


def measure_engine(
    server: TlsNginx, folder: Path, args: argparse.Namespace, checks: int, reuse: bool
) -> dict:
    folder.mkdir()
    path = write_config(folder, https_checks(server, checks, "1s", reuse), args.workers)
    logged = server.log_size()
    figures = run_child("throughput", path, args.seconds, 5.0, server.pid)
    # over the whole child, warm-up included (the same regime throughout)
    figures["connections"] = server.connections_per_request(logged)
    return figures


def one_check(server: TlsNginx) -> tuple[dict, int]:
    """One https check run the way the test kit runs it; nginx's accepted connections
    around it."""
    from watchkeeper.engine.testing import check_once

    before = server.accepted()
    result = check_once(
        "http", {"url": server.url("/one"), "ca_bundle": str(server.certs.ca)}, timeout=5.0
    )
    return {"ok": result.ok, "message": result.message, **result.metrics}, (
        server.accepted() - before
    )


# -- the report ------------------------------------------------------------------------------


def report(args: argparse.Namespace, server: TlsNginx, tmp: Path) -> None:
    print(
        f"\n== https throughput: {args.checks} https checks every 1s against nginx (TLS, "
        f"ECDSA P-256 certificate from a CA made for the run), workers: {args.workers}, "
        f"{args.repeat} repeat(s) of {args.seconds:.0f}s; load average {load()}"
    )
    raws, fresh, paced, reused = [], [], [], []
    for index in range(args.repeat):
        raw = measure_raw(server, min(10.0, args.seconds))
        engine = measure_engine(server, tmp / f"fresh{index}", args, args.checks, reuse=False)
        raws.append(raw)
        fresh.append(engine)
        line = (
            f"  run {index + 1}: raw {raw['rate']:6.0f}/s   engine {engine['rate']:6.0f}/s   "
            f"ratio {engine['rate'] / raw['rate']:.2f}x   CPU/check: engine "
            f"{engine['cpu_main_ms'] + engine['cpu_workers_ms']:.3f} ms (daemon "
            f"{engine['cpu_main_ms']:.3f} + workers {engine['cpu_workers_ms']:.3f}), raw "
            f"{raw['cpu_ms']:.3f} ms   failed {engine['failed']}"
        )
        if not args.skip_reuse:
            n = args.reuse_checks
            base = measure_engine(server, tmp / f"paced{index}", args, n, reuse=False)
            again = measure_engine(server, tmp / f"reuse{index}", args, n, reuse=True)
            paced.append(base)
            reused.append(again)
            line += (
                f"   | at {n}/s: {base['cpu_main_ms'] + base['cpu_workers_ms']:.3f} ms/check, "
                f"reuse {again['cpu_main_ms'] + again['cpu_workers_ms']:.3f} ms/check"
            )
        print(line + f"   load {load()}")

    raw_rate = median([r["rate"] for r in raws])
    raw_cpu = median([r["cpu_ms"] for r in raws])
    engine_rate = median([e["rate"] for e in fresh])
    engine_cpu = median([e["cpu_main_ms"] + e["cpu_workers_ms"] for e in fresh])
    print(
        f"raw asyncio + ssl client: {raw_rate:7.0f} req/s (median; fresh connection and "
        f"handshake each, {RAW_CONCURRENCY} at once; {raw_cpu:.3f} ms CPU per request, nginx "
        f"{median([r['nginx_ms'] for r in raws]):.3f} ms; "
        f"{median([r['connections'] for r in raws]):.2f} connections per request)"
    )
    print(
        f"engine (https checks):    {engine_rate:7.0f} checks/s (median; "
        f"{fresh[0]['workers']} worker process(es); CPU per check: daemon "
        f"{median([e['cpu_main_ms'] for e in fresh]):.3f} ms + workers "
        f"{median([e['cpu_workers_ms'] for e in fresh]):.3f} ms = {engine_cpu:.3f} ms, nginx "
        f"{median([e['nginx_ms'] for e in fresh]):.3f} ms; "
        f"{median([e['connections'] for e in fresh]):.2f} connections per check; "
        f"{sum(e['failed'] for e in fresh)} failed, as checks queue past their 5 s timeout "
        "when more are due than the engine can run)"
    )
    if engine_rate >= 0.95 * args.checks:
        print(
            f"NOTE: the engine kept up with all {args.checks} checks/s: it did not run flat "
            "out, so the ratio understates it; raise --checks"
        )
    ratios = [e["rate"] / r["rate"] for e, r in zip(fresh, raws, strict=True)]
    ratio = median(ratios)
    verdict(
        "https throughput engine/raw (fresh handshake per check)",
        f"{ratio:.2f}x (per run {spread(ratios, '.2f')})",
        ">= 0.40x",
        ratio >= 0.4,
    )
    print(
        f"CPU per https check: engine {engine_cpu:.3f} ms vs raw client {raw_cpu:.3f} ms "
        f"= {raw_cpu / engine_cpu:.2f}x the raw client's efficiency"
    )

    result, connections = one_check(server)
    expected = (server.certs.not_after - dt.datetime.now(dt.UTC)).total_seconds()
    expiry = result.get("certificate_expiry")
    same = result["ok"] and connections == 1 and expiry is not None and abs(expiry - expected) < 120
    verdict(
        "certificate expiry from the check's own handshake",
        f"{connections} connection(s) for one check, certificate_expiry "
        + (f"{expiry / 86400:.2f} d (certificate: {expected / 86400:.2f} d)" if expiry else "none")
        + ("" if result["ok"] else f"; {result['message']}"),
        "1 connection, expiry reported",
        same,
    )

    if reused:
        n = args.reuse_checks
        for label, runs in (("fresh handshake", paced), ("reuse_connections", reused)):
            print(
                f"at {n} checks/s of one host, {label:17}: "
                f"{median([e['rate'] for e in runs]):5.0f} checks/s, CPU per check daemon "
                f"{median([e['cpu_main_ms'] for e in runs]):.3f} ms + workers "
                f"{median([e['cpu_workers_ms'] for e in runs]):.3f} ms, nginx "
                f"{median([e['nginx_ms'] for e in runs]):.3f} ms; "
                f"{median([e['connections'] for e in runs]):.3f} connections per check; "
                f"{sum(e['failed'] for e in runs)} failed"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--reuse-checks", type=int, default=300)
    parser.add_argument("--skip-reuse", action="store_true")
    args = parser.parse_args()
    import logging

    logging.getLogger("watchkeeper").setLevel(logging.ERROR)
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        server = TlsNginx(tmpdir).start()
        try:
            report(args, server, tmpdir)
        finally:
            server.stop()
    print(f"load average after: {load()}")


if __name__ == "__main__":
    sys.exit(main())
