"""The `postgres` state store: shared by replicas; schema created and migrated by the store.

Every call is one SQL statement on a pooled autocommit connection, so one round trip:
a batch of documents or rows travels as arrays (`unnest`), fencing and its all-or-nothing
rule run inside the server (a function that raises, undoing the statement, when a key is
fenced off), and stream row counts are kept by the same statement that appends or trims.
The store's tables live in one schema (`watchkeeper` by default) whose version is
recorded in its `meta` table; missing migrations are applied at open() in one
transaction holding an advisory lock, so replicas starting together do not race.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import select
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.state.store import FencedWrite, Lease, Role, Row, StateStore, StoreError
from watchkeeper.plugins.stores.postgres import PostgresStoreOptions

log = logging.getLogger("watchkeeper.store.postgres")

T = TypeVar("T")

CONNECT_TIMEOUT = 5
"""Seconds libpq waits for a server that does not answer (unless the URL says otherwise)."""
POOL_TIMEOUT = 10.0
"""Seconds a call waits for a pooled connection while the server is reachable."""
DOWN_TIMEOUT = 1.0
"""... and while the last attempt found it unreachable: fail fast, the engine buffers."""
CALL_TIMEOUT = 30.0
"""Seconds a call waits for the server's answer: a silent server (a network partition)
would otherwise hold it until TCP gives up, many minutes later."""
RECONNECT_TIMEOUT = 5.0
"""The pool's reconnection backoff gives up after this; the next call tries at once."""
TRIM_CHUNK = 20_000
"""Rows deleted per statement by `trim`, so pruning a month never holds a long transaction."""
COUNT_SHARDS = 16
"""Row counters per stream: each connection adds to its own, so appends never queue."""
FENCED = "WKF01"
"""SQLSTATE the fencing functions raise; the statement is undone, the keys are in DETAIL."""

# Step N takes a schema from version N-1 to N. `{s}` is the quoted schema name.
MIGRATIONS: list[tuple[str, ...]] = [
    # 1: documents, streams, leases and the store-wide epoch counter.
    (
        "CREATE TABLE {s}.meta (key text PRIMARY KEY, value bigint NOT NULL)",
        "CREATE SEQUENCE {s}.epochs",
        "CREATE TABLE {s}.docs (collection text NOT NULL, key text NOT NULL,"
        " doc json NOT NULL, PRIMARY KEY (collection, key))",
        "CREATE TABLE {s}.rows (stream text NOT NULL, key text NOT NULL,"
        " at double precision NOT NULL, data json NOT NULL)",
        "CREATE INDEX rows_by_key ON {s}.rows (stream, key, at)",
        "CREATE TABLE {s}.leases (name text PRIMARY KEY, holder text NOT NULL,"
        " epoch bigint NOT NULL, expires_at double precision NOT NULL, data json NOT NULL)",
    ),
    # 2: fencing epochs on documents; whole-stream reads and trims by time; row counts
    # per stream kept by the writing statements, so stats never count a big table.
    (
        "ALTER TABLE {s}.docs ADD COLUMN epoch bigint NOT NULL DEFAULT 0",
        "CREATE INDEX rows_by_time ON {s}.rows (stream, at)",
        "CREATE TABLE {s}.stream_rows (stream text NOT NULL, shard integer NOT NULL,"
        " rows bigint NOT NULL, PRIMARY KEY (stream, shard))",
        "INSERT INTO {s}.stream_rows (stream, shard, rows)"
        " SELECT stream, 0, count(*) FROM {s}.rows GROUP BY stream",
        # Write first, then look for keys a greater epoch guards (skipped by the upsert's
        # WHERE, or committed by a racing writer): raising undoes the whole statement.
        """
CREATE FUNCTION {s}.put_docs(c text, ks text[], ds text[], e bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    fenced text[];
BEGIN
    INSERT INTO {s}.docs AS d (collection, key, doc, epoch)
    SELECT c, k, v::json, e FROM unnest(ks, ds) AS t(k, v)
    ON CONFLICT (collection, key) DO UPDATE SET doc = excluded.doc, epoch = excluded.epoch
    WHERE d.epoch <= excluded.epoch;
    SELECT array_agg(key ORDER BY key) INTO fenced FROM {s}.docs
    WHERE collection = c AND key = ANY (ks) AND epoch > e;
    IF fenced IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'WKF01', MESSAGE = 'write fenced off',
            DETAIL = array_to_json(fenced)::text;
    END IF;
END $$""",
        """
CREATE FUNCTION {s}.delete_docs(c text, ks text[], e bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    fenced text[];
BEGIN
    DELETE FROM {s}.docs WHERE collection = c AND key = ANY (ks) AND epoch <= e;
    SELECT array_agg(key ORDER BY key) INTO fenced FROM {s}.docs
    WHERE collection = c AND key = ANY (ks) AND epoch > e;
    IF fenced IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'WKF01', MESSAGE = 'write fenced off',
            DETAIL = array_to_json(fenced)::text;
    END IF;
END $$""",
    ),
]

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_loads = json.loads

