"""One contract for every state store backend (engine/state/store.py), then SQLite's own rules.

Every test taking `store` or `storage` runs once per backend in BACKENDS. A backend is an
async context manager factory: given the test's `request` and `tmp_path`, it prepares
empty storage for one test and yields `make()`, which builds a new, unopened store object
on that storage (called again to reopen, or to open a second object beside the first).
PostgreSQL and Redis are one factory and one BACKENDS entry each: postgres creates one
database per test run on the local server (a session fixture fetched with
`request.getfixturevalue`) and a fresh schema per test; redis uses one key prefix per test
on the local server and deletes it afterwards; both `pytest.skip` when their server is not
up. Backend-specific rules live in test_store_postgres.py and test_store_redis.py.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import psycopg
import pytest

from tests.pg_server import PgUnavailable, local_test_database
from tests.redis_server import LOCAL_REDIS, RedisUnavailable, delete_prefix, local_redis
from watchkeeper.engine.state.store import FencedWrite, Lease, Row, StateStore, StoreError
from watchkeeper.plugins.stores.postgres import PostgresStore
from watchkeeper.plugins.stores.redis import RedisStore
from watchkeeper.plugins.stores.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

MakeStore = Callable[[], StateStore]


@pytest.fixture
def anyio_backend():
    return "asyncio"


# -- backends -------------------------------------------------------------------------------


@asynccontextmanager
async def sqlite_backend(request, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """A file in a folder of the test's temporary directory that does not exist yet."""
    yield lambda: SqliteStore(SqliteStore.Options(path="state/state.db"), base_dir=tmp_path)


@pytest.fixture(scope="session")
def pg_test_database():
    """One database on the local PostgreSQL for the whole test run, dropped at the end."""
    try:
        with local_test_database() as url:
            yield url
    except PgUnavailable as exc:
        pytest.skip(str(exc))


