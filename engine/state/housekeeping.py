"""Keep the store to its retention: old results, beats and timelines go; history stays."""

from __future__ import annotations

import logging
from typing import Any

import anyio

log = logging.getLogger("watchkeeper.housekeeping")

INTERVAL = 3600.0
RAW_STREAMS = ("results", "beats", "alert_events", "notices", "events")
LONG_STREAMS = ("audit",)  # access logs are kept as long as the daily rollups


async def prune(store: Any, config: Any, now: float) -> dict[str, int]:
    """Trim streams and documents past their retention; return what was removed."""
    options = config.state
    removed: dict[str, int] = {}
    for stream in RAW_STREAMS:
        removed[stream] = await store.trim(stream, now - options.retention)
    for stream in LONG_STREAMS:
        removed[stream] = await store.trim(stream, now - options.rollup_retention)
    alerts = await store.get_all("alerts")
    old = [
        key
        for key, doc in alerts.items()
        if doc.get("status") == "resolved"
        and (doc.get("resolved_at") or now) < now - options.retention
    ]
    if old:
        await store.delete("alerts", old)
    removed["alerts"] = len(old)
    claims = await store.get_all("claims")
    stale = [key for key, doc in claims.items() if doc.get("at", now) < now - options.retention]
    if stale:
        await store.delete("claims", stale)
    removed["claims"] = len(stale)
    outbox = await store.get_all("outbox")
    dead = [
        key
        for key, doc in outbox.items()
        if doc.get("status") == "gave_up" and doc.get("created_at", now) < now - options.retention
    ]
    if dead:
        await store.delete("outbox", dead)
    removed["outbox"] = len(dead)
    acks = await store.get_all("acks")
    done = [
        key
        for key, doc in acks.items()
        if (alerts.get(key) or {}).get("status") in (None, "resolved")
        or doc.get("at", now) < now - options.retention
    ]
    if done:
        await store.delete("acks", done)
    removed["acks"] = len(done)
    from watchkeeper.engine.alerting.silences import purge_silences

    removed["silences"] = await purge_silences(store, now - options.retention)
    return removed


async def housekeeping(daemon: Any, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
    """Prune once an hour for as long as the daemon runs."""
    task_status.started()
    while True:
        try:
            removed = await prune(daemon.store, daemon.config, daemon.clock.now())
            if any(removed.values()):
                log.info("pruned state past its retention", extra=removed)
        except Exception as exc:  # the store may be away: next hour then
            log.warning("pruning failed", extra={"error": str(exc)})
        await anyio.sleep(INTERVAL)
