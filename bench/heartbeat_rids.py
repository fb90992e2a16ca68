"""Cost of `start` beats with distinct run ids: python bench/heartbeat_rids.py [--beats 25000]

A daemon's heartbeat tracker (on a SQLite store in a temporary folder) takes N `start`
beats, each with a new `rid`, as a job that never reports its end (or a token holder
flooding the API) sends them. After every beat the state writer flushes, as it does when
beats come more than its 0.2 s interval apart, so each beat pays for writing the check's
state document. Prints the time per beat over the first and the last 1,000 beats, the
size of the stored document at the end, and how many open runs it holds.

Issue 15 (finding 5): before the cap, the document grew by every run (1 MB after 25,000)
and a beat cost time in proportion; with at most 100 open runs per check both stay flat.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import anyio
import yaml

from watchkeeper.engine.config.validation import load_config
from watchkeeper.engine.daemon import Daemon
from watchkeeper.engine.run.heartbeats import Beat

CONFIG = {
    "version": 1,
    "state": {"type": "sqlite", "path": "state.db"},
    "engine": {"workers": 0},
    "server": {"enabled": False},
    "checks": {"job": {"probe": "heartbeat", "expect_every": {"every": "1h"}}},
}


async def bench(beats: int, folder: Path) -> dict[str, float]:
    path = folder / "monitor.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    daemon = Daemon(load_config(path, env={}))
    await daemon.start()
    tracker, writer = daemon.heartbeats, daemon.writer
    times: list[float] = []
    try:
        now = time.time()
        for n in range(beats):
            started = time.perf_counter()
            await tracker.record("job", Beat(status="start", at=now + n * 0.001, rid=f"r{n}"))
            await writer.flush()
            times.append(time.perf_counter() - started)
        doc = await daemon.store.get("heartbeats", "job")
    finally:
        await daemon.store.close()
    window = min(1000, beats)
    return {
        "first_ms": sum(times[:window]) / window * 1000,
        "last_ms": sum(times[-window:]) / window * 1000,
        "doc_bytes": len(json.dumps(doc)),
        "open_runs": len(doc.get("runs", {})),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beats", type=int, default=25_000)
    args = parser.parse_args()
    logging.getLogger("watchkeeper").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        figures = anyio.run(bench, args.beats, Path(folder))
    print(
        f"{args.beats} start beats with distinct rids: "
        f"{figures['first_ms']:.2f} ms/beat (first 1000), "
        f"{figures['last_ms']:.2f} ms/beat (last 1000); "
        f"stored document {figures['doc_bytes'] / 1024:.1f} KiB, "
        f"{figures['open_runs']} open runs"
    )


if __name__ == "__main__":
    main()
