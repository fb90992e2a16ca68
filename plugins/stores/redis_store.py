"""The `redis` state store: shared by replicas; needs append-only persistence.

Every key starts with the deployment's prefix (default `watchkeeper:`), so deployments
sharing a server never meet. Key layout, with P the prefix:

    P meta                  hash: schema_version
    P collections           set of collection names (for stats)
    P doc:<collection>      hash: key -> document JSON
    P epoch:<collection>    hash: key -> fencing epoch (only for documents that have one)
    P rows:<stream>:<key>   sorted set: score = row time, member = 24-char unique id + JSON
    P keys:<stream>         set of keys that have rows in the stream
    P rowcount              hash: stream -> rows
    P lease:holder|epoch|expires|data   hashes: lease name -> field
    P epoch                 the store-wide epoch counter (INCR)

Each call is one round trip: a MULTI/EXEC pipeline for plain batches, one Lua script
(EVALSHA) where a decision must be taken atomically on the server (fenced writes, trims,
leases timed by the server's clock). Reading every key of a stream takes two: the key set,
then one pipelined range read per key.

The calls live by what they touch: `redis_documents.py`, `redis_rows.py` and
`redis_leases.py`; the Lua scripts and the JSON form of values are in `redis_wire.py`.
This module opens and closes the connection, trims streams and reports stats.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.state.store import Role, StateStore, StoreError
from watchkeeper.plugins.stores.redis import RedisStoreOptions
from watchkeeper.plugins.stores.redis_documents import RedisDocuments
from watchkeeper.plugins.stores.redis_leases import RedisLeases
from watchkeeper.plugins.stores.redis_rows import RedisRows
from watchkeeper.plugins.stores.redis_wire import (
    _ACQUIRE,
    _DELETE_FENCED,
    _LEASES,
    _PUT_FENCED,
    _RELEASE,
    _TRIM,
)

log = logging.getLogger("watchkeeper.store.redis")

T = TypeVar("T")

SCHEMA_VERSION = 1
CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a server that does not answer a connection attempt."""
SOCKET_TIMEOUT = 30.0
"""Seconds to wait for a reply (a trim of a huge stream is the slowest call)."""
POOL_TIMEOUT = 10.0
"""Seconds a call waits for one of the pool's connections."""
TRIM_KEYS = 200
"""Keys trimmed per script call, so one call never holds the server for long."""


