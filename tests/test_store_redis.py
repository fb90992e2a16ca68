"""The redis state store's own rules, beyond the contract suite.

The shared local Redis runs without append-only persistence, so everything about
persistence, prefixes sharing a server and restarts runs against a private redis-server
(tests/redis_server.py) started for this module; a few tests use the local one with a
key prefix of their own.
"""

from __future__ import annotations

import logging
import time
import uuid

import anyio
import pytest

from tests.redis_server import (
    LOCAL_REDIS,
    RedisServer,
    RedisUnavailable,
    delete_prefix,
    keys_with_prefix,
    local_redis,
)
from watchkeeper.engine.state.store import FencedWrite, Row, StoreError
from watchkeeper.plugins.stores import redis_store as redis_module
from watchkeeper.plugins.stores.redis import RedisStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def make(url: str, prefix: str = "watchkeeper:", **options) -> RedisStore:
    return RedisStore(RedisStore.Options(url=url, prefix=prefix, **options))


def private(**settings) -> RedisServer:
    """An unstarted private redis-server (use it with `with`), or a skipped test."""
    try:
        return RedisServer(**settings)
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def server():
    """A private redis-server with appendonly yes, for the whole module."""
    with private() as server:
        yield server


@pytest.fixture
def prefix(server):
    name = f"t{uuid.uuid4().hex[:8]}:"
    yield name
    delete_prefix(server.url, name)


@pytest.fixture
def local_prefix():
    try:
        local_redis().close()
    except RedisUnavailable as exc:
        pytest.skip(str(exc))
    name = f"wktest:{uuid.uuid4().hex[:12]}:"
    yield name
    delete_prefix(LOCAL_REDIS, name)


async def fill(store: RedisStore) -> None:
    await store.put("alerts", {"a": {"by": store.prefix}}, epoch=3)
    await store.append("results", [Row("api", 1.0, {"by": store.prefix})])
    await store.insert_once("claims", "backup@1", {"by": store.prefix})
    await store.acquire("member:x", store.prefix, ttl=60)


# -- prefixes -------------------------------------------------------------------------------


async def test_two_deployments_on_one_server_never_meet(server):
    client = server.client()
    client.flushall()
    one, other = make(server.url, "prod:"), make(server.url, "staging:")
    await one.open()
    await other.open()
    try:
        await fill(one)
        await fill(other)
        assert await one.get("alerts", "a") == {"by": "prod:"}
        assert await other.get("alerts", "a") == {"by": "staging:"}
        assert [row.data for row in await other.read("results")] == [{"by": "staging:"}]
        assert (await other.leases("member:"))[0].holder == "staging:"
        assert (await one.stats())["collections"] == {"alerts": 1, "claims": 1}

        # fencing, claims and lease epochs are per deployment too
        await one.put("alerts", {"b": {}}, epoch=50)
        await other.put("alerts", {"b": {}}, epoch=4)  # prod's epoch 50 does not fence it off
        with pytest.raises(FencedWrite):
            await one.put("alerts", {"b": {}}, epoch=4)
        assert await one.insert_once("claims", "backup@2", {})
        assert await other.insert_once("claims", "backup@2", {})

        every_key = sorted(client.keys("*"))
        assert every_key == keys_with_prefix(server.url, "prod:") + keys_with_prefix(
            server.url, "staging:"
        )
        assert all(key.startswith(("prod:", "staging:")) for key in every_key)

        delete_prefix(server.url, "prod:")
        assert await other.get("alerts", "a") == {"by": "staging:"}
        assert await one.get_all("alerts") == {}
    finally:
        await one.close()
        await other.close()
        client.flushall()
        client.close()


async def test_the_key_layout(server, prefix):
    store = make(server.url, prefix)
    await store.open()
    try:
        await store.put("alerts", {"a": {}}, epoch=2)
        await store.put("silences", {"s": {}})
        await store.append("results", [Row("api@prod", 1.0, {}), Row("db", 2.0, {})])
        await store.append("odd:stream", [Row("k", 1.0, {})])
        await store.acquire("member:x", "x", ttl=30)
    finally:
        await store.close()
    keys = [key.removeprefix(prefix) for key in keys_with_prefix(server.url, prefix)]
    assert keys == sorted(
        [
            "collections",
            "doc:alerts",
            "doc:silences",
            "epoch",
            "epoch:alerts",
            "keys:odd:stream",
            "keys:results",
            "lease:data",
            "lease:epoch",
            "lease:expires",
            "lease:holder",
            "meta",
            "rowcount",
            "rows:odd%3Astream:k",
            "rows:results:api@prod",
            "rows:results:db",
        ]
    )