@asynccontextmanager
async def postgres_backend(request, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """A schema of its own in the test run's database, dropped afterwards."""
    url = request.getfixturevalue("pg_test_database")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    try:
        yield lambda: PostgresStore(PostgresStore.Options(url=url, schema=schema))
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@asynccontextmanager
async def redis_backend(request, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """A key prefix of its own on the local Redis (which runs without appendonly)."""
    try:
        local_redis().close()
    except RedisUnavailable as exc:
        pytest.skip(str(exc))
    prefix = f"wktest:{uuid.uuid4().hex[:12]}:"
    options = RedisStore.Options(url=LOCAL_REDIS, prefix=prefix, require_aof=False)
    try:
        yield lambda: RedisStore(options)
    finally:
        delete_prefix(LOCAL_REDIS, prefix)


BACKENDS = {
    "sqlite": sqlite_backend,
    "postgres": postgres_backend,
    "redis": redis_backend,
}


class Storage:
    """One backend's storage for one test: opens store objects on it, closes them after."""

    def __init__(self, name: str, make: MakeStore):
        self.name = name
        self.make = make
        self.opened: list[StateStore] = []

    async def open(self, role: str = "daemon") -> StateStore:
        store = self.make()
        await store.open(role=role)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


@pytest.fixture(params=sorted(BACKENDS))
async def storage(request, tmp_path) -> AsyncIterator[Storage]:
    async with BACKENDS[request.param](request, tmp_path) as make:
        storage = Storage(request.param, make)
        try:
            yield storage
        finally:
            await storage.close_all()


@pytest.fixture
async def store(storage: Storage) -> StateStore:
    return await storage.open()


# -- documents ------------------------------------------------------------------------------


async def test_documents_put_get_get_all_delete(store):
    assert await store.get("alerts", "a1") is None
    assert await store.get_all("alerts") == {}

    await store.put("alerts", {"a1": {"status": "firing"}, "a2": {"status": "pending"}})
    await store.put("check_state", {"a1": {"failures": 3}})

    assert await store.get("alerts", "a1") == {"status": "firing"}
    assert await store.get_all("alerts") == {
        "a1": {"status": "firing"},
        "a2": {"status": "pending"},
    }
    assert await store.get_all("check_state") == {"a1": {"failures": 3}}

    await store.delete("alerts", ["a1", "never-written"])
    assert await store.get("alerts", "a1") is None
    assert await store.get_all("alerts") == {"a2": {"status": "pending"}}
    assert await store.get("check_state", "a1") == {"failures": 3}, "collections are apart"

    await store.put("alerts", {})
    await store.delete("alerts", [])


async def test_put_replaces_the_whole_document(store):
    await store.put("check_state", {"api": {"failures": 2, "successes": 0, "since": 10.0}})
    await store.put("check_state", {"api": {"failures": 3}})
    assert await store.get("check_state", "api") == {"failures": 3}


# -- fencing --------------------------------------------------------------------------------


async def test_an_older_epoch_is_fenced_off_and_writes_nothing(store):
    await store.put("alerts", {"a": {"v": 1}}, epoch=5)

    with pytest.raises(FencedWrite) as raised:
        await store.put("alerts", {"a": {"v": "stale"}}, epoch=4)
    assert raised.value.collection == "alerts"
    assert raised.value.keys == ["a"]
    assert isinstance(raised.value, StoreError)
    assert await store.get("alerts", "a") == {"v": 1}

    await store.put("alerts", {"a": {"v": 2}}, epoch=5)  # equal: the same holder again
    await store.put("alerts", {"a": {"v": 3}}, epoch=9)  # newer: a successor
    with pytest.raises(FencedWrite):
        await store.put("alerts", {"a": {"v": "stale"}}, epoch=5)
    assert await store.get("alerts", "a") == {"v": 3}

    # Another collection's document of the same key has its own epoch.
    await store.put("check_state", {"a": {"v": 1}}, epoch=1)


async def test_a_fenced_batch_writes_none_of_its_documents(store):
    await store.put("alerts", {"held": {"v": 1}}, epoch=7)
    await store.put("alerts", {"free": {"v": 1}}, epoch=1)

    with pytest.raises(FencedWrite) as raised:
        await store.put(
            "alerts",
            {"free": {"v": 2}, "held": {"v": 2}, "new": {"v": 2}},
            epoch=6,
        )
    assert raised.value.keys == ["held"]
    assert await store.get_all("alerts") == {"held": {"v": 1}, "free": {"v": 1}}


async def test_unfenced_writes_keep_the_stored_epoch(store):
    await store.put("alerts", {"a": {"v": 1}}, epoch=8)
    await store.put("alerts", {"a": {"acked": True}})  # a CLI acknowledgement
    assert await store.get("alerts", "a") == {"acked": True}
    with pytest.raises(FencedWrite):
        await store.put("alerts", {"a": {"v": "stale"}}, epoch=7)


async def test_delete_is_fenced_like_put(store):
    await store.put("outbox", {"n1": {"to": "slack"}, "n2": {"to": "email"}}, epoch=3)
    with pytest.raises(FencedWrite):
        await store.delete("outbox", ["n1", "n2"], epoch=2)
    assert set(await store.get_all("outbox")) == {"n1", "n2"}
    await store.delete("outbox", ["n1"], epoch=3)
    await store.delete("outbox", ["n2"])
    assert await store.get_all("outbox") == {}


async def test_a_fenced_write_fails_alone_among_concurrent_writes(store):
    await store.put("alerts", {"held": {"v": 0}}, epoch=10)
    outcomes: dict[int, str] = {}

    async def write(i: int) -> None:
        key, epoch = ("held", 1) if i % 5 == 0 else (f"k{i}", 1)
        try:
            await store.put("alerts", {key: {"v": i}}, epoch=epoch)
            outcomes[i] = "ok"
        except FencedWrite:
            outcomes[i] = "fenced"

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(write, i)

    # completion order is not call order on pooled backends: compare the set of calls
    assert sorted(i for i, o in outcomes.items() if o == "fenced") == list(range(0, 50, 5))
    docs = await store.get_all("alerts")
    assert len(docs) == 1 + 40
    assert docs["held"] == {"v": 0}


async def test_racing_fenced_batches_are_all_or_nothing(storage):
    """Writers with epochs 1..20 race over the same keys from two store objects."""
    one, other = await storage.open(), await storage.open(role="client")
    keys = [f"k{i}" for i in range(10)]
    written: list[int] = []
    fenced: list[FencedWrite] = []

    async def write(epoch: int) -> None:
        store = one if epoch % 2 else other
        try:
            await store.put("check_state", {key: {"by": epoch} for key in keys}, epoch=epoch)
            written.append(epoch)
        except FencedWrite as exc:
            fenced.append(exc)

    async with anyio.create_task_group() as tg:
        for epoch in range(1, 21):
            tg.start_soon(write, epoch)

    assert 20 in written, "the greatest epoch is never fenced off"
    assert len(written) + len(fenced) == 20
    assert all(exc.keys for exc in fenced), "a fenced write names its keys"
    docs = await one.get_all("check_state")
    assert docs == {key: {"by": 20} for key in keys}, "no batch landed in part"


async def test_a_lease_epoch_fences_off_the_holder_that_lost_it(store):
    first = await store.acquire("member/a", "replica-a", ttl=0.2)
    await store.put("alerts", {"x": {"by": "a"}}, epoch=first.epoch)
    await anyio.sleep(0.3)
    second = await store.acquire("member/a", "replica-b", ttl=10)
    assert second.epoch > first.epoch
    await store.put("alerts", {"x": {"by": "b"}}, epoch=second.epoch)
    with pytest.raises(FencedWrite):
        await store.put("alerts", {"x": {"by": "a, late"}}, epoch=first.epoch)
    assert await store.get("alerts", "x") == {"by": "b"}


# -- insert_once ----------------------------------------------------------------------------


async def test_insert_once_has_exactly_one_winner_among_20(store):
    won: list[int] = []

    async def claim(i: int) -> None:
        if await store.insert_once("claims", "backup:database@2026-01-04T02:00Z", {"by": i}):
            won.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(claim, i)

    assert len(won) == 1
    assert await store.get("claims", "backup:database@2026-01-04T02:00Z") == {"by": won[0]}
    assert not await store.insert_once("claims", "backup:database@2026-01-04T02:00Z", {"by": -1})


async def test_insert_once_across_two_store_objects(storage):
    one, other = await storage.open(), await storage.open(role="client")
    won = []

    async def claim(store: StateStore, i: int) -> None:
        if await store.insert_once("claims", "task:daily-review@2026-01-05", {"by": i}):
            won.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(claim, one if i % 2 else other, i)
    assert len(won) == 1


async def test_insert_once_loses_to_an_existing_document(store):
    await store.put("claims", {"k": {"by": "put"}})
    assert not await store.insert_once("claims", "k", {"by": "claim"})
    assert await store.get("claims", "k") == {"by": "put"}
    assert await store.insert_once("claims", "other", {"by": "claim"})


# -- streams --------------------------------------------------------------------------------


def ats(rows: list[Row]) -> list[float]:
    return [row.at for row in rows]


async def fill_results(store: StateStore) -> None:
    await store.append(
        "results",
        [Row("a", 100.0, {"ok": True, "n": 0}), Row("b", 100.5, {"ok": False})]
        + [Row("a", 100.0 + i, {"ok": True, "n": i}) for i in (1, 2)],
    )
    await store.append("results", [Row("b", 102.5, {"ok": True}), Row("a", 103.0, {"n": 3})])


async def test_read_by_key_and_time_range(store):
    await fill_results(store)

    rows = await store.read("results", "a")
    assert ats(rows) == [100.0, 101.0, 102.0, 103.0]
    assert [row.data.get("n") for row in rows] == [0, 1, 2, 3]
    assert all(isinstance(row, Row) and row.key == "a" for row in rows)

    assert ats(await store.read("results", "a", since=101.0, until=103.0)) == [101.0, 102.0]
    assert ats(await store.read("results", "a", since=103.0)) == [103.0]
    assert ats(await store.read("results", "a", until=100.0)) == []
    assert await store.read("results", "nobody") == []
    assert await store.read("beats") == [], "streams are apart"


async def test_read_order_and_limit(store):
    await fill_results(store)

    assert ats(await store.read("results", "a", limit=2)) == [100.0, 101.0]
    assert ats(await store.read("results", "a", newest_first=True)) == [103, 102, 101, 100]
    assert ats(await store.read("results", "a", newest_first=True, limit=1)) == [103.0]
    assert ats(await store.read("results", "a", until=103, newest_first=True, limit=2)) == [
        102.0,
        101.0,
    ]
    assert await store.read("results", "a", limit=0) == []


async def test_read_every_key(store):
    await fill_results(store)

    rows = await store.read("results")
    assert ats(rows) == [100.0, 100.5, 101.0, 102.0, 102.5, 103.0]
    assert [row.key for row in rows] == ["a", "b", "a", "a", "b", "a"]
    assert ats(await store.read("results", since=102.0)) == [102.0, 102.5, 103.0]
    assert ats(await store.read("results", newest_first=True, limit=2)) == [103.0, 102.5]


async def test_trim_and_stream_keys(store):
    await fill_results(store)
    await store.append("beats", [Row("nightly", 50.0, {"status": "ok"})])
    assert sorted(await store.stream_keys("results")) == ["a", "b"]
    assert await store.stream_keys("beats") == ["nightly"]
    assert await store.stream_keys("audit") == []

    assert await store.trim("results", 101.5) == 3
    assert ats(await store.read("results")) == [102.0, 102.5, 103.0]
    assert await store.trim("results", 101.5) == 0

    assert await store.trim("results", 103.0) == 2
    assert await store.stream_keys("results") == ["a"], "a key without rows is gone"
    assert await store.read("beats", "nightly") == [Row("nightly", 50.0, {"status": "ok"})]
    assert await store.trim("audit", 1e12) == 0


async def test_row_times_keep_their_precision(store):
    at = 1767225600.123456
    await store.append("results", [Row("a", at, {})])
    assert (await store.read("results", "a"))[0].at == at
    assert ats(await store.read("results", "a", since=at, until=math.nextafter(at, 2e9))) == [at]


# -- leases ---------------------------------------------------------------------------------


async def test_lease_acquire_refuse_renew_expire(store):
    before = await store.now()
    lease = await store.acquire("member/1", "replica-a", ttl=0.3, data={"host": "h1"})
    assert isinstance(lease, Lease)
    assert (lease.name, lease.holder, lease.data) == ("member/1", "replica-a", {"host": "h1"})
    assert before + 0.3 <= lease.expires_at <= await store.now() + 0.3

    assert await store.acquire("member/1", "replica-b", ttl=10) is None

    renewed = await store.acquire("member/1", "replica-a", ttl=0.3)
    assert renewed.epoch == lease.epoch
    assert renewed.expires_at >= lease.expires_at
    assert renewed.data == {"host": "h1"}, "a renewal without data keeps it"

    await anyio.sleep(0.4)
    taken = await store.acquire("member/1", "replica-b", ttl=10)
    assert taken is not None
    assert taken.holder == "replica-b"
    assert taken.epoch > lease.epoch
    assert taken.data == {}


async def test_the_same_holder_after_expiry_gets_a_new_epoch(store):
    lease = await store.acquire("leader", "a", ttl=0.2)
    await anyio.sleep(0.3)
    again = await store.acquire("leader", "a", ttl=10)
    assert again.epoch > lease.epoch


async def test_release(store):
    lease = await store.acquire("leader", "a", ttl=30)
    await store.release("leader", "b")  # not the holder: nothing happens
    assert await store.acquire("leader", "b", ttl=30) is None

    await store.release("leader", "a")
    assert await store.leases("leader") == []
    taken = await store.acquire("leader", "b", ttl=30)
    assert taken is not None
    assert taken.epoch > lease.epoch
    await store.release("nothing", "a")


async def test_epochs_increase_across_lease_names(store):
    epochs = [(await store.acquire(f"member/{i}", f"r{i}", ttl=30)).epoch for i in range(5)]
    assert epochs == sorted(epochs)
    assert len(set(epochs)) == 5


async def test_leases_by_prefix_and_unexpired_only(store):
    await store.acquire("member/a", "a", ttl=30, data={"checks": 3})
    await store.acquire("member/b", "b", ttl=30)
    await store.acquire("member/gone", "c", ttl=0.1)
    await store.acquire("leader", "a", ttl=30)
    await anyio.sleep(0.2)

    members = sorted(await store.leases("member/"), key=lambda lease: lease.name)
    assert [(lease.name, lease.holder) for lease in members] == [
        ("member/a", "a"),
        ("member/b", "b"),
    ]
    assert members[0].data == {"checks": 3}
    now = await store.now()
    assert all(lease.expires_at > now for lease in members)
    assert len(await store.leases()) == 3
    assert await store.leases("nobody/") == []


# -- concurrency and durability -------------------------------------------------------------


async def test_many_concurrent_writes_are_all_stored(store):
    async def run(i: int) -> None:
        await store.append("results", [Row(f"check-{i % 10}", 1000.0 + i, {"i": i})])
        await store.put("check_state", {f"check-{i}": {"i": i}})

    async with anyio.create_task_group() as tg:
        for i in range(1000):
            tg.start_soon(run, i)

    rows = await store.read("results")
    assert sorted(row.data["i"] for row in rows) == list(range(1000))
    assert len(await store.read("results", "check-3")) == 100
    assert len(await store.get_all("check_state")) == 1000


async def test_cancelled_writers_leave_the_store_working(store):
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(store.append, "results", [Row("a", float(i), {"i": i})])
                tg.start_soon(store.put, "check_state", {f"k{i}": {"i": i}})
            await anyio.sleep(0.001)  # let some writes reach the store
            scope.cancel()

    await store.put("alerts", {"after": {}})
    assert await store.get("alerts", "after") == {}
    rows = await store.read("results")
    assert len({row.data["i"] for row in rows}) == len(rows) <= 200, "each row at most once"


async def test_everything_survives_close_and_reopen(storage):
    store = await storage.open()
    await store.put("alerts", {"a": {"status": "firing"}}, epoch=4)
    await store.append("results", [Row("api", 10.0, {"ok": False})])
    lease = await store.acquire("member/a", "replica-a", ttl=60, data={"n": 1})
    assert await store.insert_once("claims", "k", {})
    await store.close()
    await store.close()  # twice is harmless

    reopened = await storage.open()
    assert await reopened.get("alerts", "a") == {"status": "firing"}
    assert await reopened.read("results", "api") == [Row("api", 10.0, {"ok": False})]
    assert [(x.holder, x.epoch, x.data) for x in await reopened.leases("member/")] == [
        ("replica-a", lease.epoch, {"n": 1})
    ]
    assert not await reopened.insert_once("claims", "k", {})
    with pytest.raises(FencedWrite):
        await reopened.put("alerts", {"a": {}}, epoch=3)
    assert (await reopened.acquire("other", "x", ttl=1)).epoch > lease.epoch


async def test_a_closed_store_refuses_calls(storage):
    store = await storage.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.get("alerts", "a")
    with pytest.raises(StoreError):
        await store.put("alerts", {"a": {}})
    with pytest.raises(StoreError):
        await store.append("results", [Row("a", 1.0, {})])
    with pytest.raises(StoreError):
        await store.ping()


async def test_a_second_store_object_sees_writes_at_once(storage):
    one, other = await storage.open(), await storage.open(role="client")
    await other.put("heartbeats", {"nightly": {"status": "ok"}})
    await other.append("beats", [Row("nightly", 5.0, {"status": "ok"})])
    assert await one.get("heartbeats", "nightly") == {"status": "ok"}
    assert len(await one.read("beats", "nightly")) == 1
    await one.put("alerts", {"a": {}})
    assert await other.get_all("alerts") == {"a": {}}


# -- data -----------------------------------------------------------------------------------

NESTED = {
    "message": 'café ☕ 日本語 𝄞 "quoted" back\\slash\nnew line \x00 nul',
    "ключ": "значение",
    "nested": {"list": [1, 2.5, "three", None, True, False, {"deep": [[], {}]}], "empty": {}},
    "big": 2**53 + 1,
    "tiny": -1.5e-300,
    "zero": 0.0,
}


async def test_json_round_trip(store):
    await store.put("alerts", {"ünïcode-🔑": NESTED})
    assert await store.get("alerts", "ünïcode-🔑") == NESTED
    assert await store.get_all("alerts") == {"ünïcode-🔑": NESTED}
    await store.append("results", [Row("ключ", 1.0, NESTED)])
    assert (await store.read("results", "ключ"))[0].data == NESTED
    lease = await store.acquire("member/ü", "hölder", ttl=10, data=NESTED)
    assert lease.data == NESTED
    assert (await store.leases("member/"))[0].data == NESTED

    await store.put("alerts", {"t": {"pair": (1, 2)}})
    assert await store.get("alerts", "t") == {"pair": [1, 2]}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
async def test_non_json_numbers_are_refused_before_writing(store, bad):
    with pytest.raises(ValueError):
        await store.put("alerts", {"ok": {"v": 1}, "bad": {"v": bad}})
    with pytest.raises(ValueError):
        await store.append("results", [Row("a", 1.0, {}), Row("a", 2.0, {"v": bad})])
    assert await store.get_all("alerts") == {}
    assert await store.read("results") == []


# -- facts ----------------------------------------------------------------------------------


async def test_clock_and_ping(store):
    await store.ping()
    now = await store.now()
    assert abs(now - time.time()) < 5
    assert await store.now() >= now


async def test_stats_shape(storage, store):
    await store.put("alerts", {"a": {}, "b": {}})
    await store.put("silences", {"s": {}})
    await store.append("results", [Row("api", float(i), {}) for i in range(3)])
    await store.append("beats", [Row("nightly", 1.0, {})])
    await store.acquire("member/a", "a", ttl=30)

    stats = await store.stats()
    json.dumps(stats)  # /api/status serves it as is
    assert stats["backend"] == storage.name == type(store).type
    assert isinstance(stats["version"], str)
    assert stats["version"]
    assert stats["schema_version"] == type(store).schema_version
    assert stats["size_bytes"] is None or stats["size_bytes"] > 0
    assert stats["collections"] == {"alerts": 2, "silences": 1}
    assert stats["streams"] == {"results": 3, "beats": 1}
    assert stats["leases"] == 1

    await store.trim("results", 10.0)
    assert (await store.stats())["streams"].get("results", 0) == 0


# -- SQLite's own rules ---------------------------------------------------------------------


def sqlite_store(base_dir: Path, path: str = "state/state.db") -> SqliteStore:
    return SqliteStore(SqliteStore.Options(path=path), base_dir=base_dir)


HOLD_THE_FILE = """
import sys, anyio
from watchkeeper.plugins.stores.sqlite import SqliteStore

async def main():
    store = SqliteStore(SqliteStore.Options(path="state/state.db"), base_dir=sys.argv[1])
    await store.open()
    print("open", flush=True)
    await anyio.sleep(60)

anyio.run(main)
"""


async def test_a_second_daemon_on_the_file_is_refused(tmp_path):
    proc = await anyio.open_process([sys.executable, "-c", HOLD_THE_FILE, str(tmp_path)])
    try:
        with anyio.fail_after(30):
            said = b""
            while not said.endswith(b"open\n"):
                said += await proc.stdout.receive()
        path = tmp_path / "state" / "state.db"
        with pytest.raises(StoreError) as raised:
            await sqlite_store(tmp_path).open()
        assert str(raised.value).startswith(
            f"another watchkeeper daemon (pid {proc.pid}) is using {path}"
        )

        client = sqlite_store(tmp_path)
        await client.open(role="client")  # `watchkeeper status` beside the daemon
        await client.put("heartbeats", {"nightly": {"status": "ok"}})
        await client.close()
    finally:
        proc.kill()  # SIGKILL: the daemon gets no chance to clean up
        await proc.wait()
        await proc.aclose()

    # The kernel drops the lock of a killed daemon: the next one starts.
    store = sqlite_store(tmp_path)
    await store.open()
    assert await store.get("heartbeats", "nightly") == {"status": "ok"}
    await store.close()


async def test_the_lock_is_held_until_close(tmp_path):
    store = sqlite_store(tmp_path)
    await store.open()
    with pytest.raises(StoreError, match=rf"another watchkeeper daemon \(pid {os.getpid()}\)"):
        await sqlite_store(tmp_path).open(role="daemon")
    await store.close()
    again = sqlite_store(tmp_path)
    await again.open()
    await again.close()


async def test_file_folder_wal_and_lock(tmp_path):
    store = sqlite_store(tmp_path / "conf", "deep/er/watch.db")
    await store.open()
    try:
        path = tmp_path / "conf" / "deep" / "er" / "watch.db"
        assert store.path == path
        assert path.is_file()
        assert (path.parent / "watch.db.lock").read_text() == f"{os.getpid()}\n"
        stats = await store.stats()
        assert stats["journal_mode"] == "wal"
        assert stats["path"] == str(path)
        assert stats["version"] == sqlite3.sqlite_version
    finally:
        await store.close()


async def test_absolute_path_ignores_the_config_folder(tmp_path):
    store = sqlite_store(tmp_path / "conf", str(tmp_path / "elsewhere" / "s.db"))
    await store.open()
    await store.close()
    assert (tmp_path / "elsewhere" / "s.db").is_file()


V1_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('epoch', 0);
CREATE TABLE docs (collection TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,
                   PRIMARY KEY (collection, key)) WITHOUT ROWID;
CREATE TABLE rows (id INTEGER PRIMARY KEY, stream TEXT NOT NULL, key TEXT NOT NULL,
                   at REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX rows_by_key ON rows (stream, key, at);
CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch INTEGER NOT NULL,
                     expires_at REAL NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('schema_version', 1);
"""


async def test_a_version_1_file_is_migrated(tmp_path):
    path = tmp_path / "state" / "state.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_DDL)
        conn.execute("UPDATE meta SET value = 7 WHERE key = 'epoch'")
        conn.execute("""INSERT INTO docs VALUES ('alerts', 'a', '{"status":"firing"}')""")
        conn.executemany(
            "INSERT INTO rows (stream, key, at, data) VALUES (?, ?, ?, ?)",
            [
                ("results", "api", 1.0, "{}"),
                ("results", "api", 2.0, "{}"),
                ("beats", "n", 1.0, "{}"),
            ],
        )
    conn.close()

    store = sqlite_store(tmp_path)
    await store.open()
    try:
        stats = await store.stats()
        assert stats["schema_version"] == SqliteStore.schema_version == 2
        assert stats["streams"] == {"results": 2, "beats": 1}, "row counts backfilled"
        assert await store.get("alerts", "a") == {"status": "firing"}
        assert ats(await store.read("results")) == [1.0, 2.0]
        await store.put("alerts", {"a": {"status": "resolved"}}, epoch=1)  # old docs: epoch 0
        assert (await store.acquire("leader", "me", ttl=5)).epoch == 8
    finally:
        await store.close()

    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert version == (2,)


async def test_an_empty_file_is_version_0(tmp_path):
    path = tmp_path / "state" / "state.db"
    path.parent.mkdir()
    path.touch()
    store = sqlite_store(tmp_path)
    await store.open()
    assert (await store.stats())["schema_version"] == 2
    await store.close()


async def test_files_that_are_not_ours_are_refused(tmp_path):
    path = tmp_path / "state" / "state.db"
    path.parent.mkdir()

    path.write_bytes(b"this is not a database, just bytes " * 100)
    with pytest.raises(StoreError, match="cannot open state file"):
        await sqlite_store(tmp_path).open()

    path.unlink()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.close()
    with pytest.raises(StoreError, match="not a watchkeeper state file"):
        await sqlite_store(tmp_path).open()

    path.unlink()
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_DDL.replace("'schema_version', 1", "'schema_version', 99"))
    conn.close()
    with pytest.raises(StoreError, match=r"schema version 99.*upgrade watchkeeper"):
        await sqlite_store(tmp_path).open()

    # A refused open released its lock.
    path.unlink()
    store = sqlite_store(tmp_path)
    await store.open()
    await store.close()


async def test_a_busy_file_never_blocks_the_event_loop(tmp_path):
    store = sqlite_store(tmp_path)
    await store.open()
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        gaps = []

        async def tick() -> None:
            last = time.perf_counter()
            for _ in range(40):
                await anyio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async def write() -> None:
            await store.put("alerts", {"a": {}})

        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            tg.start_soon(write)
            await anyio.sleep(0.3)
            other.execute("COMMIT")
        assert max(gaps) < 0.1
        assert await store.get("alerts", "a") == {}
    finally:
        other.close()
        await store.close()


async def test_concurrent_writes_share_transactions(tmp_path):
    store = sqlite_store(tmp_path)
    await store.open()
    try:
        async with anyio.create_task_group() as tg:
            for i in range(500):
                tg.start_soon(store.append, "results", [Row("a", float(i), {})])
        stats = await store.stats()
        assert stats["writes"] == 500
        assert stats["transactions"] < 250
    finally:
        await store.close()