_CLOCK = "extract(epoch FROM clock_timestamp())::float8"
_SHARD = f"mod(pg_backend_pid(), {COUNT_SHARDS})"

_SQL = {
    "version": "SELECT value FROM {s}.meta WHERE key = 'schema_version'",
    "put": (
        "INSERT INTO {s}.docs AS d (collection, key, doc)"
        " SELECT %s, k, v::json FROM unnest(%s::text[], %s::text[]) AS t(k, v)"
        " ON CONFLICT (collection, key) DO UPDATE SET doc = excluded.doc"
    ),
    "put_fenced": "SELECT {s}.put_docs(%s, %s::text[], %s::text[], %s)",
    "get": "SELECT doc::text FROM {s}.docs WHERE collection = %s AND key = %s",
    "get_all": "SELECT key, doc::text FROM {s}.docs WHERE collection = %s",
    "delete": "DELETE FROM {s}.docs WHERE collection = %s AND key = ANY (%s::text[])",
    "delete_fenced": "SELECT {s}.delete_docs(%s, %s::text[], %s)",
    "insert_once": (
        "INSERT INTO {s}.docs (collection, key, doc) VALUES (%s, %s, %s::json)"
        " ON CONFLICT (collection, key) DO NOTHING RETURNING true"
    ),
    "append": (
        "WITH added AS ("
        " INSERT INTO {s}.rows (stream, key, at, data)"
        " SELECT %(stream)s, k, a, v::json"
        " FROM unnest(%(keys)s::text[], %(ats)s::float8[], %(data)s::text[]) AS t(k, a, v)"
        " RETURNING 1)"
        " INSERT INTO {s}.stream_rows AS r (stream, shard, rows)"
        f" SELECT %(stream)s, {_SHARD}, count(*) FROM added"
        " ON CONFLICT (stream, shard) DO UPDATE SET rows = r.rows + excluded.rows"
    ),
    "trim": (
        "WITH gone AS ("
        " DELETE FROM {s}.rows WHERE ctid = ANY (ARRAY("
        "  SELECT ctid FROM {s}.rows WHERE stream = %(stream)s AND at < %(before)s"
        "  LIMIT %(limit)s))"
        " RETURNING 1),"
        " counted AS ("
        " INSERT INTO {s}.stream_rows AS r (stream, shard, rows)"
        f" SELECT %(stream)s, {_SHARD}, -count(*) FROM gone"
        " ON CONFLICT (stream, shard) DO UPDATE SET rows = r.rows + excluded.rows)"
        " SELECT count(*) FROM gone"
    ),
    # min() over (stream, key) once per distinct key: a skip-scan of the index instead of
    # a walk over every row of the stream.
    "stream_keys": (
        "WITH RECURSIVE k(key) AS ("
        " SELECT (SELECT min(key) FROM {s}.rows WHERE stream = %(stream)s)"
        " UNION ALL"
        " SELECT (SELECT min(key) FROM {s}.rows WHERE stream = %(stream)s AND key > k.key)"
        " FROM k WHERE k.key IS NOT NULL)"
        " SELECT key FROM k WHERE key IS NOT NULL"
    ),
    # A renewal (same holder, unexpired) keeps its epoch and, without new data, its data;
    # anything else is a new grant with the next number of the store-wide sequence. The
    # upsert's WHERE leaves another holder's unexpired lease alone: no row comes back.
    "acquire": (
        f"WITH clock AS (SELECT {_CLOCK} AS now)"
        " INSERT INTO {s}.leases AS l (name, holder, epoch, expires_at, data)"
        " SELECT %(name)s, %(holder)s, nextval('{s}.epochs'), now + %(ttl)s,"
        "  coalesce(%(data)s::json, '{{}}'::json) FROM clock"
        " ON CONFLICT (name) DO UPDATE SET"
        "  holder = excluded.holder,"
        "  epoch = CASE WHEN l.expires_at > (SELECT now FROM clock) THEN l.epoch"
        "   ELSE excluded.epoch END,"
        "  expires_at = excluded.expires_at,"
        "  data = CASE WHEN l.expires_at > (SELECT now FROM clock) AND %(data)s::json IS NULL"
        "   THEN l.data ELSE excluded.data END"
        " WHERE l.holder = excluded.holder OR l.expires_at <= (SELECT now FROM clock)"
        " RETURNING l.epoch, l.expires_at, l.data::text"
    ),
    "release": "DELETE FROM {s}.leases WHERE name = %s AND holder = %s",
    "leases": (
        "SELECT name, holder, epoch, expires_at, data::text FROM {s}.leases"
        f" WHERE expires_at > {_CLOCK} AND starts_with(name, %s) ORDER BY name"
    ),
    "now": f"SELECT {_CLOCK}",
    "stats": (
        "SELECT current_setting('server_version'),"
        " (SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c"
        "  JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'S')),"
        " (SELECT coalesce(json_object_agg(collection, n ORDER BY collection), '{{}}')"
        "  FROM (SELECT collection, count(*) AS n FROM {s}.docs GROUP BY collection) x),"
        " (SELECT coalesce(json_object_agg(stream, n ORDER BY stream), '{{}}')"
        "  FROM (SELECT stream, sum(rows) AS n FROM {s}.stream_rows GROUP BY stream"
        "   HAVING sum(rows) > 0) x),"
        f" (SELECT count(*) FROM {{s}}.leases WHERE expires_at > {_CLOCK}),"
        " (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %(rows)s::regclass),"
        " (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %(docs)s::regclass)"
    ),
}


