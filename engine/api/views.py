"""What the API, the status page and the metrics read from a running daemon.

Everything here is read-only and cheap enough to run per request; values that come from
the store are awaited, the rest is read from memory. Secrets are masked by the callers'
responses (`REDACTOR.redact_obj`), and nothing here returns a probe's raw message to a
caller that is not the admin.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

import psutil

from watchkeeper.engine.api import check_rows
from watchkeeper.engine.config.instances import split_key
from watchkeeper.engine.observe.version import version as installed_version

log = logging.getLogger("watchkeeper.api")

MEMBER_PREFIX = "member:"
GOOD_BACKUP = {"ok", "success", "succeeded", "verified", "good"}
UPCOMING_DAYS = 14


@lru_cache(maxsize=32768)  # bounded: every run brings a new time, and a daemon runs for months
def iso(at: float | None) -> str | None:
    """Return UNIX seconds as ISO-8601 UTC with a Z, or None."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@cache
def version() -> str:
    """Return the installed watchkeeper version, read once: the package metadata takes
    milliseconds to read, and /health gives it in every answer."""
    return installed_version()


_PROCESS: psutil.Process | None = None


def resources(daemon: Any) -> dict[str, Any]:
    """Return the daemon process's own footprint: memory, CPU, open files, uptime."""
    global _PROCESS
    if _PROCESS is None or _PROCESS.pid != os.getpid():
        _PROCESS = psutil.Process()
        _PROCESS.cpu_percent(None)  # the first reading only starts the measurement
    proc = _PROCESS
    with proc.oneshot():
        memory = proc.memory_info()
        times = proc.cpu_times()
        try:
            fds: int | None = proc.num_fds()
        except (AttributeError, psutil.Error):  # pragma: no cover - not on Windows
            fds = None
        found = {
            "pid": proc.pid,
            "rss_bytes": memory.rss,
            "cpu_percent": proc.cpu_percent(None),
            "cpu_seconds": round(times.user + times.system, 3),
            "open_fds": fds,
            "threads": proc.num_threads(),
        }
    found["uptime_seconds"] = round(uptime(daemon), 3)
    return found


def started_at(daemon: Any) -> float:
    return float(getattr(daemon.runtime, "started_at", time.time()))


def uptime(daemon: Any) -> float:
    return max(0.0, time.time() - started_at(daemon))


def store_state(daemon: Any) -> dict[str, Any]:
    """Return whether the store takes writes now, and how much waits in memory for it."""
    writer = daemon.writer
    return {
        "type": daemon.config.state.type,
        "state": "degraded" if writer.degraded else "ok",
        "error": writer.degraded,
        "pending_writes": writer.pending(),
        "dropped_writes": writer.dropped,
    }


def outbox_state(daemon: Any) -> dict[str, Any]:
    """Return the outbox's depth and counters."""
    outbox = daemon.outbox
    waiting = [d for d in outbox.pending.values() if d.status == "pending"]
    by_notifier: dict[str, int] = {}
    for delivery in waiting:
        by_notifier[delivery.notifier] = by_notifier.get(delivery.notifier, 0) + 1
    return {
        "depth": len(waiting),
        "by_notifier": by_notifier,
        "sent": outbox.sent_count,
        "failed_attempts": outbox.failed_count,
        "in_memory_only": len(outbox.memory_only),
    }


def scheduler_state(daemon: Any) -> dict[str, Any]:
    """Return jobs, runs under way, skipped runs and how late runs started."""
    scheduler = daemon.scheduler
    lateness = scheduler.lateness
    return {
        "jobs": len(scheduler.jobs),
        "running": scheduler.running_count,
        "skipped": skipped(daemon),
        "lateness_seconds": {
            "p50": round(lateness.quantile(0.5), 6),
            "p99": round(lateness.quantile(0.99), 6),
            "max": round(lateness.worst, 6),
            "samples": lateness.count,
        },
    }


def skipped(daemon: Any) -> int:
    """Return how many runs were skipped because the previous one was still going."""
    return sum(job.skipped for job in daemon.scheduler.jobs.values())


def instance_labels(daemon: Any, key: str) -> dict[str, str]:
    found = instance(daemon, key)
    return dict(found.labels) if found is not None else {}


def instance(daemon: Any, key: str) -> Any:
    """Return a check instance by key, this replica's or another's; None when unknown."""
    runtime = daemon.runtime
    return runtime.instances.get(key) or getattr(runtime, "all_instances", {}).get(key)


