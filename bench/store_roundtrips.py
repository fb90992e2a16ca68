"""Count state store round trips per probe run: python bench/store_roundtrips.py

A probe run writes one result row and one state document through the engine's
StateWriter, which batches whatever arrived since its last flush: one `append` per stream
and one `put` per collection. This bench runs N checks per flush interval for a number of
flushes on each backend and prints, per probe run:

- store calls: `StateStore` method calls, counted by a proxy around the store;
- server round trips: requests the backend sent (the postgres and redis stores count
  their statements/pipelines/scripts in `round_trips`; sqlite counts commits, as
  `transactions`, its equivalent);

once for a single daemon and once with a fencing epoch on every write (as replicas do).
PostgreSQL and Redis are the local servers unless WATCHKEEPER_BENCH_PG /
WATCHKEEPER_BENCH_REDIS say otherwise; a backend that cannot be reached is skipped.
"""

from __future__ import annotations

import argparse
import inspect
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from watchkeeper.engine.run.writer import StateWriter
from watchkeeper.engine.state.store import Row, StateStore, StoreError
from watchkeeper.plugins.stores.postgres import PostgresStore
from watchkeeper.plugins.stores.redis import RedisStore
from watchkeeper.plugins.stores.sqlite import SqliteStore

PG_SERVER = os.environ.get("WATCHKEEPER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("WATCHKEEPER_BENCH_REDIS", "redis://127.0.0.1:6379/0")


class CountingStore:
    """A proxy that counts calls of a store's async methods and passes them on."""

    def __init__(self, store: StateStore):
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attr):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await attr(*args, **kwargs)

        return counted

    async def server_round_trips(self) -> int:
        """Requests the backend has sent so far (sqlite: transactions committed)."""
        count = getattr(self.store, "round_trips", None)
        if count is not None:
            return count
        return (await self.store.stats())["transactions"]


# -- backends -------------------------------------------------------------------------------


@asynccontextmanager
async def sqlite_store() -> AsyncIterator[StateStore]:
    with tempfile.TemporaryDirectory() as folder:
        yield SqliteStore(SqliteStore.Options(path="state.db"), base_dir=Path(folder))


@asynccontextmanager
async def postgres_store() -> AsyncIterator[StateStore]:
    import psycopg

    name = f"watchkeeper_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = await psycopg.AsyncConnection.connect(
            f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3
        )
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL at {PG_SERVER}: {exc}") from exc
    async with admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PostgresStore(PostgresStore.Options(url=f"{PG_SERVER}/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@asynccontextmanager
async def redis_store() -> AsyncIterator[StateStore]:
    import redis.asyncio as aioredis

    prefix = f"wkbench:{uuid.uuid4().hex[:8]}:"
    try:
        yield RedisStore(RedisStore.Options(url=REDIS_URL, prefix=prefix, require_aof=False))
    finally:
        client = aioredis.Redis.from_url(REDIS_URL)
        async with client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)


BACKENDS = {"sqlite": sqlite_store, "postgres": postgres_store, "redis": redis_store}


# -- measuring ------------------------------------------------------------------------------


def result(i: int) -> dict[str, Any]:
    return {
        "ok": i % 50 != 0,
        "metrics": {"response_time": 0.1 + (i % 7) / 100, "status_code": 200},
        "message": "200 OK",
        "duration": 0.12,
    }


def state(i: int) -> dict[str, Any]:
    return {"up": {"failures": 0, "successes": i, "since": 1767225600.0 + i}, "rules": {}}


async def measure(
    store: CountingStore, checks: int, flushes: int, epoch: int | None
) -> dict[str, float]:
    """Run `checks` probe runs per flush, `flushes` times; return figures per probe run."""
    writer = StateWriter(store)  # type: ignore[arg-type]  # the proxy quacks like a store
    writer.epoch = epoch
    calls_before = sum(store.calls.values())
    trips_before = await store.server_round_trips()
    began = time.perf_counter()
    for flush in range(flushes):
        for check in range(checks):
            i = flush * checks + check
            writer.append("results", Row(f"check-{check}", 1767225600.0 + i, result(i)))
            writer.put("check_state", f"check-{check}", state(i))
        if not await writer.flush():
            raise StoreError(f"flush failed: {writer.degraded}")
    took = time.perf_counter() - began
    runs = checks * flushes
    return {
        "calls": (sum(store.calls.values()) - calls_before) / runs,
        "trips": (await store.server_round_trips() - trips_before) / runs,
        "flush_ms": took / flushes * 1000,
    }


async def bench(name: str, checks: list[int], flushes: int) -> None:
    async with BACKENDS[name]() as raw:
        store = CountingStore(raw)
        try:
            await raw.open()
        except StoreError as exc:
            print(f"{name}: skipped ({exc})")
            return
        try:
            version = (await raw.stats())["version"]
            lease = await raw.acquire("member:bench", "bench", ttl=600)
            print(f"\n{name} {version}")
            print(
                f"  {'checks/flush':>12}  {'mode':<8} {'store calls/run':>15}"
                f" {'round trips/run':>15} {'ms/flush':>9}"
            )
            for count in checks:
                for mode, epoch in (("single", None), ("fenced", lease.epoch)):
                    figures = await measure(store, count, flushes, epoch)
                    print(
                        f"  {count:>12}  {mode:<8} {figures['calls']:>15.3f}"
                        f" {figures['trips']:>15.3f} {figures['flush_ms']:>9.2f}"
                    )
        finally:
            await raw.close()


async def main(backends: list[str], checks: list[int], flushes: int) -> None:
    print(
        "round trips per probe run (1 result row + 1 state document) through StateWriter;"
        f" {flushes} flushes per line"
    )
    for name in backends:
        await bench(name, checks, flushes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres,redis", help="comma-separated")
    parser.add_argument(
        "--checks", default="1,10,100,1000", help="probe runs per flush, comma-separated"
    )
    parser.add_argument("--flushes", type=int, default=20, help="flushes per measurement")
    args = parser.parse_args()
    anyio.run(
        main,
        [b for b in args.backends.split(",") if b],
        [int(c) for c in args.checks.split(",")],
        args.flushes,
    )
