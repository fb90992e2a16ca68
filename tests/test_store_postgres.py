"""The postgres state store's own rules, beyond the contract suite.

Most tests use a database of their own on the local PostgreSQL (127.0.0.1:5432, user
postgres) and a fresh schema per test; the restart tests start a private server with
`initdb`/`pg_ctl` (tests/pg_server.py) and never touch the shared one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import anyio
import psycopg
import pytest

from tests.pg_server import PgServer, PgUnavailable, free_port, local_test_database
from watchkeeper.engine.state.store import FencedWrite, Row, StoreError
from watchkeeper.plugins.stores import postgres_store as postgres_module
from watchkeeper.plugins.stores.postgres_store import PostgresStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def database() -> str:
    try:
        with local_test_database() as url:
            yield url
    except PgUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
async def schema(database) -> AsyncIterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def make(url: str, schema: str = "watchkeeper", **options) -> PostgresStore:
    return PostgresStore(PostgresStore.Options(url=url, schema=schema, **options))


async def sql(url: str, *statements: str) -> list[tuple]:
    """Run statements on a connection of our own; return the last one's rows."""
    rows: list[tuple] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for statement in statements:
            cursor = await conn.execute(statement)
            rows = await cursor.fetchall() if cursor.description else []
    return rows


# -- schema and migrations ------------------------------------------------------------------