async def checks(daemon: Any) -> list[dict[str, Any]]:
    """Return every check instance's state, including those another replica runs."""
    runtime = daemon.runtime
    everything, instances = check_rows.sources(runtime)
    local = check_rows.LocalRuns(runtime)
    alerts: dict[str, list[Any]] = {}
    for (key, _rule), alert in runtime.book.open.items():
        alerts.setdefault(key, []).append(alert)
    rows: dict[str, dict[str, Any]] = {}
    for key, instance in sorted(instances.items()):
        if not check_rows.listed(instance):
            continue
        status, latest = local.status(key)
        check, environment = split_key(key)
        rows[key] = {
            "check": check,
            "environment": environment,
            "status": status,
            "probe": instance.probe_type,
            "last_run": latest.get("at"),
            "ok": latest.get("ok"),
            "message": latest.get("message"),
            "alerts": [a.public() for a in alerts.get(key, ())],
            "labels": instance.labels,
        }
        if instance.locations is not None:
            seen = runtime.location_states(instance)
            rows[key]["locations"] = [s.public() for s in seen]
    remote = sorted(k for k in everything if k not in instances)
    if remote:
        try:
            states = await daemon.store.get_all("check_state")
        except Exception:
            states = {}
        for key in remote:
            instance = everything[key]
            if not check_rows.listed(instance):
                continue
            state = states.get(key) or {}
            check, environment = split_key(key)
            rows[key] = {
                "check": check,
                "environment": environment,
                "status": check_rows.remote_status(state),
                "probe": instance.probe_type,
                "last_run": state.get("last_at"),
                "ok": state.get("last_ok"),
                "message": None,
                "alerts": [],
                "labels": dict(instance.labels),
                "remote": True,
            }
            if instance.locations is not None:
                seen = runtime.location_states(instance, states)
                rows[key]["locations"] = [s.public() for s in seen]
    by_check = bool(remote)
    check_rows.judge(rows, everything, by_check=by_check)
    if not by_check:
        return list(rows.values())
    return [
        row
        for _, row in sorted(
            rows.items(),
            key=lambda kv: check_rows.place(
                kv[0], kv[1]["check"], kv[1]["environment"], by_check=True
            ),
        )
    ]


def public_check(row: dict[str, Any]) -> dict[str, Any]:
    """Return what anyone may see of a check: no messages, no alert details."""
    return {
        "check": row["check"],
        "environment": row["environment"],
        "status": row["status"],
        "last_run": iso(row.get("last_run")),
    }


def dated(row: dict[str, Any]) -> dict[str, Any]:
    """Return a check row with its times, and its locations' times, in ISO-8601."""
    found = {**row, "last_run": iso(row.get("last_run"))}
    if row.get("locations"):
        found["locations"] = [
            {**s, "last_run": iso(s["last_run"])} if "last_run" in s else s
            for s in row["locations"]
        ]
    return found


def overall(rows: list[dict[str, Any]]) -> str:
    """Return `ok` when no check is down or degraded, else `degraded`."""
    return "degraded" if any(r["status"] in check_rows.BAD for r in rows) else "ok"


