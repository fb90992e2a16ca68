"""The backup catalog in the state store: one document per backup run, one per drill run.

Collection `backups`, key = backup id, document:

    {"id", "job", "source", "status": "running"|"ok"|"partial"|"failed",
     "started_at", "finished_at" (UNIX seconds), "scheduled" (the cron time or null),
     "size_bytes", "sha256", "destinations": [names holding a complete copy],
     "failed_destinations": {name: error}, "files": [{name, size, sha256, ...}],
     "encrypted", "recipients", "error", "info"}

`ok` = every destination has a copy; `partial` = some do (a destination failed);
`failed` = none does. A backup is *good* when it is ok or partial. Collection `drills`,
key = drill run id, records drills the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from watchkeeper.engine.state.store import StateStore

BACKUPS = "backups"
DRILLS = "drills"
GOOD = ("ok", "partial")
PUBLIC_KEYS = ("id", "job", "started_at", "finished_at", "status", "size_bytes", "sha256")


def iso(at: float | None) -> str | None:
    """Return a UNIX time as ISO-8601 in UTC with its offset, to the second."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def parse_iso(text: str) -> float:
    """Return the UNIX time of an ISO-8601 instant (with offset or Z)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def new_id(job: str, at: float, taken: set[str]) -> str:
    """Return `<job>-<YYYYMMDDTHHMMSSZ>`, with `-2`, `-3`... when that is taken."""
    base = f"{job}-{datetime.fromtimestamp(at, UTC).strftime('%Y%m%dT%H%M%SZ')}"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def is_good(entry: dict[str, Any]) -> bool:
    return entry.get("status") in GOOD


def public(entry: dict[str, Any]) -> dict[str, Any]:
    """Return the `backup list --format json` shape: DESIGN's keys first, then extras."""
    row: dict[str, Any] = {}
    for key in PUBLIC_KEYS:
        value = entry.get(key)
        row[key] = iso(value) if key in ("started_at", "finished_at") else value
    row["destinations"] = list(entry.get("destinations") or [])
    row["encrypted"] = bool(entry.get("encrypted"))
    row["error"] = entry.get("error")
    return row


class Catalog:
    """Read and write catalog entries through a state store."""

    def __init__(self, store: StateStore):
        self.store = store

    async def put(self, entry: dict[str, Any]) -> None:
        await self.store.put(BACKUPS, {entry["id"]: entry})

    async def get(self, backup_id: str) -> dict[str, Any] | None:
        return await self.store.get(BACKUPS, backup_id)

    async def entries(self, job: str | None = None) -> list[dict[str, Any]]:
        """Return entries, newest first (of one job when given)."""
        found = [
            e
            for e in (await self.store.get_all(BACKUPS)).values()
            if job is None or e.get("job") == job
        ]
        found.sort(key=lambda e: (e.get("started_at") or 0.0, e["id"]), reverse=True)
        return found

    async def ids(self) -> set[str]:
        return set(await self.store.get_all(BACKUPS))

    async def latest_good(self, job: str) -> dict[str, Any] | None:
        return next((e for e in await self.entries(job) if is_good(e)), None)

    async def delete(self, ids: list[str]) -> None:
        await self.store.delete(BACKUPS, ids)

    async def resolve(self, given: str) -> dict[str, Any] | None:
        """Return the entry an id names: exact, or a unique prefix."""
        entry = await self.get(given)
        if entry is not None:
            return entry
        matches = [e for e in await self.entries() if e["id"].startswith(given)]
        return matches[0] if len(matches) == 1 else None

    async def put_drill(self, record: dict[str, Any]) -> None:
        await self.store.put(DRILLS, {record["id"]: record})

    async def drills(self, name: str | None = None) -> list[dict[str, Any]]:
        found = [
            d
            for d in (await self.store.get_all(DRILLS)).values()
            if name is None or d.get("drill") == name
        ]
        found.sort(key=lambda d: d.get("started_at") or 0.0, reverse=True)
        return found