async def test_everything_lives_in_the_configured_schema(database, schema):
    store = make(database, schema)
    await store.open()
    await store.close()
    tables = await sql(
        database,
        f"SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n"
        f" ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' ORDER BY 1",
    )
    assert {name for name, kind in tables if kind == "r"} == {
        "docs",
        "leases",
        "meta",
        "rows",
        "stream_rows",
    }
    assert ("epochs", "S") in tables
    assert {"rows_by_key", "rows_by_time"} <= {name for name, kind in tables if kind == "i"}
    public = await sql(database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert public == [(0,)]
    version = await sql(
        database, f"SELECT value FROM \"{schema}\".meta WHERE key = 'schema_version'"
    )
    assert version == [(PostgresStore.schema_version,)]


V1_DDL = [
    "CREATE SCHEMA {s}",
    "CREATE TABLE {s}.meta (key text PRIMARY KEY, value bigint NOT NULL)",
    "CREATE SEQUENCE {s}.epochs",
    "CREATE TABLE {s}.docs (collection text NOT NULL, key text NOT NULL, doc json NOT NULL,"
    " PRIMARY KEY (collection, key))",
    "CREATE TABLE {s}.rows (stream text NOT NULL, key text NOT NULL,"
    " at double precision NOT NULL, data json NOT NULL)",
    "CREATE INDEX rows_by_key ON {s}.rows (stream, key, at)",
    "CREATE TABLE {s}.leases (name text PRIMARY KEY, holder text NOT NULL,"
    " epoch bigint NOT NULL, expires_at double precision NOT NULL, data json NOT NULL)",
    "INSERT INTO {s}.meta VALUES ('schema_version', 1)",
]


async def test_a_version_1_schema_is_migrated(database, schema):
    s = f'"{schema}"'
    await sql(
        database,
        *[statement.format(s=s) for statement in V1_DDL],
        f"SELECT setval('{s}.epochs', 7)",
        f"""INSERT INTO {s}.docs VALUES ('alerts', 'a', '{{"status": "firing"}}')""",
        f"INSERT INTO {s}.rows VALUES ('results', 'api', 1.0, '{{}}'),"
        f" ('results', 'api', 2.0, '{{}}'), ('beats', 'n', 1.0, '{{}}')",
    )

    store = make(database, schema)
    await store.open()
    try:
        stats = await store.stats()
        assert stats["schema_version"] == PostgresStore.schema_version == 2
        assert stats["streams"] == {"beats": 1, "results": 2}, "row counts backfilled"
        assert await store.get("alerts", "a") == {"status": "firing"}
        assert [row.at for row in await store.read("results")] == [1.0, 2.0]
        await store.put("alerts", {"a": {"status": "resolved"}}, epoch=1)  # old docs: epoch 0
        with pytest.raises(FencedWrite):
            await store.put("alerts", {"a": {}}, epoch=0)
        assert (await store.acquire("leader", "me", ttl=5)).epoch == 8
    finally:
        await store.close()
    assert await sql(database, f"SELECT value FROM {s}.meta WHERE key = 'schema_version'") == [(2,)]


async def test_replicas_starting_together_migrate_once(database, schema):
    stores = [make(database, schema) for _ in range(6)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.open)
    try:
        await stores[0].put("alerts", {"a": {}}, epoch=1)
        for store in stores:
            assert await store.get("alerts", "a") == {}
            assert (await store.stats())["schema_version"] == 2
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused(database, schema):
    store = make(database, schema)
    await store.open()
    await store.close()
    await sql(database, f"UPDATE \"{schema}\".meta SET value = 99 WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=r"schema version 99.*upgrade watchkeeper"):
        await make(database, schema).open()


async def test_a_schema_holding_other_tables_is_refused(database, schema):
    await sql(database, f'CREATE SCHEMA "{schema}"', f'CREATE TABLE "{schema}".customers (id int)')
    with pytest.raises(StoreError, match="not a watchkeeper state store"):
        await make(database, schema).open()
    # an empty schema made by the DBA beforehand is fine
    await sql(database, f'DROP TABLE "{schema}".customers')
    store = make(database, schema)
    await store.open()
    await store.close()


async def test_an_odd_schema_name_is_quoted(database):
    schema = f'Watch "Keeper" {uuid.uuid4().hex[:6]}'
    store = make(database, schema)
    await store.open()
    try:
        await store.put("alerts", {"a": {"v": 1}}, epoch=3)
        await store.append("results", [Row("a", 1.0, {})])
        stats = await store.stats()
        assert stats["schema"] == schema
        assert stats["streams"] == {"results": 1}
        assert stats["size_bytes"] > 0
    finally:
        await store.close()
        quoted = '"' + schema.replace('"', '""') + '"'
        await sql(database, f"DROP SCHEMA {quoted} CASCADE")


# -- errors and secrets ---------------------------------------------------------------------


async def test_connection_errors_never_show_the_password(database):
    url = f"postgresql://watcher:s3cret-Pa55@127.0.0.1:{free_port()}/state"
    with pytest.raises(StoreError) as raised:
        await make(url).open()
    text = str(raised.value)
    assert text.startswith("cannot connect to postgresql://watcher@127.0.0.1:")
    assert "/state: " in text
    assert "s3cret-Pa55" not in text
    assert "s3cret-Pa55" not in repr(raised.value)

    missing = database.rsplit("/", 1)[0].replace("postgres@", "postgres:s3cret-Pa55@")
    with pytest.raises(StoreError, match="does not exist") as raised:
        await make(f"{missing}/no_such_db_{uuid.uuid4().hex[:6]}").open()
    assert "s3cret-Pa55" not in str(raised.value)


async def test_invalid_urls_are_a_store_error():
    with pytest.raises(StoreError, match="invalid postgres url"):
        await make("postgresql://u:pw@host/db?nonsense_option=1").open()


# -- batching and statements ----------------------------------------------------------------


async def test_every_call_is_one_round_trip(database, schema):
    store = make(database, schema)
    await store.open()
    try:
        calls = {
            "put": lambda: store.put("check_state", {f"c{i}": {"i": i} for i in range(50)}),
            "put with epoch": lambda: store.put("check_state", {"c1": {}, "c2": {}}, epoch=4),
            "fenced put": lambda: store.put("check_state", {"c1": {}}, epoch=1),
            "append": lambda: store.append("results", [Row(f"c{i}", i, {}) for i in range(50)]),
            "insert_once": lambda: store.insert_once("claims", "k", {}),
            "delete with epoch": lambda: store.delete("check_state", ["c3"], epoch=4),
            "read all keys": lambda: store.read("results", since=10),
            "acquire": lambda: store.acquire("member:a", "a", ttl=10),
            "leases": lambda: store.leases("member:"),
            "now": store.now,
        }
        for name, call in calls.items():
            before = store.round_trips
            try:
                await call()
            except FencedWrite:
                assert name == "fenced put"
            assert store.round_trips - before == 1, name
    finally:
        await store.close()


async def test_fenced_writes_write_nothing_even_for_new_keys(database, schema):
    store = make(database, schema)
    await store.open()
    try:
        await store.put("outbox", {"held": {"v": 1}}, epoch=9)
        with pytest.raises(FencedWrite) as raised:
            await store.put("outbox", {"a-new": {}, "held": {}, "z-new": {}}, epoch=8)
        assert raised.value.keys == ["held"]
        with pytest.raises(FencedWrite):
            await store.delete("outbox", ["a-new", "held"], epoch=8)
        assert await store.get_all("outbox") == {"held": {"v": 1}}
        # the connection that carried the refusal serves the next call
        await store.put("outbox", {"held": {"v": 2}}, epoch=9)
        assert await store.get("outbox", "held") == {"v": 2}
    finally:
        await store.close()


async def test_trim_deletes_in_chunks_and_keeps_counts(database, schema, monkeypatch):
    monkeypatch.setattr(postgres_module, "TRIM_CHUNK", 3)
    store = make(database, schema)
    await store.open()
    try:
        await store.append("results", [Row(f"k{i % 3}", float(i), {}) for i in range(10)])
        before = store.round_trips
        assert await store.trim("results", 8.0) == 8
        assert store.round_trips - before == 3  # 3 + 3 + 2
        assert (await store.stats())["streams"] == {"results": 2}
        assert sorted(await store.stream_keys("results")) == ["k0", "k2"]
    finally:
        await store.close()


async def test_row_counts_add_up_across_connections(database, schema):
    stores = [make(database, schema, pool_size=3) for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        async with anyio.create_task_group() as tg:
            for i in range(90):
                tg.start_soon(stores[i % 3].append, "results", [Row("a", float(i), {})] * 2)
        assert await stores[0].trim("results", 10.0) == 20
        assert (await stores[1].stats())["streams"] == {"results": 160}
        shards = await sql(database, f'SELECT count(*) FROM "{schema}".stream_rows')
        assert shards[0][0] >= 1
    finally:
        for store in stores:
            await store.close()


async def test_stats_figures(database, schema):
    store = make(database, schema, pool_size=2)
    await store.open(role="client")
    try:
        await store.append("results", [Row("a", 1.0, {})])
        stats = await store.stats()
        assert stats["backend"] == "postgres"
        assert stats["version"].split(".")[0].isdigit()
        assert stats["size_bytes"] > 0
        assert stats["server"] == database.replace(":5432", ":5432")
        assert stats["schema"] == schema
        assert stats["role"] == "client"
        assert isinstance(stats["rows_estimate"], int)
        assert stats["round_trips"] >= 2
        assert stats["pool_size"] <= 2
    finally:
        await store.close()


async def test_the_store_clock_is_the_servers(database, schema):
    store = make(database, schema)
    await store.open()
    try:
        server = (await sql(database, "SELECT extract(epoch FROM clock_timestamp())::float8"))[0][0]
        assert abs(await store.now() - server) < 1
    finally:
        await store.close()


# -- outages --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_server():
    try:
        server = PgServer()
    except PgUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield server


async def wait_until_served(store: PostgresStore, timeout: float = 15.0) -> float:
    """Call the store until it answers; return how long that took."""
    started = time.monotonic()
    while True:
        try:
            await store.ping()
            return time.monotonic() - started
        except StoreError:
            if time.monotonic() - started > timeout:
                raise
            await anyio.sleep(0.1)


@pytest.mark.slow
async def test_a_restarted_server_is_served_without_reopening(private_server):
    store = make(private_server.url, f"restart_{uuid.uuid4().hex[:6]}", pool_size=3)
    await store.open()
    try:
        await store.put("alerts", {"a": {"v": 1}}, epoch=2)
        await store.append("results", [Row("api", 1.0, {"ok": True})])

        private_server.restart()
        # idle connections died with the old server: none of them fails a call
        assert await store.get("alerts", "a") == {"v": 1}

        private_server.stop()
        for call in (store.ping, lambda: store.get("alerts", "a"), store.now):
            started = time.monotonic()
            with pytest.raises(StoreError) as raised:
                await call()
            assert time.monotonic() - started < 3, "a store that is down fails fast"
            assert str(raised.value).startswith(
                f"state store postgresql://postgres@127.0.0.1:{private_server.port}/postgres: "
            )
        with pytest.raises(StoreError):
            await store.append("results", [Row("api", 2.0, {"ok": False})])

        private_server.start()
        assert await wait_until_served(store) < 10
        assert await store.get("alerts", "a") == {"v": 1}
        await store.append("results", [Row("api", 3.0, {"ok": True})])
        assert [row.at for row in await store.read("results", "api")] == [1.0, 3.0]
        with pytest.raises(FencedWrite):
            await store.put("alerts", {"a": {}}, epoch=1)
    finally:
        await store.close()


@pytest.mark.slow
async def test_a_crashed_server_keeps_every_acknowledged_write(private_server):
    store = make(private_server.url, f"crash_{uuid.uuid4().hex[:6]}")
    await store.open()
    try:
        for i in range(20):
            await store.append("results", [Row("api", float(i), {"i": i})])
        lease = await store.acquire("member:a", "a", ttl=60)
        private_server.kill()
        with pytest.raises(StoreError):
            await store.read("results")
        private_server.start()
        await wait_until_served(store)
        assert len(await store.read("results", "api")) == 20
        assert (await store.acquire("member:b", "b", ttl=60)).epoch > lease.epoch
        assert (await store.stats())["streams"] == {"results": 20}
    finally:
        await store.close()


@pytest.mark.slow
async def test_a_silent_server_fails_calls_after_the_call_timeout(private_server, monkeypatch):
    monkeypatch.setattr(postgres_module, "CALL_TIMEOUT", 1.0)
    store = make(private_server.url, f"silent_{uuid.uuid4().hex[:6]}")
    await store.open()
    try:
        await store.put("alerts", {"a": {"v": 1}})
        private_server.freeze()
        try:
            started = time.monotonic()
            with pytest.raises(StoreError, match="no answer within 1s"):
                await store.get("alerts", "a")
            assert time.monotonic() - started < 5
        finally:
            private_server.thaw()
        assert await wait_until_served(store) < 10
        assert await store.get("alerts", "a") == {"v": 1}
    finally:
        await store.close()
