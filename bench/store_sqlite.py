"""Time the SQLite state store's write path: python bench/store_sqlite.py [--rows N]

The engine writes one result row and one state document per probe run, from many tasks
at once; the store must commit them in batches. Prints rows/s for single-row appends and
single-document puts from 1000 concurrent tasks, both together (a probe run), and one
task writing alone (a round trip per write, no batching possible).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio

from watchkeeper.engine.state.store import Row
from watchkeeper.plugins.stores.sqlite import SqliteStore

TASKS = 1000


def result(i: int) -> dict:
    return {
        "ok": i % 50 != 0,
        "metrics": {"response_time": 0.1 + (i % 7) / 100, "status_code": 200},
        "message": "200 OK",
        "duration": 0.12,
    }


def state(i: int) -> dict:
    return {"up": {"failures": 0, "successes": i, "since": 1767225600.0 + i}, "rules": {}}


async def concurrently(store: SqliteStore, total: int, write) -> float:
    """Run `total` writes from TASKS tasks; return writes per second."""
    per_task = total // TASKS

    async def worker(t: int) -> None:
        for n in range(per_task):
            await write(store, t, t * per_task + n)

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for t in range(TASKS):
            tg.start_soon(worker, t)
    return per_task * TASKS / (time.perf_counter() - began)


async def append_one(store: SqliteStore, t: int, i: int) -> None:
    await store.append("results", [Row(f"check-{t}", 1767225600.0 + i, result(i))])


async def put_one(store: SqliteStore, t: int, i: int) -> None:
    await store.put("check_state", {f"check-{t}": state(i)})


async def probe_run(store: SqliteStore, t: int, i: int) -> None:
    await append_one(store, t, i)
    await put_one(store, t, i)


async def main(rows: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(SqliteStore.Options(path="state.db"), base_dir=Path(folder))
        await store.open()
        try:
            print(f"SQLite {(await store.stats())['version']}, {TASKS} concurrent tasks")
            for label, write, unit in [
                ("append, 1 row per call", append_one, "rows/s"),
                ("put, 1 document per call", put_one, "docs/s"),
                ("probe run: append 1 row + put 1 document", probe_run, "runs/s"),
            ]:
                before = await store.stats()
                rate = await concurrently(store, rows, write)
                after = await store.stats()
                txns = after["transactions"] - before["transactions"]
                writes = after["writes"] - before["writes"]
                print(
                    f"{label:<44} {rate:>10,.0f} {unit:<7}"
                    f" ({writes / max(txns, 1):,.0f} writes per transaction)"
                )

            count = 2000
            began = time.perf_counter()
            for i in range(count):
                await append_one(store, 0, rows + i)
            rate = count / (time.perf_counter() - began)
            print(f"{'append, 1 row per call, one task alone':<44} {rate:>10,.0f} rows/s")

            stats = await store.stats()
            print(f"file: {stats['size_bytes'] / 1e6:.1f} MB, rows: {stats['streams']}")
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="writes per measurement")
    anyio.run(main, parser.parse_args().rows)
