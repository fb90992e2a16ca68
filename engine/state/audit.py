"""The audit log: who acknowledged, silenced, reloaded, restored, and every admin API call.

Entries are rows of the store's `audit` stream (key = the action), written through the
daemon's state writer so an outage of the store delays them rather than losing them, and
kept as long as the daily rollups (the seed: "access logs retained for audit purposes").
Tokens are never written: `by` names who acted (`token@203.0.113.7`, or the `by` of a
request body), never the credential used.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.engine.state.store import Row

STREAM = "audit"


def entry(
    action: str,
    by: str,
    details: dict[str, Any] | None = None,
    *,
    source: str = "api",
    at: float | None = None,
) -> Row:
    """Return the row for one audited action, secrets masked."""
    data = {"by": by, "source": source, **(details or {})}
    return Row(key=action, at=time.time() if at is None else at, data=REDACTOR.redact_obj(data))


def record(
    target: Any, by: str, action: str, details: dict[str, Any] | None = None, *, source: str = "api"
) -> Row:
    """Queue an audit entry on the daemon's state writer; `record_now` writes to a store."""
    row = entry(action, by, details, source=source)
    target.append(STREAM, row)
    return row


async def record_now(
    store: Any, by: str, action: str, details: dict[str, Any] | None = None, *, source: str = "cli"
) -> Row:
    """Write an audit entry straight to a store (CLI commands beside the daemon)."""
    row = entry(action, by, details, source=source)
    await store.append(STREAM, [row])
    return row


def public(row: Row) -> dict[str, Any]:
    """Return the JSON shape of an entry for `watchkeeper audit` and `GET /api/audit`."""
    data = dict(row.data)
    return {
        "at": datetime.fromtimestamp(row.at, UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
        "action": row.key,
        "by": data.pop("by", None),
        "source": data.pop("source", None),
        **REDACTOR.redact_obj(data),
    }


async def read(store: Any, since: float, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Return entries since a time (UNIX seconds), newest first."""
    rows = await store.read(STREAM, since=since, newest_first=True, limit=limit)
    return [public(r) for r in rows]
