"""The `sqlite` state store: embedded, the default; one daemon per file.

Every write goes to one writer thread that owns the only writing connection. It takes
whatever operations are waiting, runs them in one transaction and commits once, so a
thousand `append` calls arriving together cost one commit, not a thousand. Reads run on a
few read-only connections in worker threads; in WAL mode they never wait for the writer.
The event loop only serialises JSON and waits on futures.

A daemon holds an exclusive `flock` on `<path>.lock` for the store's lifetime, so a
second daemon on the same file is refused; CLI commands open the store as clients and
take no lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.state.store import FencedWrite, Lease, Role, Row, StateStore, StoreError
from watchkeeper.schema.daemon import StoreOptions

# sqlite3, anyio and the queues are imported where the store opens and runs:
# `watchkeeper validate` imports this module for its options and opens nothing
if TYPE_CHECKING:
    import asyncio
    import concurrent.futures
    import queue
    import sqlite3

    import anyio

log = logging.getLogger("watchkeeper.store.sqlite")

BUSY_TIMEOUT = 10.0
"""Seconds a connection waits for another process's transaction (a CLI client's write)."""
BATCH_MAX = 1000
"""Operations per transaction at most: bounds how long one commit holds the file."""
TRIM_CHUNK = 20_000
"""Rows deleted per transaction by `trim`, so pruning a month never stalls other writes."""
READERS = 4
"""Read connections (and worker threads) used at once."""

MIGRATIONS: list[tuple[str, ...]] = [
    # 1: documents, streams, leases and the store-wide epoch counter.
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
        "INSERT INTO meta (key, value) VALUES ('epoch', 0)",
        "CREATE TABLE docs (collection TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,"
        " PRIMARY KEY (collection, key)) WITHOUT ROWID",
        "CREATE TABLE rows (id INTEGER PRIMARY KEY, stream TEXT NOT NULL, key TEXT NOT NULL,"
        " at REAL NOT NULL, data TEXT NOT NULL)",
        "CREATE INDEX rows_by_key ON rows (stream, key, at)",
        "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL,"
        " epoch INTEGER NOT NULL, expires_at REAL NOT NULL, data TEXT NOT NULL) WITHOUT ROWID",
    ),
    # 2: fencing epochs on documents; whole-stream reads and trims by time; row counts
    # per stream kept by the writer, so /api/status does not count millions of rows.
    (
        "ALTER TABLE docs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX rows_by_time ON rows (stream, at)",
        "CREATE TABLE streams (stream TEXT PRIMARY KEY, rows INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO streams (stream, rows) SELECT stream, count(*) FROM rows GROUP BY stream",
    ),
]
"""Schema steps by version: step N takes a database from version N-1 to N (0 = empty)."""

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_loads = json.loads

_UPSERT_DOC = (
    "INSERT INTO docs (collection, key, data, epoch) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (collection, key) DO UPDATE"
    " SET data = excluded.data, epoch = max(docs.epoch, excluded.epoch)"
)
_FENCED_KEYS = (
    "SELECT key FROM docs WHERE collection = ? AND epoch > ?"
    " AND key IN (SELECT value FROM json_each(?))"
)
_COUNT_ROWS = (
    "INSERT INTO streams (stream, rows) VALUES (?, ?)"
    " ON CONFLICT (stream) DO UPDATE SET rows = rows + excluded.rows"
)
# min() over (stream, key) once per distinct key: a skip-scan of the index instead of a
# walk over every row of the stream.
_STREAM_KEYS = """
WITH RECURSIVE k(key) AS (
    SELECT (SELECT min(key) FROM rows WHERE stream = ?1)
    UNION ALL
    SELECT (SELECT min(key) FROM rows WHERE stream = ?1 AND key > k.key)
    FROM k WHERE k.key IS NOT NULL
)
SELECT key FROM k WHERE key IS NOT NULL
"""


class SqliteOptions(StoreOptions):
    """Keep state in a SQLite file next to monitor.yaml."""

    path: str = Field(
        ".watchkeeper/state.db", description="Database file; relative to monitor.yaml's folder."
    )


class SqliteStore(StateStore):
    type = "sqlite"
    Options = SqliteOptions
    schema_version = len(MIGRATIONS)

    def __init__(self, options: Any, *, base_dir: Any = None):
        super().__init__(options, base_dir=base_dir)
        self.role: Role = "daemon"
        self._writer: _Writer | None = None
        self._lock_fd: int | None = None
        self._idle_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._read_limiter: anyio.CapacityLimiter | None = None

    @property
    def path(self) -> Path:
        """The database file: `options.path`, relative to the config folder."""
        path = Path(self.options.path).expanduser()
        if not path.is_absolute():
            path = Path(self.base_dir or ".") / path
        return path.absolute()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, *, role: Role = "daemon") -> None:
        if self._writer is not None:
            raise StoreError(f"state store {self.path} is already open")
        if role not in ("daemon", "client"):
            raise ValueError(f"role must be 'daemon' or 'client', not {role!r}")
        import anyio

        self.role = role
        self._lock_fd, conn = await anyio.to_thread.run_sync(self._prepare, role)
        self._read_limiter = anyio.CapacityLimiter(READERS)
        self._writer = _Writer(conn, self.path)

    def _prepare(self, role: Role) -> tuple[int | None, sqlite3.Connection]:
        import sqlite3

        path = self.path
        try:
            # the state holds alert history, notices and the backup catalog: a folder and
            # file made here are the owner's alone, whatever the umask (SQLite gives its
            # -wal and -shm files the database file's mode)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            raise StoreError(f"cannot create state file {path}: {exc}") from exc
        lock_fd = _take_lock(path) if role == "daemon" else None
        try:
            conn = _connect(path)
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    log.warning("state file %s: WAL mode unavailable, using %s", path, mode)
                conn.execute("PRAGMA journal_size_limit = 67108864")
                _migrate(conn, path)
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            _release_lock(lock_fd)
            raise StoreError(f"cannot open state file {path}: {exc}") from exc
        except BaseException:
            _release_lock(lock_fd)
            raise
        return lock_fd, conn

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        import anyio

        with anyio.CancelScope(shield=True):
            writer.stop()
            await anyio.to_thread.run_sync(writer.join)
            with self._readers_lock:  # readers busy now close themselves when done
                for conn in self._idle_readers:
                    conn.close()
                self._idle_readers.clear()
            _release_lock(self._lock_fd)
            self._lock_fd = None

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def now(self) -> float:
        self._check_open()
        return time.time()

    # -- documents ---------------------------------------------------------------------------

    async def put(
        self, collection: str, docs: dict[str, dict[str, Any]], *, epoch: int | None = None
    ) -> None:
        if not docs:
            self._check_open()
            return
        values = [(collection, key, _dumps(doc), epoch or 0) for key, doc in docs.items()]
        keys = _dumps(list(docs)) if epoch is not None else None

        def put(conn: sqlite3.Connection) -> None:
            if keys is not None:
                _fence(conn, collection, keys, epoch)
            conn.executemany(_UPSERT_DOC, values)

        await self._write(put)

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        def get(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT data FROM docs WHERE collection = ? AND key = ?", (collection, key)
            ).fetchone()
            return None if row is None else _loads(row[0])

        return await self._read(get)

    async def get_all(self, collection: str) -> dict[str, dict[str, Any]]:
        def get_all(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            rows = conn.execute("SELECT key, data FROM docs WHERE collection = ?", (collection,))
            return {key: _loads(data) for key, data in rows}

        return await self._read(get_all)

    async def delete(self, collection: str, keys: list[str], *, epoch: int | None = None) -> None:
        if not keys:
            self._check_open()
            return
        keys_json = _dumps(list(keys))

        def delete(conn: sqlite3.Connection) -> None:
            if epoch is not None:
                _fence(conn, collection, keys_json, epoch)
            conn.execute(
                "DELETE FROM docs WHERE collection = ? AND key IN (SELECT value FROM json_each(?))",
                (collection, keys_json),
            )

        await self._write(delete)

    async def insert_once(self, collection: str, key: str, doc: dict[str, Any]) -> bool:
        data = _dumps(doc)

        def insert_once(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO docs (collection, key, data, epoch) VALUES (?, ?, ?, 0)"
                " ON CONFLICT (collection, key) DO NOTHING",
                (collection, key, data),
            )
            return cursor.rowcount == 1

        return await self._write(insert_once)

    # -- streams -----------------------------------------------------------------------------

    async def append(self, stream: str, rows: list[Row]) -> None:
        if not rows:
            self._check_open()
            return
        values = []
        for row in rows:
            at = float(row.at)
            if not math.isfinite(at):
                raise ValueError(f"row time must be a finite number, not {row.at!r}")
            values.append((stream, row.key, at, _dumps(row.data)))

        added = self._check_open().rows_added

        def append(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT INTO rows (stream, key, at, data) VALUES (?, ?, ?, ?)", values)
            added[stream] += len(values)

        await self._write(append)

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
        sql = ["SELECT key, at, data FROM rows WHERE stream = ?"]
        params: list[Any] = [stream]
        if key is not None:
            sql.append("AND key = ?")
            params.append(key)
        sql.append("AND at >= ?")
        params.append(since)
        if until is not None:
            sql.append("AND at < ?")
            params.append(until)
        sql.append("ORDER BY at DESC, id DESC" if newest_first else "ORDER BY at, id")
        if limit is not None:
            sql.append("LIMIT ?")
            params.append(max(limit, 0))
        query = " ".join(sql)

        def read(conn: sqlite3.Connection) -> list[Row]:
            return [Row(k, at, _loads(data)) for k, at, data in conn.execute(query, params)]

        return await self._read(read)

    async def trim(self, stream: str, before: float) -> int:
        added = self._check_open().rows_added

        def trim_chunk(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(
                "DELETE FROM rows WHERE id IN"
                " (SELECT id FROM rows WHERE stream = ? AND at < ? LIMIT ?)",
                (stream, before, TRIM_CHUNK),
            ).rowcount
            added[stream] -= deleted
            return deleted

        total = 0
        while True:
            deleted = await self._write(trim_chunk)
            total += deleted
            if deleted < TRIM_CHUNK:
                return total

    async def stream_keys(self, stream: str) -> list[str]:
        return await self._read(
            lambda conn: [key for (key,) in conn.execute(_STREAM_KEYS, (stream,))]
        )

    # -- leases ------------------------------------------------------------------------------

    async def acquire(
        self, name: str, holder: str, ttl: float, data: dict[str, Any] | None = None
    ) -> Lease | None:
        new_data = None if data is None else _dumps(data)

        def acquire(conn: sqlite3.Connection) -> Lease | None:
            now = time.time()
            held = conn.execute(
                "SELECT holder, epoch, expires_at, data FROM leases WHERE name = ?", (name,)
            ).fetchone()
            expires_at = now + ttl
            if held is not None and held[2] > now:
                if held[0] != holder:
                    return None
                epoch = held[1]
                text = held[3] if new_data is None else new_data
                conn.execute(
                    "UPDATE leases SET expires_at = ?, data = ? WHERE name = ?",
                    (expires_at, text, name),
                )
            else:
                (epoch,) = conn.execute(
                    "UPDATE meta SET value = value + 1 WHERE key = 'epoch' RETURNING value"
                ).fetchone()
                text = "{}" if new_data is None else new_data
                conn.execute(
                    "INSERT OR REPLACE INTO leases (name, holder, epoch, expires_at, data)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, holder, epoch, expires_at, text),
                )
            return Lease(name, holder, epoch, expires_at, _loads(text))

        return await self._write(acquire)

    async def release(self, name: str, holder: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder)
            )
        )

    async def leases(self, prefix: str = "") -> list[Lease]:
        def leases(conn: sqlite3.Connection) -> list[Lease]:
            rows = conn.execute(
                "SELECT name, holder, epoch, expires_at, data FROM leases"
                " WHERE expires_at > ? AND substr(name, 1, ?) = ? ORDER BY name",
                (time.time(), len(prefix), prefix),
            )
            return [Lease(n, h, e, x, _loads(d)) for n, h, e, x, d in rows]

        return await self._read(leases)

    # -- facts -------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        writer = self._check_open()
        path = self.path

        def stats(conn: sqlite3.Connection) -> dict[str, Any]:
            collections = conn.execute(
                "SELECT collection, count(*) FROM docs GROUP BY collection ORDER BY collection"
            )
            streams = conn.execute(
                "SELECT stream, rows FROM streams WHERE rows > 0 ORDER BY stream"
            )
            (leases,) = conn.execute(
                "SELECT count(*) FROM leases WHERE expires_at > ?", (time.time(),)
            ).fetchone()
            (journal_mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            return {
                "collections": dict(collections.fetchall()),
                "streams": dict(streams.fetchall()),
                "leases": leases,
                "journal_mode": journal_mode,
            }

        figures = await self._read(stats)
        import sqlite3

        db_bytes, wal_bytes = _file_size(path), _file_size(path.with_name(path.name + "-wal"))
        return {
            "backend": self.type,
            "version": sqlite3.sqlite_version,
            "schema_version": self.schema_version,
            "size_bytes": db_bytes + wal_bytes,
            "collections": figures["collections"],
            "streams": figures["streams"],
            "leases": figures["leases"],
            "path": str(path),
            "role": self.role,
            "journal_mode": figures["journal_mode"],
            "wal_bytes": wal_bytes,
            "transactions": writer.transactions,
            "writes": writer.operations,
        }

    # -- plumbing ----------------------------------------------------------------------------

    def _check_open(self) -> _Writer:
        if self._writer is None:
            raise StoreError(f"state store {self.path} is not open")
        return self._writer

    async def _write(self, op: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `op` in the writer thread inside the next batch's transaction."""
        import sniffio

        writer = self._check_open()
        if sniffio.current_async_library() == "asyncio":
            import asyncio  # here: `validate` imports this module and runs no loop

            loop = asyncio.get_running_loop()
            future = loop.create_future()
            writer.submit(_Job(op, loop, future))
            return await future
        # Other event loops (trio): wait in a worker thread; slower, same semantics.
        import concurrent.futures

        import anyio

        done: concurrent.futures.Future = concurrent.futures.Future()
        writer.submit(_Job(op, None, done))
        return await anyio.to_thread.run_sync(done.result)

    async def _read(self, op: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `op` on a read-only connection in a worker thread."""
        import anyio

        self._check_open()
        return await anyio.to_thread.run_sync(self._run_read, op, limiter=self._read_limiter)

    def _run_read(self, op: Callable[[sqlite3.Connection], Any]) -> Any:
        import sqlite3

        try:
            with self._readers_lock:
                conn = self._idle_readers.pop() if self._idle_readers else None
            if conn is None:
                conn = _connect(self.path, read_only=True)
            try:
                return op(conn)
            finally:
                with self._readers_lock:
                    if self._writer is None:  # closed meanwhile
                        conn.close()
                    else:
                        self._idle_readers.append(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"state file {self.path}: {exc}") from exc


@dataclass(slots=True)
class _Job:
    op: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future | concurrent.futures.Future


_STOP = None


class _Writer:
    """The thread that owns the writing connection and commits operations in batches."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        import queue

        self.conn = conn
        self.path = path
        self.queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.rows_added: Counter[str] = Counter()
        """Rows appended (or trimmed, negative) per stream in the open transaction."""
        self.transactions = 0
        self.operations = 0
        self.thread = threading.Thread(target=self._run, name="watchkeeper-sqlite", daemon=True)
        self.thread.start()

    def submit(self, job: _Job) -> None:
        self.queue.put(job)

    def stop(self) -> None:
        self.queue.put(_STOP)

    def join(self) -> None:
        self.thread.join()

    def _run(self) -> None:
        import queue
        import sqlite3

        try:
            stopping = False
            while not stopping:
                first = self.queue.get()
                if first is _STOP:
                    break
                batch = [first]
                while len(batch) < BATCH_MAX:
                    try:
                        job = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is _STOP:
                        stopping = True
                        break
                    batch.append(job)
                _settle(self._commit(batch))
            try:
                self.conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass
        finally:
            self.conn.close()
            # Jobs submitted while close() ran: fail them rather than leave callers waiting.
            closed = StoreError(f"state store {self.path} is closed")
            left = []
            while True:
                try:
                    job = self.queue.get_nowait()
                except queue.Empty:
                    break
                if job is not _STOP:
                    left.append((job, closed, None))
            _settle(left)

    def _commit(self, batch: list[_Job]) -> list[tuple[_Job, BaseException | None, Any]]:
        """Run a batch in one transaction; an operation that fails is taken out, the rest rerun."""
        failed: list[tuple[_Job, BaseException | None, Any]] = []
        while batch:
            try:
                return failed + self._transaction(batch)
            except _OpFailed as failure:
                self._rollback()
                failed.append((batch[failure.index], _store_error(self.path, failure.error), None))
                batch = batch[: failure.index] + batch[failure.index + 1 :]
            except Exception as exc:  # BEGIN or COMMIT: the file is busy, full or broken
                self._rollback()
                error = _store_error(self.path, exc)
                return failed + [(job, error, None) for job in batch]
        return failed

    def _transaction(self, batch: list[_Job]) -> list[tuple[_Job, BaseException | None, Any]]:
        conn = self.conn
        outcomes: list[tuple[_Job, BaseException | None, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        for index, job in enumerate(batch):
            try:
                outcomes.append((job, None, job.op(conn)))
            except FencedWrite as refused:  # raised before the operation wrote anything
                outcomes.append((job, refused, None))
            except Exception as exc:
                raise _OpFailed(index, exc) from exc
        if self.rows_added:
            conn.executemany(_COUNT_ROWS, self.rows_added.items())
        conn.execute("COMMIT")
        self.rows_added.clear()
        self.transactions += 1
        self.operations += len(batch)
        return outcomes

    def _rollback(self) -> None:
        self.rows_added.clear()
        if self.conn.in_transaction:
            import sqlite3

            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass


class _OpFailed(Exception):
    def __init__(self, index: int, error: Exception):
        self.index = index
        self.error = error


def _settle(outcomes: Sequence[tuple[_Job, BaseException | None, Any]]) -> None:
    """Hand results back: one wake-up per event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for job, exc, value in outcomes:
        if job.loop is None:
            if job.future.done():
                continue
            if exc is None:
                job.future.set_result(value)
            else:
                job.future.set_exception(exc)
        else:
            by_loop.setdefault(job.loop, []).append((job.future, exc, value))
    for loop, results in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, results)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            pass


def _resolve(results: list[tuple[asyncio.Future, BaseException | None, Any]]) -> None:
    for future, exc, value in results:
        if future.done():  # the caller was cancelled
            continue
        if exc is None:
            future.set_result(value)
        else:
            future.set_exception(exc)


def _fence(conn: sqlite3.Connection, collection: str, keys_json: str, epoch: int) -> None:
    fenced = [key for (key,) in conn.execute(_FENCED_KEYS, (collection, epoch, keys_json))]
    if fenced:
        raise FencedWrite(collection, fenced)


def _connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    import sqlite3

    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
    # In WAL mode NORMAL loses at most the last commits on power loss, never consistency.
    conn.execute("PRAGMA synchronous = NORMAL")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to the newest version, in one transaction."""
    # Checked first without the write lock: a client beside a busy daemon need not wait.
    if _schema_version(conn, path) == len(MIGRATIONS):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_version(conn, path)  # again: another process may have migrated
        for step in MIGRATIONS[version:]:
            for statement in step:
                conn.execute(statement)
        if version < len(MIGRATIONS):
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (len(MIGRATIONS),),
            )
            log.info("state file %s: schema version %d -> %d", path, version, len(MIGRATIONS))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if has_meta:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
    elif conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone():
        raise StoreError(f"{path} is a SQLite database but not a watchkeeper state file")
    else:
        version = 0
    if version > len(MIGRATIONS):
        raise StoreError(
            f"state file {path} has schema version {version}; this watchkeeper knows "
            f"versions up to {len(MIGRATIONS)}: upgrade watchkeeper"
        )
    return version


def _take_lock(path: Path) -> int:
    """Hold `<path>.lock` exclusively, with our pid in it; refuse when a daemon has it."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create lock file {lock_path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreError(
            f"another watchkeeper daemon (pid {holder}) is using {path}; stop it, or give "
            "this one another state.path (CLI commands beside it open the file as clients)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _release_lock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


def _store_error(path: Path, exc: BaseException) -> BaseException:
    """Wrap SQLite's errors in StoreError; anything else is a bug and passes as is."""
    import sqlite3

    if not isinstance(exc, sqlite3.Error):
        return exc
    error = StoreError(f"state file {path}: {exc}")
    error.__cause__ = exc
    return error


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@hookimpl
def watchkeeper_state_stores():
    return [SqliteStore]