# -- persistence ----------------------------------------------------------------------------


def test_redis_without_appendonly_is_refused_with_the_fix():
    with private(appendonly=False) as server:
        store = make(server.url)
        with pytest.raises(StoreError) as raised:
            anyio.run(store.open)
        text = str(raised.value)
        assert f"redis://127.0.0.1:{server.port}/0 does not persist" in text
        assert "`appendonly yes`" in text
        assert "require_aof: false" in text


def test_redis_without_appendonly_is_a_loud_warning_when_allowed(caplog):
    with private(appendonly=False) as server:
        store = make(server.url, require_aof=False)

        async def main() -> None:
            await store.open()
            await store.put("alerts", {"a": {}})
            await store.close()

        with caplog.at_level(logging.WARNING, logger="watchkeeper.store.redis"):
            anyio.run(main)
    [warning] = [r for r in caplog.records if r.name == "watchkeeper.store.redis"]
    assert warning.levelno == logging.WARNING
    assert "does not persist with an append-only file" in warning.getMessage()
    assert "`appendonly yes`" in warning.getMessage()


async def test_appendonly_yes_opens_quietly(server, prefix, caplog):
    store = make(server.url, prefix)
    with caplog.at_level(logging.WARNING, logger="watchkeeper.store.redis"):
        await store.open()
    await store.close()
    assert not [r for r in caplog.records if r.name == "watchkeeper.store.redis"]


@pytest.mark.parametrize("appendonly", [True, False])
def test_without_config_the_store_reads_info_persistence(appendonly):
    # managed Redis often disables CONFIG; INFO persistence still tells aof_enabled
    with private(appendonly=appendonly, args=("--rename-command", "CONFIG", '""')) as server:
        store = make(server.url)

        async def main() -> None:
            await store.open()
            assert (await store.stats())["aof_enabled"] is True
            await store.close()

        if appendonly:
            anyio.run(main)
        else:
            with pytest.raises(StoreError, match="does not persist"):
                anyio.run(main)


# -- errors and secrets ---------------------------------------------------------------------


def test_passwords_never_show():
    with private(password="s3cret-Pa55") as server:
        wrong = server.url.replace("s3cret-Pa55", "wr0ng-Pa55")
        with pytest.raises(StoreError) as raised:
            anyio.run(make(wrong).open)
        assert "wr0ng-Pa55" not in str(raised.value)
        assert str(raised.value).startswith(f"cannot connect to redis://127.0.0.1:{server.port}/0")

        store = make(server.url)

        async def main() -> None:
            await store.open()
            server.stop()
            with pytest.raises(StoreError) as raised:
                await store.get("alerts", "a")
            assert "s3cret-Pa55" not in str(raised.value)
            await store.close()

        anyio.run(main)


async def test_a_newer_schema_is_refused(server, prefix):
    server.client().hset(f"{prefix}meta", "schema_version", 99)
    with pytest.raises(StoreError, match=r"schema version 99.*upgrade watchkeeper"):
        await make(server.url, prefix).open()


# -- round trips and data -------------------------------------------------------------------


async def test_batches_are_one_round_trip(local_prefix):
    store = make(LOCAL_REDIS, local_prefix, require_aof=False)
    await store.open()
    try:
        await store.put("check_state", {"warm": {}}, epoch=1)  # loads the scripts
        await store.delete("check_state", ["warm"], epoch=1)
        calls = {
            "put": lambda: store.put("check_state", {f"c{i}": {"i": i} for i in range(50)}),
            "put with epoch": lambda: store.put("check_state", {"c1": {}, "c2": {}}, epoch=4),
            "fenced put": lambda: store.put("check_state", {"c1": {}}, epoch=1),
            "append": lambda: store.append("results", [Row(f"c{i}", i, {}) for i in range(50)]),
            "insert_once": lambda: store.insert_once("claims", "k", {}),
            "delete with epoch": lambda: store.delete("check_state", ["c3"], epoch=4),
            "read one key": lambda: store.read("results", "c3"),
            "now": store.now,
        }
        for name, call in calls.items():
            before = store.round_trips
            try:
                await call()
            except FencedWrite:
                assert name == "fenced put"
            assert store.round_trips - before == 1, name
        before = store.round_trips
        assert len(await store.read("results", since=10)) == 40
        assert store.round_trips - before == 2, "the key set, then every key's rows at once"
    finally:
        await store.close()


