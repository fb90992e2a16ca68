"""What a state store is: the async interface every backend implements.

A store keeps everything the daemon knows, in two shapes:

- **documents**: JSON objects by (collection, key), written with an optional fencing
  epoch. Collections the engine uses: `alerts` (open and recent alerts by id),
  `check_state` (evaluation counters by check instance), `heartbeats` (last beat by
  instance), `outbox` (notices not yet delivered), `acks`, `silences`, `backups` (the
  catalog), `claims` (insert-once run claims), `meta` (daemon facts), `groups`
  (notification groups).
- **streams**: append-only rows of (key, time, data), read by key and time range and
  trimmed by age. Streams the engine uses: `results` (one row per probe run, key = check
  instance), `beats`, `audit`, `alert_events` (an alert's timeline, key = alert id),
  `rollups` (daily aggregates, key = check instance).

Keeping the backend contract this small is what lets one contract test suite run against
SQLite, PostgreSQL and Redis alike; the engine owns every rule about what the data means.

Times are UNIX seconds (float). Documents and stream data are JSON objects: dicts with
string keys whose values are str, int, float, bool, None, lists and dicts. Tuples come back
as lists; NaN and infinities have no JSON form and are refused with ValueError (before
anything of the call is written), so every backend stores exactly the same data.

Rules every backend follows (the contract suite in tests/test_store_contract.py checks them):

- Methods may be called concurrently by many tasks. A write that returned survives a
  crash of the daemon and is visible to every later read, through this store object or
  another one on the same data.
- A write whose caller is cancelled after the call began may still be applied.
- Any method called after `close()` raises StoreError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from watchkeeper.schema.daemon import StoreOptions


class StoreError(Exception):
    """The store cannot be reached or refused an operation."""


class FencedWrite(StoreError):
    """A write carried an older fencing epoch than the one stored: its writer lost its lease."""

    def __init__(self, collection: str, keys: list[str]):
        super().__init__(f"write to {collection} fenced off for {len(keys)} key(s)")
        self.collection = collection
        self.keys = keys


Role = Literal["daemon", "client"]
"""Who opens a store: the long-running daemon, or a short CLI command beside it."""


@dataclass(slots=True)
class Row:
    """One row of a stream."""

    key: str
    at: float
    data: dict[str, Any]


@dataclass(slots=True)
class Lease:
    """A time-limited claim, e.g. a replica's membership; `epoch` increases on every grant.

    Epochs come from one counter for the whole store, shared by every lease name, so an
    epoch granted later is greater than every epoch granted before it under any name.
    """

    name: str
    holder: str
    epoch: int
    expires_at: float
    data: dict[str, Any]


class StateStore:
    """Base of state store plugins.

    Every method may raise StoreError when the backend cannot be reached; the engine
    buffers and retries. Implementations must be safe for concurrent use by one daemon's
    tasks, and (when `shared`) by several daemons at once.
    """

    type: ClassVar[str]
    Options: ClassVar[type[StoreOptions]]
    shared: ClassVar[bool] = False
    """True when several daemons may share the store (replicas)."""
    schema_version: ClassVar[int] = 1

    def __init__(self, options: Any, *, base_dir: Any = None):
        self.options = options
        self.base_dir = base_dir

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, *, role: Role = "daemon") -> None:
        """Connect, create or migrate the schema; raise StoreError when impossible.

        `role="daemon"` is the long-running process. A store that cannot be shared (SQLite)
        takes an exclusive claim on its data for the store's lifetime and raises StoreError,
        naming the other daemon, when one already holds it. `role="client"` is a short CLI
        command (`status`, `heartbeat`, `alerts ack`) reading and writing beside a running
        daemon: it never takes that claim. Backends that are shared anyway ignore `role`.
        A schema newer than this code knows raises StoreError.
        """

    async def close(self) -> None:
        """Release connections and claims; pending writes are flushed first. Idempotent."""

    async def ping(self) -> None:
        """Raise StoreError unless the store answers now."""
        raise NotImplementedError

    async def now(self) -> float:
        """Return the store's own clock (leases are timed by it, not by the daemons')."""
        raise NotImplementedError

    # -- documents ---------------------------------------------------------------------------

    async def put(
        self, collection: str, docs: dict[str, dict[str, Any]], *, epoch: int | None = None
    ) -> None:
        """Insert or replace documents.

        A document is replaced whole, never merged. Each document keeps the greatest epoch
        ever written to it (0 when none was). With `epoch`, the call is written only if no
        target document has a greater stored epoch; otherwise nothing of this call is
        written and FencedWrite is raised, naming the fenced keys. An equal or greater
        epoch is accepted and becomes the stored one. Without `epoch` (CLI and admin
        writes) the write always succeeds and leaves the stored epoch as it was, so a
        stale writer stays fenced off. The documents of one call are written atomically.
        """
        raise NotImplementedError

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        """Return one document, or None."""
        raise NotImplementedError

    async def get_all(self, collection: str) -> dict[str, dict[str, Any]]:
        """Return every document of a collection by key."""
        raise NotImplementedError

    async def delete(self, collection: str, keys: list[str], *, epoch: int | None = None) -> None:
        """Delete documents (missing keys are ignored); fenced like `put`.

        A deleted document's epoch goes with it: fencing guards documents that exist.
        """
        raise NotImplementedError

    async def insert_once(self, collection: str, key: str, doc: dict[str, Any]) -> bool:
        """Insert a document only if the key is new; return whether this call inserted it.

        Replicas claim a backup, drill or task run with it: exactly one caller wins, across
        every task and every daemon sharing the store. An existing document of that key,
        however written, makes the call lose. The document is stored with epoch 0.
        """
        raise NotImplementedError

    # -- streams -----------------------------------------------------------------------------

    async def append(self, stream: str, rows: list[Row]) -> None:
        """Append rows to a stream; the rows of one call are written atomically."""
        raise NotImplementedError

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
        """Return rows with since <= at < until (all keys when key is None).

        Rows come oldest first, or newest first with `newest_first`; `limit` applies after
        ordering, so `newest_first=True, limit=1` is the latest row. The order of rows with
        equal `at` is unspecified.
        """
        raise NotImplementedError

    async def trim(self, stream: str, before: float) -> int:
        """Delete rows older than `before`; return how many were deleted."""
        raise NotImplementedError

    async def stream_keys(self, stream: str) -> list[str]:
        """Return every key that has rows in a stream, in no particular order."""
        raise NotImplementedError

    # -- leases ------------------------------------------------------------------------------

    async def acquire(
        self, name: str, holder: str, ttl: float, data: dict[str, Any] | None = None
    ) -> Lease | None:
        """Take or renew a lease; None when another holder's lease has not expired.

        Expiry is judged by the store's clock (`now()`). A new grant (free name, new holder
        after expiry, or the same holder after expiry or release) gets a new epoch, greater
        than every epoch the store granted before; a renewal (same holder, unexpired)
        keeps the epoch and moves `expires_at` to store-now + ttl. `data` replaces the
        lease's data when given; a renewal without it keeps the old data.
        """
        raise NotImplementedError

    async def release(self, name: str, holder: str) -> None:
        """Give up a lease held by `holder` (no-op otherwise)."""
        raise NotImplementedError

    async def leases(self, prefix: str = "") -> list[Lease]:
        """Return unexpired leases whose name starts with prefix."""
        raise NotImplementedError

    # -- facts -------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """Return figures for /api/status: sizes, row counts, backend version.

        Every backend returns at least `backend` (its type), `version` (the server's or
        library's version, str), `schema_version` (int), `size_bytes` (int, or None when
        the backend cannot tell), `collections` ({collection: documents}), `streams`
        ({stream: rows}) and `leases` (unexpired leases); backend-specific figures follow.
        """
        return {}
