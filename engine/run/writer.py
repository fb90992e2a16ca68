"""Batch the daemon's state writes, and keep them while the store cannot be reached.

Every probe run produces a result row and an updated state document; writing each on its
own would cost a round trip per run. The writer collects them and flushes a few times a
second, every write of a flush handed to the store at once (one transaction in SQLite).
When the store fails, the batch stays in memory (up to a bound), the daemon reports
itself degraded, and the next flush writes everything.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import anyio

from watchkeeper.engine.state.store import FencedWrite, Row, StateStore

log = logging.getLogger("watchkeeper.writer")


class StateWriter:
    """Buffer stream rows and documents; flush them in batches."""

    def __init__(self, store: StateStore, *, interval: float = 0.2, limit: int = 200_000):
        self.store = store
        self.interval = interval
        self.limit = limit
        self.rows: dict[str, deque[Row]] = {}
        # collection -> key -> (document, the fencing epoch when it was written)
        self.docs: dict[str, dict[str, tuple[dict[str, Any], int | None]]] = {}
        self.deletes: dict[str, set[str]] = {}
        self.epoch: int | None = None
        self.degraded: str | None = None
        self.dropped = 0
        self.flushes = 0
        self._wake = anyio.Event()
        self._lock = anyio.Lock()

    # -- buffering --------------------------------------------------------------------------

    def append(self, stream: str, row: Row) -> None:
        rows = self.rows.setdefault(stream, deque())
        rows.append(row)
        if len(rows) > self.limit:
            rows.popleft()  # over the bound: the oldest row goes, and is counted
            self.dropped += 1
        # a big backlog is written without waiting for the interval (summing every
        # buffer on each append would cost more than the row itself)
        if len(rows) >= 1000 or (not len(rows) % 128 and self.pending() >= 1000):
            self._wake.set()

    def put(self, collection: str, key: str, doc: dict[str, Any]) -> None:
        self.docs.setdefault(collection, {})[key] = (doc, self.epoch)
        self.deletes.get(collection, set()).discard(key)

    def delete(self, collection: str, key: str) -> None:
        self.docs.get(collection, {}).pop(key, None)
        self.deletes.setdefault(collection, set()).add(key)

    def pending(self) -> int:
        return (
            sum(len(r) for r in self.rows.values())
            + sum(len(d) for d in self.docs.values())
            + sum(len(d) for d in self.deletes.values())
        )

    # -- flushing ---------------------------------------------------------------------------

    async def run(self, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        """Flush periodically until cancelled; a final flush is the caller's job."""
        task_status.started()
        while True:
            with anyio.move_on_after(self.interval if not self.degraded else 2.0):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()

    async def _put(
        self, collection: str, entries: dict[str, tuple[dict[str, Any], int | None]]
    ) -> None:
        """Write documents, each with the epoch it was queued under; drop fenced ones."""
        by_epoch: dict[int | None, dict[str, dict[str, Any]]] = {}
        for key, (doc, epoch) in entries.items():
            by_epoch.setdefault(epoch, {})[key] = doc
        for epoch, batch in by_epoch.items():
            while batch:
                try:
                    await self.store.put(collection, batch, epoch=epoch)
                    break
                except FencedWrite as exc:
                    # a newer replica owns these: its state wins; ours for them is dropped,
                    # the rest of the batch is written
                    log.warning(
                        "state write fenced off",
                        extra={"collection": collection, "keys": len(exc.keys), "epoch": epoch},
                    )
                    batch = {k: v for k, v in batch.items() if k not in set(exc.keys)}
        current = self.docs[collection]
        for key, entry in entries.items():
            if current.get(key) is entry:
                del current[key]

    async def flush(self) -> bool:
        """Write everything buffered; return False (keeping it) when the store fails."""
        async with self._lock:
            if not self.pending():
                return True
            rows = {s: list(r) for s, r in self.rows.items() if r}
            docs = {c: dict(d) for c, d in self.docs.items() if d}
            deletes = {c: set(d) for c, d in self.deletes.items() if d}
            errors: list[Exception] = []

            async def attempt(write: Any, *args: Any) -> None:
                try:
                    await write(*args)
                except Exception as exc:  # judged below, once every write has returned
                    errors.append(exc)

            # every write of the batch is handed to the store at once: the sqlite store
            # commits what is waiting in one transaction, the others overlap round trips
            async with anyio.create_task_group() as tg:
                for stream, batch in rows.items():
                    tg.start_soon(attempt, self._append, stream, batch)
                for collection, entries in docs.items():
                    tg.start_soon(attempt, self._put, collection, entries)
                for collection, keys in deletes.items():
                    tg.start_soon(attempt, self._delete, collection, keys)
            refused = [e for e in errors if isinstance(e, ValueError | TypeError)]
            if refused:
                # data the store can never take (a bug, not an outage): drop it, say so
                log.error("state write refused; batch dropped", extra={"error": str(refused[0])})
                for stream in rows:
                    self.rows[stream].clear()
                for collection in docs:
                    self.docs[collection].clear()
                return False
            if errors:  # whatever the backend raised, keep what was not written
                exc = errors[0]
                if self.degraded is None:
                    log.error(
                        "state store unreachable; buffering in memory",
                        extra={"error": str(exc), "pending": self.pending()},
                    )
                self.degraded = str(exc) or type(exc).__name__
                return False
            if self.degraded is not None:
                log.warning(
                    "state store reachable again; buffer written", extra={"dropped": self.dropped}
                )
                self.degraded = None
            self.flushes += 1
            return True

    async def _append(self, stream: str, batch: list[Row]) -> None:
        await self.store.append(stream, batch)
        queue = self.rows[stream]
        for _ in range(min(len(batch), len(queue))):
            queue.popleft()

    async def _delete(self, collection: str, keys: set[str]) -> None:
        await self.store.delete(collection, sorted(keys), epoch=self.epoch)
        self.deletes[collection] -= keys