async def test_identical_rows_are_kept_apart(local_prefix):
    store = make(LOCAL_REDIS, local_prefix, require_aof=False)
    await store.open()
    try:
        row = Row("api", 5.0, {"ok": True})
        await store.append("results", [row, row])
        await store.append("results", [row])
        assert await store.read("results", "api") == [row, row, row]
        assert (await store.stats())["streams"] == {"results": 3}
    finally:
        await store.close()


async def test_trim_in_chunks_of_keys(local_prefix, monkeypatch):
    monkeypatch.setattr(redis_module, "TRIM_KEYS", 2)
    store = make(LOCAL_REDIS, local_prefix, require_aof=False)
    await store.open()
    try:
        await store.append("results", [Row(f"k{i}", float(i), {}) for i in range(7)])
        assert await store.trim("results", 4.5) == 5
        assert sorted(await store.stream_keys("results")) == ["k5", "k6"]
        assert (await store.stats())["streams"] == {"results": 2}
        assert [row.key for row in await store.read("results")] == ["k5", "k6"]
    finally:
        await store.close()


async def test_the_store_clock_is_the_servers(server, prefix):
    store = make(server.url, prefix)
    await store.open()
    try:
        seconds, micros = server.client().time()
        assert abs(await store.now() - (seconds + micros / 1e6)) < 1
        lease = await store.acquire("member:a", "a", ttl=10)
        assert abs(lease.expires_at - (seconds + micros / 1e6 + 10)) < 1
    finally:
        await store.close()


async def test_many_callers_share_a_small_pool(local_prefix):
    store = make(LOCAL_REDIS, local_prefix, require_aof=False, pool_size=2)
    await store.open()
    try:
        async with anyio.create_task_group() as tg:
            for i in range(300):
                tg.start_soon(store.append, "results", [Row("a", float(i), {})])
        assert len(await store.read("results", "a")) == 300
    finally:
        await store.close()


# -- outages --------------------------------------------------------------------------------


async def wait_until_served(store: RedisStore, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while True:
        try:
            await store.ping()
            return time.monotonic() - started
        except StoreError:
            if time.monotonic() - started > timeout:
                raise
            await anyio.sleep(0.05)


@pytest.mark.slow
async def test_a_restarted_server_is_served_without_reopening(server, prefix):
    store = make(server.url, prefix, pool_size=3)
    await store.open()
    try:
        await fill(store)
        await anyio.to_thread.run_sync(server.restart)  # reloads the append-only file
        assert await store.get("alerts", "a") == {"by": prefix}, "no call fails after a restart"

        server.stop()
        for call in (store.ping, lambda: store.get("alerts", "a"), store.now):
            started = time.monotonic()
            with pytest.raises(StoreError) as raised:
                await call()
            assert time.monotonic() - started < 3, "a store that is down fails fast"
            assert str(raised.value).startswith(f"state store redis://127.0.0.1:{server.port}/0: ")
        with pytest.raises(StoreError):
            await store.append("results", [Row("api", 2.0, {})])

        server.start()
        await wait_until_served(store)
        # scripts are gone from the restarted server: they are loaded again on use
        with pytest.raises(FencedWrite):
            await store.put("alerts", {"a": {}}, epoch=2)
        assert [lease.holder for lease in await store.leases()] == [prefix]
        assert len(await store.read("results")) == 1
    finally:
        await store.close()


@pytest.mark.slow
async def test_a_killed_server_keeps_every_acknowledged_write(server, prefix):
    store = make(server.url, prefix)
    await store.open()
    try:
        for i in range(50):
            await store.append("results", [Row("api", float(i), {"i": i})])
            await store.put("check_state", {"api": {"i": i}}, epoch=1)
        server.kill()  # SIGKILL: appendfsync everysec, yet written before each reply
        server.start()
        await wait_until_served(store)
        assert len(await store.read("results", "api")) == 50
        assert await store.get("check_state", "api") == {"i": 49}
    finally:
        await store.close()


@pytest.mark.slow
async def test_a_silent_server_fails_calls_after_the_socket_timeout(server, prefix, monkeypatch):
    monkeypatch.setattr(redis_module, "SOCKET_TIMEOUT", 1.0)
    store = make(server.url, prefix)
    await store.open()
    try:
        await store.put("alerts", {"a": {"v": 1}})
        server.freeze()
        try:
            started = time.monotonic()
            with pytest.raises(StoreError, match="Timeout"):
                await store.get("alerts", "a")
            assert time.monotonic() - started < 5
        finally:
            server.thaw()
        await wait_until_served(store)
        assert await store.get("alerts", "a") == {"v": 1}
    finally:
        await store.close()
