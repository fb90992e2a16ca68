"""Measure a PostgreSQL backup: throughput against pg_dump alone, and memory against size.

    python bench/backup_stream.py [--mib 400] [--dsn postgresql://postgres@127.0.0.1/postgres]

Creates a scratch database of about `--mib` MiB on the local PostgreSQL, then
- times `pg_dump -Fc` alone into a file (the floor: what the dump itself costs);
- times `watchkeeper backup run` of the same database to two local destinations, and
  again with age encryption, sampling the peak RSS of the watchkeeper process;
and prints the rates, their ratio to pg_dump's, and the peak RSS beside the dump's size:
a backup is streamed, so memory must not grow with the database. The scratch database is
dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import yaml

from watchkeeper.engine.backups.postgres import with_dbname

MIB = 1024 * 1024


def psql(dsn: str, sql: str) -> None:
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql], check=True)


def seed(dsn: str, mib: int) -> None:
    # random hex: about 2:1 in pg_dump's compressed format, as text-heavy rows are
    rows = mib * MIB // 200
    psql(dsn, "create table events (id bigint primary key, kind text, payload text)")
    psql(
        dsn,
        "insert into events select g, 'kind-' || (g % 17), "
        "md5(random()::text) || md5(random()::text) || md5(random()::text) || "
        "md5(random()::text) || md5(random()::text) from generate_series(1, " + str(rows) + ") g",
    )
    psql(dsn, "vacuum analyze events")


def database_bytes(dsn: str) -> int:
    out = subprocess.run(
        ["psql", "-X", "-At", "-d", dsn, "-c", "select pg_database_size(current_database())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip())


class PeakRss:
    """Sample a process's RSS every 50 ms; keep the peak."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.is_set():
            try:
                # this process only: pg_dump is its child, and pg_dump's memory is not ours
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return self.peak


def backup_run(folder: Path, job: str) -> tuple[float, int, int]:
    """Run `watchkeeper backup run JOB`; return (seconds, peak RSS bytes, bytes written)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper.engine", "-c", "monitor.yaml", "backup", "run", job],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    rss = PeakRss(proc.pid)
    output, _ = proc.communicate()
    took = time.perf_counter() - started
    peak = rss.stop()
    if proc.returncode != 0:
        raise SystemExit(f"backup run {job} failed:\n{output}")
    written = sum(
        f.stat().st_size
        for f in (folder / "one" / job).rglob("*")
        if f.is_file() and f.name != "manifest.json"
    )
    return took, peak, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=400)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    name = f"wk_bench_{uuid.uuid4().hex[:8]}"
    psql(args.dsn, f"create database {name}")
    dsn = with_dbname(args.dsn, name)
    try:
        with tempfile.TemporaryDirectory(prefix="wk-bench-backup-") as tmp:
            folder = Path(tmp)
            print(f"seeding {args.mib} MiB into {name} ...", flush=True)
            seed(dsn, args.mib)
            size = database_bytes(dsn)

            started = time.perf_counter()
            subprocess.run(["pg_dump", "-Fc", "-d", dsn, "-f", str(folder / "x.dump")], check=True)
            alone = time.perf_counter() - started
            dump = (folder / "x.dump").stat().st_size
            (folder / "x.dump").unlink()

            identity = folder / "identity.txt"
            subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
            recipient = next(
                line.split(": ", 1)[1]
                for line in identity.read_text().splitlines()
                if line.startswith("# public key: ")
            )
            config = {
                "version": 1,
                "state": {"type": "sqlite", "path": "state.db"},
                "backups": {
                    "destinations": {
                        "one": {"type": "local", "path": "one"},
                        "two": {"type": "local", "path": "two"},
                    },
                    "jobs": {
                        "plain": {
                            "source": {"type": "postgres", "dsn": dsn},
                            "to": ["one", "two"],
                            "schedule": {"cron": "0 2 * * *"},
                        },
                        "sealed": {
                            "source": {"type": "postgres", "dsn": dsn},
                            "to": ["one", "two"],
                            "encrypt": {"recipients": [recipient]},
                            "schedule": {"cron": "0 2 * * *"},
                        },
                    },
                },
            }
            (folder / "monitor.yaml").write_text(yaml.safe_dump(config))
            plain, plain_rss, plain_bytes = backup_run(folder, "plain")
            sealed, sealed_rss, sealed_bytes = backup_run(folder, "sealed")
    finally:
        psql(args.dsn, f"drop database if exists {name} with (force)")

    def rate(seconds: float) -> float:
        return dump / MIB / seconds

    print(f"{os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"database {size / MIB:.0f} MiB on disk; custom-format dump {dump / MIB:.0f} MiB")
    print(f"pg_dump alone to a file:            {alone:6.2f} s  {rate(alone):6.1f} MiB/s of dump")
    print(
        f"backup run, two local destinations: {plain:6.2f} s  {rate(plain):6.1f} MiB/s "
        f"({rate(plain) / rate(alone):.2f}x pg_dump alone), {plain_bytes / MIB:.0f} MiB written "
        f"to each, peak RSS {plain_rss / MIB:.0f} MiB"
    )
    print(
        f"  the same, age-encrypted:          {sealed:6.2f} s  {rate(sealed):6.1f} MiB/s "
        f"({rate(sealed) / rate(alone):.2f}x), {sealed_bytes / MIB:.0f} MiB written to each, "
        f"peak RSS {sealed_rss / MIB:.0f} MiB"
    )
    print(
        f"peak RSS / dump size: {plain_rss / dump:.2f} (plain), {sealed_rss / dump:.2f} "
        "(encrypted): memory does not follow the size of the database"
    )


if __name__ == "__main__":
    main()