async def backups(daemon: Any, now: float | None = None) -> dict[str, Any]:
    """Return every backup job: its latest and latest good run from the catalog
    (collection `backups`), when it last ran (`last_run`, null before its first run) and
    when it runs next (`next_run`). Jobs in monitor.yaml are listed before they ever ran;
    catalog entries of jobs since removed from it are listed too (`configured: false`).
    """
    now = time.time() if now is None else now
    configured = dict(getattr(getattr(daemon.config, "backups", None), "jobs", None) or {})
    jobs: dict[str, dict[str, Any]] = {
        name: {"entries": 0, "last": None, "last_good": None} for name in configured
    }
    try:
        docs = await daemon.store.get_all("backups")
    except Exception as exc:
        for name, entry in jobs.items():
            entry.update(last_run=None, age_seconds=None, configured=True)
            entry["next_run"] = iso(_next_run(daemon, name, configured[name], now))
        return {"error": str(exc), "jobs": jobs}
    for key, doc in docs.items():
        job = doc.get("job")
        if not isinstance(job, str):
            continue
        entry = jobs.setdefault(job, {"entries": 0, "last": None, "last_good": None})
        entry["entries"] += 1
        finished = _number(doc.get("finished_at"))
        if finished is None:
            continue
        summary = {
            "id": doc.get("id", key),
            "status": doc.get("status"),
            "finished_at": iso(finished),
            "size_bytes": _number(doc.get("size_bytes")),
            "_at": finished,
        }
        if entry["last"] is None or finished > entry["last"]["_at"]:
            entry["last"] = summary
        good = str(doc.get("status", "")).lower() in GOOD_BACKUP
        if good and (entry["last_good"] is None or finished > entry["last_good"]["_at"]):
            entry["last_good"] = summary
    for name, entry in jobs.items():
        good = entry["last_good"]
        entry["age_seconds"] = round(now - good["_at"], 3) if good else None
        entry["last_run"] = entry["last"]["finished_at"] if entry["last"] else None
        entry["configured"] = name in configured
        entry["next_run"] = (
            iso(_next_run(daemon, name, configured[name], now)) if name in configured else None
        )
        for key in ("last", "last_good"):
            if entry[key] is not None:
                entry[key] = {k: v for k, v in entry[key].items() if k != "_at"}
    return {"jobs": dict(sorted(jobs.items()))}


def _next_run(daemon: Any, name: str, job: Any, now: float) -> float | None:
    """Return when a backup job runs next: the scheduler's time, else its schedule's."""
    scheduled = getattr(daemon, "scheduler", None)
    found = scheduled.jobs.get(f"backup:{name}") if scheduled is not None else None
    if found is not None and found.next_at:
        return float(found.next_at)
    try:
        from watchkeeper.engine.schedule.timetable import series_for

        tz = getattr(daemon.config.defaults, "timezone", None) or "UTC"
        start = datetime.fromtimestamp(now, UTC)
        series = series_for(job.schedule, key=f"backup:{name}", start=start, default_tz=tz)
        return next(series).timestamp()
    except Exception:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
        return None
    return float(value)


async def replicas(daemon: Any) -> list[dict[str, Any]]:
    """Return the live members of a shared store (empty for a single daemon)."""
    from watchkeeper.engine.state.replicas import replica_status

    try:
        return await replica_status(daemon.store)
    except Exception:
        return []


def maintenance(daemon: Any, now: float, days: int = UPCOMING_DAYS) -> dict[str, Any]:
    """Return the windows under way and those starting within `days`."""
    windows = daemon.maintenance
    under_way = [o.public() for o in windows.under_way(now)]
    upcoming = [o.public() for o in windows.occurrences(now, now + days * 86400.0) if o.start > now]
    return {"under_way": under_way, "upcoming": upcoming}


async def slos(daemon: Any) -> list[dict[str, Any]] | None:
    """Return SLO status from `engine.slo` when it is installed, else None."""
    try:
        from watchkeeper.engine.reports.slo import slo_status  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        found = slo_status(daemon)
        if inspect.isawaitable(found):
            found = await found
        return list(found or [])
    except Exception:
        log.warning("SLO status failed", exc_info=True)
        return None


def open_alerts(daemon: Any) -> list[Any]:
    """Return the open alerts, oldest first."""
    return sorted(daemon.runtime.book.open.values(), key=lambda a: a.started_at)


async def status(daemon: Any) -> dict[str, Any]:
    """Return everything `GET /api/status` shows."""
    now = time.time()
    try:
        stats = await daemon.store.stats()
    except Exception as exc:
        stats = {"error": str(exc)}
    rows = await checks(daemon)
    return {
        "status": overall(rows),
        "version": version(),
        "started_at": iso(started_at(daemon)),
        "uptime_seconds": round(uptime(daemon), 3),
        "config": str(daemon.path),
        "reloads": getattr(daemon, "reloads", 0),
        "last_reload": daemon.reload_outcome(detailed=True)
        if hasattr(daemon, "reload_outcome")
        else None,
        "daemon": resources(daemon),
        "checks": [dated(row) for row in rows],
        "alerts": [a.public() for a in open_alerts(daemon)],
        "store": {**store_state(daemon), "stats": stats},
        "outbox": outbox_state(daemon),
        "scheduler": scheduler_state(daemon),
        "backups": await backups(daemon, now),
        "replicas": await replicas(daemon),
        "maintenance": maintenance(daemon, now),
        "slos": await slos(daemon),
    }
