"""Which backups a job's `retention` keeps: keep_days and grandfather-father-son.

Rules, each over the job's *good* backups (ok or partial), newest first; a backup kept
by any rule stays:

- the newest good backup is always kept, whatever the rules say;
- `keep_days: N` keeps every backup started within the last N×24h;
- `keep_daily: N` keeps the newest backup of each of the N most recent days that have
  one; `keep_weekly` the same per ISO week, `keep_monthly` per calendar month. Days,
  weeks and months are those of the backup's start in the job's timezone. As in restic
  and borg, periods without a backup do not count, so a pause in backups never makes
  older copies go sooner.

Failed runs hold no copy; their catalog records go once they are older than the oldest
kept backup. Running entries are never touched. No `retention` keeps everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from watchkeeper.engine.backups.catalog import is_good
from watchkeeper.engine.schedule import timetable

DAY = 86400.0


@dataclass
class Decision:
    """What retention does with a job's backups."""

    keep: dict[str, list[str]] = field(default_factory=dict)  # id -> the rules keeping it
    delete: list[dict[str, Any]] = field(default_factory=list)  # entries, newest first


def _periods(tz: str) -> dict[str, Callable[[float], tuple[int, ...]]]:
    zone = timetable.zone(tz)

    def local(at: float) -> datetime:
        return datetime.fromtimestamp(at, zone)

    return {
        "keep_daily": lambda at: (local(at).year, local(at).month, local(at).day),
        "keep_weekly": lambda at: tuple(local(at).isocalendar())[:2],
        "keep_monthly": lambda at: (local(at).year, local(at).month),
    }


def decide(entries: list[dict[str, Any]], retention: Any, now: float, tz: str = "UTC") -> Decision:
    """Return which of one job's catalog entries to keep and which to delete."""
    decision = Decision()
    entries = sorted(entries, key=lambda e: e.get("started_at") or 0.0, reverse=True)
    good = [e for e in entries if is_good(e)]
    if retention is None:
        decision.keep = {e["id"]: ["no retention"] for e in entries}
        return decision

    def keep(entry: dict[str, Any], why: str) -> None:
        decision.keep.setdefault(entry["id"], []).append(why)

    if good:
        keep(good[0], "newest good backup")
    if retention.keep_days:
        horizon = now - retention.keep_days * DAY
        for entry in good:
            if entry["started_at"] >= horizon:
                keep(entry, f"keep_days {retention.keep_days}")
    for rule, period_of in _periods(tz).items():
        count = getattr(retention, rule)
        if not count:
            continue
        seen: set[tuple[int, ...]] = set()
        for entry in good:
            period = period_of(entry["started_at"])
            if period in seen:
                continue
            if len(seen) >= count:
                break
            seen.add(period)
            keep(entry, f"{rule} {count}")
    kept_times = [e["started_at"] for e in good if e["id"] in decision.keep]
    oldest_kept = min(kept_times, default=None)
    for entry in entries:
        if entry["id"] in decision.keep:
            continue
        status = entry.get("status")
        if status == "running":
            keep(entry, "running")
        elif is_good(entry) or (oldest_kept is not None and entry["started_at"] < oldest_kept):
            decision.delete.append(entry)
        else:
            keep(entry, "failed run, newer than the oldest kept backup")
    return decision