class RedisStore(RedisDocuments, RedisRows, RedisLeases, StateStore):
    type = "redis"
    Options = RedisStoreOptions
    shared = True
    schema_version = SCHEMA_VERSION

    def __init__(self, options: Any, *, base_dir: Any = None):
        super().__init__(options, base_dir=base_dir)
        self.role: Role = "daemon"
        self.prefix: str = options.prefix
        self._client: aioredis.Redis | None = None
        self._shown, self._password = _describe(options.url.get_secret_value())
        self._scripts: dict[str, Any] = {}
        # Row ids: nanoseconds since the epoch (kept increasing) and this object's tag,
        # so two rows never share a member, here or in another daemon.
        self._tag = os.urandom(4).hex()
        self._last_uid = 0
        self.round_trips = 0
        """Requests sent to the server (a pipeline or a script is one), for benchmarks."""

    # -- keys ---------------------------------------------------------------------------------

    def _doc_key(self, collection: str) -> str:
        return f"{self.prefix}doc:{collection}"

    def _epoch_key(self, collection: str) -> str:
        return f"{self.prefix}epoch:{collection}"

    def _rows_key(self, stream: str, key: str) -> str:
        # a ':' in a stream name is escaped so (stream, key) pairs never share a row set
        escaped = stream.replace("%", "%25").replace(":", "%3A")
        return f"{self.prefix}rows:{escaped}:{key}"

    def _keys_key(self, stream: str) -> str:
        return f"{self.prefix}keys:{stream}"

    def _lease_keys(self) -> list[str]:
        p = self.prefix
        return [f"{p}lease:holder", f"{p}lease:epoch", f"{p}lease:expires", f"{p}lease:data"]

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, *, role: Role = "daemon") -> None:
        if self._client is not None:
            raise StoreError(f"state store {self._shown} is already open")
        if role not in ("daemon", "client"):
            raise ValueError(f"role must be 'daemon' or 'client', not {role!r}")
        self.role = role
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                self.options.url.get_secret_value(),
                max_connections=self.options.pool_size,
                timeout=POOL_TIMEOUT,
                decode_responses=True,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                # No retries: a write whose reply was lost may have been applied, and
                # sending it again would append its rows twice. Dead idle connections
                # are replaced by the pool before use, so a restarted server is no error.
                retry=Retry(NoBackoff(), 0),
                # RESP2 on every redis-py version; under RESP3, redis-py 8 switches off
                # its check for connections the server closed while they sat idle.
                protocol=2,
            )
        except (ValueError, RedisError) as exc:
            raise StoreError(f"invalid redis url {self._shown}: {self._clean(exc)}") from exc
        client = aioredis.Redis(connection_pool=pool)
        try:
            await self._prepare(client)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await client.aclose(close_connection_pool=True)
            raise
        self._scripts = {
            name: client.register_script(text)
            for name, text in {
                "put_fenced": _PUT_FENCED,
                "delete_fenced": _DELETE_FENCED,
                "trim": _TRIM,
                "acquire": _ACQUIRE,
                "release": _RELEASE,
                "leases": _LEASES,
            }.items()
        }
        self._client = client

    async def _prepare(self, client: aioredis.Redis) -> None:
        """Check the schema version and the server's persistence."""
        meta = f"{self.prefix}meta"
        try:
            self.round_trips += 1
            async with client.pipeline(transaction=True) as pipe:
                pipe.hsetnx(meta, "schema_version", SCHEMA_VERSION)
                pipe.hget(meta, "schema_version")
                _, version = await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"cannot connect to {self._shown}: {self._clean(exc)}") from exc
        if int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"keys {self.prefix}* in {self._shown} have schema version {version}; this "
                f"watchkeeper knows versions up to {SCHEMA_VERSION}: upgrade watchkeeper"
            )
        aof = await self._appendonly(client)
        if aof:
            return
        if aof is None:
            log.warning(
                f"cannot tell whether the redis state store {self._shown} persists with "
                "an append-only file (CONFIG and INFO are refused); without `appendonly "
                "yes` a restart of Redis forgets alerts, acknowledgements and the outbox"
            )
            return
        problem = (
            f"the redis state store {self._shown} does not persist with an append-only "
            "file (appendonly no): a restart of Redis would forget alerts, "
            "acknowledgements and the outbox. Enable it with `appendonly yes` in "
            "redis.conf (at once: `redis-cli CONFIG SET appendonly yes` and "
            "`redis-cli CONFIG REWRITE`)"
        )
        if self.options.require_aof:
            raise StoreError(f"{problem}, or set state.require_aof: false to run without it")
        log.warning(f"{problem}; running anyway because state.require_aof is false")

    async def _appendonly(self, client: aioredis.Redis) -> bool | None:
        """Return whether the server writes an append-only file; None when it will not say."""
        try:
            self.round_trips += 1
            setting = (await client.config_get("appendonly")).get("appendonly")
            if setting is not None:
                return setting == "yes"
        except ResponseError:  # CONFIG disabled or renamed (managed Redis)
            pass
        except RedisError as exc:
            raise StoreError(f"cannot connect to {self._shown}: {self._clean(exc)}") from exc
        try:
            self.round_trips += 1
            info = await client.info("persistence")
        except ResponseError:
            return None
        except RedisError as exc:
            raise StoreError(f"cannot connect to {self._shown}: {self._clean(exc)}") from exc
        if "aof_enabled" not in info:
            return None
        return bool(int(info["aof_enabled"]))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await client.aclose(close_connection_pool=True)
            except RedisError:
                pass

    async def ping(self) -> None:
        await self._run(lambda client: client.ping())

    async def now(self) -> float:
        seconds, micros = await self._run(lambda client: client.time())
        return seconds + micros / 1_000_000

    # -- housekeeping ------------------------------------------------------------------------

    async def trim(self, stream: str, before: float) -> int:
        keys = await self._run(lambda client: client.smembers(self._keys_key(stream)))
        bound = f"({float(before)!r}"
        fixed = [self._keys_key(stream), f"{self.prefix}rowcount"]
        total = 0
        names = sorted(keys)
        for i in range(0, len(names), TRIM_KEYS):
            chunk = names[i : i + TRIM_KEYS]
            sets = [self._rows_key(stream, name) for name in chunk]
            total += int(await self._script("trim", fixed + sets, [stream, bound, *chunk]))
        return total

    # -- facts -------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        async def stats(client: aioredis.Redis) -> dict[str, Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.smembers(f"{self.prefix}collections")
                pipe.hgetall(f"{self.prefix}rowcount")
                pipe.time()
                pipe.hvals(self._lease_keys()[2])
                pipe.info("server")
                pipe.info("memory")
                pipe.info("persistence")
                (
                    collections,
                    counts,
                    clock,
                    expiries,
                    server,
                    memory,
                    persistence,
                ) = await pipe.execute()
            names = sorted(collections)
            sizes: list[int] = []
            if names:
                self.round_trips += 1
                async with client.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.hlen(self._doc_key(name))
                    sizes = await pipe.execute()
            now = clock[0] + clock[1] / 1_000_000
            return {
                "collections": {n: int(s) for n, s in zip(names, sizes, strict=True) if s},
                "streams": {n: int(c) for n, c in sorted(counts.items()) if int(c) > 0},
                "leases": sum(1 for expires in expiries if float(expires) > now),
                "version": str(server.get("redis_version", "")),
                "used_memory": memory.get("used_memory"),
                "aof_enabled": bool(int(persistence.get("aof_enabled", 0))),
            }

        figures = await self._run(stats)
        return {
            "backend": self.type,
            "version": figures["version"],
            "schema_version": self.schema_version,
            "size_bytes": None,  # Redis cannot tell one prefix's memory without a full scan
            "collections": figures["collections"],
            "streams": figures["streams"],
            "leases": figures["leases"],
            "server": self._shown,
            "prefix": self.prefix,
            "role": self.role,
            "server_used_memory": figures["used_memory"],
            "aof_enabled": figures["aof_enabled"],
            "round_trips": self.round_trips,
        }

    # -- plumbing ----------------------------------------------------------------------------

    def _check_open(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreError(f"state store {self._shown} is not open")
        return self._client

    async def _run(self, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run `op` with the client; redis-py's errors become StoreError."""
        client = self._check_open()
        self.round_trips += 1
        try:
            return await op(client)
        except RedisError as exc:
            if self._client is None:
                raise StoreError(f"state store {self._shown} is not open") from exc
            raise StoreError(f"state store {self._shown}: {self._clean(exc)}") from exc

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        self._check_open()
        script = self._scripts[name]
        return await self._run(lambda client: script(keys=keys, args=args))

    def _clean(self, exc: BaseException) -> str:
        text = " ".join((str(exc) or type(exc).__name__).split())
        if self._password:
            text = text.replace(self._password, MASK)
        return text


def _describe(url: str) -> tuple[str, str | None]:
    """Return (the URL for messages, without credentials; the password, if any)."""
    try:
        parts = urlsplit(url)
        password = parts.password
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return "redis://(invalid url)", None
    if parts.scheme == "unix":
        return f"unix://{parts.path}", password
    host = f"[{host}]" if ":" in host else host
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}:{port}{parts.path or ''}", password
