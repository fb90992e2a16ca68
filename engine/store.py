"""What a state store is: the async interface every backend implements.

A store keeps everything the daemon knows, in two shapes:

- **documents**: JSON objects by (collection, key), written with an optional fencing
  epoch. Collections the engine uses: `alerts` (open and recent alerts by id),
  `check_state` (evaluation counters by check instance), `heartbeats` (last beat by
  instance), `outbox` (notices not yet delivered), `silences`, `backups` (the catalog),
  `meta` (schema version, daemon facts), `groups` (notification groups).
- **streams**: append-only rows of (key, time, data), read by key and time range and
  trimmed by age. Streams the engine uses: `results` (one row per probe run, key = check
  instance), `beats`, `audit`, `alert_events` (an alert's timeline, key = alert id),
  `rollups` (daily aggregates, key = check instance).

Keeping the backend contract this small is what lets one contract test suite run against
SQLite, PostgreSQL and Redis alike; the engine owns every rule about what the data means.

Times are UNIX seconds (float). Documents and stream data are JSON-serialisable dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from watchkeeper.schema.daemon import StoreOptions


class StoreError(Exception):
    """The store cannot be reached or refused an operation."""


class FencedWrite(StoreError):
    """A write carried an older fencing epoch than the one stored: its writer lost its lease."""

    def __init__(self, collection: str, keys: list[str]):
        super().__init__(f"write to {collection} fenced off for {len(keys)} key(s)")
        self.collection = collection
        self.keys = keys


@dataclass(slots=True)
class Row:
    """One row of a stream."""

    key: str
    at: float
    data: dict[str, Any]


@dataclass(slots=True)
class Lease:
    """A time-limited claim, e.g. a replica's membership; `epoch` increases on every grant."""

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

    async def open(self) -> None:
        """Connect, create or migrate the schema; raise StoreError when impossible."""

    async def close(self) -> None:
        """Release connections; pending writes are flushed first."""

    async def ping(self) -> None:
        """Raise StoreError unless the store answers now."""
        raise NotImplementedError

    async def now(self) -> float:
        """Return the store's own clock (leases are timed by it, not by the daemons')."""
        raise NotImplementedError

    # -- documents ---------------------------------------------------------------------------

    async def put(self, collection: str, docs: dict[str, dict[str, Any]], *,
                  epoch: int | None = None) -> None:
        """Insert or replace documents.

        With `epoch`, each document is written only if the epoch stored with it is not
        greater; otherwise nothing of this call is written and FencedWrite is raised.
        """
        raise NotImplementedError

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        """Return one document, or None."""
        raise NotImplementedError

    async def get_all(self, collection: str) -> dict[str, dict[str, Any]]:
        """Return every document of a collection by key."""
        raise NotImplementedError

    async def delete(self, collection: str, keys: list[str], *, epoch: int | None = None) -> None:
        """Delete documents (missing keys are ignored); fenced like `put`."""
        raise NotImplementedError

    async def insert_once(self, collection: str, key: str, doc: dict[str, Any]) -> bool:
        """Insert a document only if the key is new; return whether this call inserted it.

        Replicas claim a backup, drill or task run with it: exactly one caller wins.
        """
        raise NotImplementedError

    # -- streams -----------------------------------------------------------------------------

    async def append(self, stream: str, rows: list[Row]) -> None:
        """Append rows to a stream (order within one key is by `at`)."""
        raise NotImplementedError

    async def read(self, stream: str, key: str | None = None, *, since: float = 0.0,
                   until: float | None = None, limit: int | None = None,
                   newest_first: bool = False) -> list[Row]:
        """Return rows with since <= at < until (all keys when key is None)."""
        raise NotImplementedError

    async def trim(self, stream: str, before: float) -> int:
        """Delete rows older than `before`; return how many were deleted."""
        raise NotImplementedError

    async def stream_keys(self, stream: str) -> list[str]:
        """Return every key that has rows in a stream."""
        raise NotImplementedError

    # -- leases ------------------------------------------------------------------------------

    async def acquire(self, name: str, holder: str, ttl: float,
                      data: dict[str, Any] | None = None) -> Lease | None:
        """Take or renew a lease; None when another holder's lease has not expired.

        A new grant (new holder, or the same holder after expiry) gets a new, greater
        epoch; a renewal keeps the epoch and moves `expires_at` to store-now + ttl.
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
        """Return figures for /api/status: sizes, row counts, backend version."""
        return {}