class PostgresStore(StateStore):
    type = "postgres"
    Options = PostgresStoreOptions
    shared = True
    schema_version = len(MIGRATIONS)

    def __init__(self, options: Any, *, base_dir: Any = None):
        super().__init__(options, base_dir=base_dir)
        self.role: Role = "daemon"
        self.schema: str = options.schema_
        quoted = _quote(self.schema)
        self._sql = {name: text.format(s=quoted) for name, text in _SQL.items()}
        self._pool: AsyncConnectionPool | None = None
        self._shown, self._password = _describe(options.url.get_secret_value())
        self._down: str | None = None
        self.round_trips = 0
        """Statements sent to the server (each one round trip), for benchmarks and stats."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, *, role: Role = "daemon") -> None:
        if self._pool is not None:
            raise StoreError(f"state store {self._shown} is already open")
        if role not in ("daemon", "client"):
            raise ValueError(f"role must be 'daemon' or 'client', not {role!r}")
        self.role = role
        url = self.options.url.get_secret_value()
        kwargs = self._connect_kwargs(url)
        try:
            conn = await psycopg.AsyncConnection.connect(url, **kwargs)
        except psycopg.Error as exc:
            raise self._error(exc, "cannot connect to") from exc
        try:
            await self._migrate(conn)
        except psycopg.Error as exc:
            raise self._error(exc, "cannot prepare the schema of") from exc
        finally:
            await conn.close()
        size = self.options.pool_size
        pool = AsyncConnectionPool(
            url,
            kwargs=kwargs,
            min_size=size if role == "daemon" else 1,
            max_size=size if role == "daemon" else min(size, 2),
            open=False,
            timeout=POOL_TIMEOUT,
            reconnect_timeout=RECONNECT_TIMEOUT,
            name=f"watchkeeper-{self.schema}",
        )
        await pool.open(wait=False)
        self._pool = pool

    def _connect_kwargs(self, url: str) -> dict[str, Any]:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StoreError(f"invalid postgres url {self._shown}: {self._clean(exc)}") from exc
        kwargs: dict[str, Any] = {"autocommit": True}
        if "application_name" not in params:
            kwargs["application_name"] = "watchkeeper"
        if "connect_timeout" not in params:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT
        return kwargs

    async def _migrate(self, conn: psycopg.AsyncConnection) -> None:
        """Bring the schema to the newest version, in one transaction under a lock."""
        # Checked first without the lock: a client beside busy daemons need not wait.
        if await self._schema_version(conn) == len(MIGRATIONS):
            return
        quoted = _quote(self.schema)
        lock = int.from_bytes(
            hashlib.blake2b(f"watchkeeper-migrate:{self.schema}".encode(), digest_size=8).digest(),
            "big",
            signed=True,
        )
        async with conn.transaction():
            await self._execute(conn, "SELECT pg_advisory_xact_lock(%s)", [lock])
            version = await self._schema_version(conn)  # again: another replica may have
            if version == len(MIGRATIONS):
                return
            if version == 0 and not await self._schema_exists(conn):
                await self._execute(conn, f"CREATE SCHEMA {quoted}")
            for step in MIGRATIONS[version:]:
                for statement in step:
                    await self._execute(conn, statement.format(s=quoted))
            await self._execute(
                conn,
                f"INSERT INTO {quoted}.meta (key, value) VALUES ('schema_version', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [len(MIGRATIONS)],
            )
        log.info(
            "postgres state store: schema version upgraded",
            extra={"schema": self.schema, "from": version, "to": len(MIGRATIONS)},
        )

    async def _schema_exists(self, conn: psycopg.AsyncConnection) -> bool:
        cursor = await self._execute(
            conn, "SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]
        )
        return await cursor.fetchone() is not None

    async def _schema_version(self, conn: psycopg.AsyncConnection) -> int:
        cursor = await self._execute(
            conn,
            "SELECT to_regclass(%s) IS NOT NULL, EXISTS (SELECT 1 FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p'))",
            [f"{_quote(self.schema)}.meta", self.schema],
        )
        has_meta, has_tables = await cursor.fetchone()
        if has_meta:
            cursor = await self._execute(conn, self._sql["version"])
            row = await cursor.fetchone()
            version = int(row[0]) if row else 0
        elif has_tables:
            raise StoreError(
                f"schema {self.schema!r} in {self._shown} holds tables that are not a "
                "watchkeeper state store; give the store another `schema`"
            )
        else:
            version = 0
        if version > len(MIGRATIONS):
            raise StoreError(
                f"schema {self.schema!r} in {self._shown} has schema version {version}; this "
                f"watchkeeper knows versions up to {len(MIGRATIONS)}: upgrade watchkeeper"
            )
        return version

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with anyio.CancelScope(shield=True):
            await pool.close(timeout=5.0)

    async def ping(self) -> None:
        await self._run(lambda conn: self._fetch(conn, "SELECT 1"))

    async def now(self) -> float:
        rows = await self._run(lambda conn: self._fetch(conn, self._sql["now"]))
        return float(rows[0][0])

    # -- documents ---------------------------------------------------------------------------

    async def put(
        self, collection: str, docs: dict[str, dict[str, Any]], *, epoch: int | None = None
    ) -> None:
        if not docs:
            self._check_open()
            return
        # Sorted: two batches sharing keys lock them in the same order, never a deadlock.
        keys = sorted(docs)
        texts = [_dumps(docs[key]) for key in keys]
        if epoch is None:
            params: list[Any] = [collection, keys, texts]
            await self._run(lambda conn: self._execute(conn, self._sql["put"], params))
        else:
            params = [collection, keys, texts, epoch]
            await self._run_fenced(collection, self._sql["put_fenced"], params)

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        rows = await self._run(lambda conn: self._fetch(conn, self._sql["get"], [collection, key]))
        return _loads(rows[0][0]) if rows else None

    async def get_all(self, collection: str) -> dict[str, dict[str, Any]]:
        rows = await self._run(lambda conn: self._fetch(conn, self._sql["get_all"], [collection]))
        return {key: _loads(text) for key, text in rows}

    async def delete(self, collection: str, keys: list[str], *, epoch: int | None = None) -> None:
        if not keys:
            self._check_open()
            return
        keys = sorted(set(keys))
        if epoch is None:
            params: list[Any] = [collection, keys]
            await self._run(lambda conn: self._execute(conn, self._sql["delete"], params))
        else:
            await self._run_fenced(
                collection, self._sql["delete_fenced"], [collection, keys, epoch]
            )

    async def insert_once(self, collection: str, key: str, doc: dict[str, Any]) -> bool:
        params = [collection, key, _dumps(doc)]
        rows = await self._run(lambda conn: self._fetch(conn, self._sql["insert_once"], params))
        return bool(rows)

    # -- streams -----------------------------------------------------------------------------

    async def append(self, stream: str, rows: list[Row]) -> None:
        if not rows:
            self._check_open()
            return
        keys, ats, texts = [], [], []
        for row in rows:
            at = float(row.at)
            if not math.isfinite(at):
                raise ValueError(f"row time must be a finite number, not {row.at!r}")
            keys.append(row.key)
            ats.append(at)
            texts.append(_dumps(row.data))
        params = {"stream": stream, "keys": keys, "ats": ats, "data": texts}
        await self._run(lambda conn: self._execute(conn, self._sql["append"], params))

    async def read(
        self,
        stream: str,
        key: str | None = None,
        *,
        since: float = 0.0,
        until: float | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Row]:
        sql = [f"SELECT key, at, data::text FROM {_quote(self.schema)}.rows WHERE stream = %s"]
        params: list[Any] = [stream]
        if key is not None:
            sql.append("AND key = %s")
            params.append(key)
        sql.append("AND at >= %s")
        params.append(float(since))
        if until is not None:
            sql.append("AND at < %s")
            params.append(float(until))
        sql.append("ORDER BY at DESC" if newest_first else "ORDER BY at")
        if limit is not None:
            sql.append("LIMIT %s")
            params.append(max(limit, 0))
        query = " ".join(sql)
        found = await self._run(lambda conn: self._fetch(conn, query, params))
        return [Row(k, at, _loads(text)) for k, at, text in found]

    async def trim(self, stream: str, before: float) -> int:
        params = {"stream": stream, "before": float(before), "limit": TRIM_CHUNK}
        total = 0
        while True:
            rows = await self._run(lambda conn: self._fetch(conn, self._sql["trim"], params))
            deleted = int(rows[0][0])
            total += deleted
            if deleted < TRIM_CHUNK:
                return total

    async def stream_keys(self, stream: str) -> list[str]:
        params = {"stream": stream}
        rows = await self._run(lambda conn: self._fetch(conn, self._sql["stream_keys"], params))
        return [key for (key,) in rows]

    # -- leases ------------------------------------------------------------------------------

    async def acquire(
        self, name: str, holder: str, ttl: float, data: dict[str, Any] | None = None
    ) -> Lease | None:
        params = {
            "name": name,
            "holder": holder,
            "ttl": float(ttl),
            "data": None if data is None else _dumps(data),
        }
        rows = await self._run(lambda conn: self._fetch(conn, self._sql["acquire"], params))
        if not rows:
            return None
        epoch, expires_at, text = rows[0]
        return Lease(name, holder, int(epoch), float(expires_at), _loads(text))

    async def release(self, name: str, holder: str) -> None:
        await self._run(lambda conn: self._execute(conn, self._sql["release"], [name, holder]))

    async def leases(self, prefix: str = "") -> list[Lease]:
        rows = await self._run(lambda conn: self._fetch(conn, self._sql["leases"], [prefix]))
        return [Lease(n, h, int(e), float(x), _loads(d)) for n, h, e, x, d in rows]

    # -- facts -------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        pool = self._check_open()
        quoted = _quote(self.schema)
        params = {"schema": self.schema, "rows": f"{quoted}.rows", "docs": f"{quoted}.docs"}
        rows = await self._run(lambda conn: self._fetch(conn, self._sql["stats"], params))
        version, size, collections, streams, leases, rows_estimate, docs_estimate = rows[0]
        pool_stats = pool.get_stats()
        return {
            "backend": self.type,
            "version": str(version),
            "schema_version": self.schema_version,
            "size_bytes": None if size is None else int(size),
            "collections": {name: int(n) for name, n in collections.items()},
            "streams": {name: int(n) for name, n in streams.items()},
            "leases": int(leases),
            "server": self._shown,
            "schema": self.schema,
            "role": self.role,
            "rows_estimate": rows_estimate,
            "docs_estimate": docs_estimate,
            "pool_size": pool_stats.get("pool_size", 0),
            "pool_available": pool_stats.get("pool_available", 0),
            "round_trips": self.round_trips,
        }

    # -- plumbing ----------------------------------------------------------------------------

    def _check_open(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise StoreError(f"state store {self._shown} is not open")
        return self._pool

    async def _execute(
        self, conn: psycopg.AsyncConnection, query: str, params: Any = None
    ) -> psycopg.AsyncCursor:
        self.round_trips += 1
        return await conn.execute(query, params)

    async def _fetch(
        self, conn: psycopg.AsyncConnection, query: str, params: Any = None
    ) -> list[tuple[Any, ...]]:
        cursor = await self._execute(conn, query, params)
        return await cursor.fetchall()

    async def _run_fenced(self, collection: str, query: str, params: list[Any]) -> None:
        try:
            await self._run(lambda conn: self._execute(conn, query, params))
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, psycopg.Error) and cause.sqlstate == FENCED:
                detail = cause.diag.message_detail or "[]"
                raise FencedWrite(collection, _loads(detail)) from None
            raise

    async def _run(self, op: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """Run `op` on a pooled connection; psycopg's and the pool's errors become StoreError."""
        pool = self._check_open()
        try:
            conn = await self._connection(pool)
            try:
                with anyio.fail_after(CALL_TIMEOUT):
                    result = await op(conn)
            finally:
                with anyio.CancelScope(shield=True):
                    await pool.putconn(conn)
        except TimeoutError as exc:
            self._down = "no answer"
            raise StoreError(
                f"state store {self._shown}: no answer within {CALL_TIMEOUT:.0f}s"
            ) from exc
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            if isinstance(exc, PoolClosed) or self._pool is None:
                raise StoreError(f"state store {self._shown} is not open") from exc
            if _is_outage(exc):
                self._down = str(exc)
            raise self._error(exc) from exc
        self._down = None
        return result

    async def _connection(self, pool: AsyncConnectionPool) -> psycopg.AsyncConnection:
        """Take a pooled connection that the server has not closed meanwhile.

        After a server restart the idle connections are dead; finding that out by using
        one would fail a call that a fresh connection serves, so the socket is looked at
        first (no round trip) and dead ones go back to the pool to be replaced.
        """
        timeout = DOWN_TIMEOUT if self._down else POOL_TIMEOUT
        deadline = anyio.current_time() + timeout
        while True:
            conn = await pool.getconn(timeout=max(deadline - anyio.current_time(), 0.01))
            if _alive(conn):
                return conn
            with anyio.CancelScope(shield=True):
                await conn.close()
                await pool.putconn(conn)  # closed: the pool drops it and connects anew
            # The server went away: a restarted one answers the pool's reconnection at
            # once; one that is still down should fail this call fast, not in 10s.
            deadline = min(deadline, anyio.current_time() + DOWN_TIMEOUT)

    def _clean(self, exc: BaseException) -> str:
        """One line of a psycopg error, never carrying the password."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = lines[0] if lines else type(exc).__name__
        text = " ".join(text.removeprefix("connection failed: ").replace("FATAL:", "").split())
        if self._password:
            text = text.replace(self._password, MASK)
        return text

    def _error(self, exc: BaseException, doing: str = "state store") -> StoreError:
        return StoreError(f"{doing} {self._shown}: {self._clean(exc)}")


def _alive(conn: psycopg.AsyncConnection) -> bool:
    """Return whether an idle pooled connection still works, without a round trip."""
    pgconn = conn.pgconn
    if pgconn.status != ConnStatus.OK or pgconn.transaction_status != TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
        if readable:  # an idle connection only hears from a server that is ending it
            pgconn.consume_input()
            readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return False
    return pgconn.status == ConnStatus.OK and not readable


def _is_outage(exc: BaseException) -> bool:
    """Return whether an error says the server cannot be reached (not a refused statement)."""
    if isinstance(exc, PoolTimeout | psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.OperationalError):
        # no SQLSTATE: libpq lost the connection; 08: connection exceptions; 57P: shutdown
        state = exc.sqlstate
        return state is None or state.startswith(("08", "57P"))
    return False


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _describe(url: str) -> tuple[str, str | None]:
    """Return (`postgresql://user@host:port/db` for messages, the password to mask)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://(invalid url)", None
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = params.get("port") or 5432
    user = params.get("user")
    db = params.get("dbname") or user or ""
    shown = f"postgresql://{str(user) + '@' if user else ''}{host}:{port}/{db}"
    password = params.get("password")
    return shown, str(password) if password else None
