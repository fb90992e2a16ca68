"""Checks run from several locations: one verdict from what each location sees.

A check with `locations: {from: [eu, us, ap], quorum: 2}` runs once per location (the
instance `check/eu` on a replica started with `--location eu`), and each location counts
its own failures and successes as any check does. Its judging instance (`check`) is
never run: it takes the locations' states and says `down` when at least `quorum` of
them see the check down, `up` when fewer do (DESIGN.md ► Locations). A location with no
live replica, or none that has run the check yet, is `unknown`: never counted as down.

Threshold rules are judged on the judging instance, on each metric combined over the
locations whose last run succeeded (`agg`): by default the quorum-th worst value, so a
latency alert needs `quorum` slow locations, as the `up` alert needs `quorum` failing
ones.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.engine.alerting.notice import LOCATIONS_SAID
from watchkeeper.engine.config.instances import Instance
from watchkeeper.engine.run.probe import Result

UP, DOWN, UNKNOWN = "up", "down", "unknown"


@dataclass(slots=True)
class Seen:
    """What one location last saw of a located check."""

    location: str
    status: str  # up, down or unknown
    at: float | None = None
    ok: bool | None = None
    duration: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    message: str | None = None
    why: str | None = None  # for unknown: no replica there, or no run yet

    def public(self) -> dict[str, Any]:
        """The shape of one location in /api/status, the status page and `status`."""
        out: dict[str, Any] = {"location": self.location, "status": self.status}
        if self.at is not None:
            out.update(last_run=self.at, ok=self.ok, duration=self.duration)
        if self.why:
            out["why"] = self.why
        return out


def seen_of(location: str, doc: dict[str, Any] | None, *, live: bool) -> Seen:
    """Read a location's state from its run instance's state document."""
    if not live:
        return Seen(location, UNKNOWN, why=f"no replica in {location}")
    doc = doc or {}
    latest = doc.get("latest") or {}
    if doc.get("last_at") is None:
        return Seen(location, UNKNOWN, why="no run yet")
    up_rule = (doc.get("rules") or {}).get("up") or {}
    return Seen(
        location,
        DOWN if up_rule.get("active") else UP,
        at=doc.get("last_at"),
        ok=doc.get("last_ok"),
        duration=latest.get("duration"),
        metrics=dict(latest.get("metrics") or {}),
        message=latest.get("message"),
    )


def summary(seen: list[Seen]) -> dict[str, Any]:
    """Which locations see the check down, up and unknown (an alert's `locations`)."""
    return {
        "down": [s.location for s in seen if s.status == DOWN],
        "up": [s.location for s in seen if s.status == UP],
        "unknown": [s.location for s in seen if s.status == UNKNOWN],
    }


def verdict(instance: Instance, seen: list[Seen]) -> tuple[Result, dict[str, Any]]:
    """Return the judging instance's result from the locations, and who sees what."""
    spec = instance.locations
    quorum = spec.needed
    where = {**summary(seen), "quorum": quorum}
    down, up, unknown = where["down"], where["up"], where["unknown"]
    ok = len(down) < quorum
    # what the first failing location said comes first: it is what a notice's headline
    # quotes ("api is down in eu, us (2 of 3, quorum 2): HTTP 503")
    said = next((s.message for s in seen if s.status == DOWN and s.message), None)
    parts = []
    if down:
        parts.append(f"down in {', '.join(down)} ({len(down)} of {len(seen)}, quorum {quorum})")
    if up:
        parts.append(f"up in {', '.join(up)}")
    if unknown:
        parts.append(f"unknown in {', '.join(unknown)}")
    if said and not ok:
        # `LOCATIONS_SAID` is where a notice cuts the probe's words from the places
        parts[0] = said + LOCATIONS_SAID + parts[0].removeprefix("down in ")
    elif said:
        parts[0] = f"{parts[0]}: {said}"
    metrics = combined(instance, [s for s in seen if s.status != UNKNOWN and s.ok], quorum)
    metrics.update(
        locations_down=float(len(down)),
        locations_up=float(len(up)),
        locations_unknown=float(len(unknown)),
    )
    durations = [s.duration for s in seen if s.status != UNKNOWN and s.duration is not None]
    result = Result(
        ok=ok,
        message="; ".join(parts) or "no location has run the check yet",
        metrics=metrics,
        duration=_pick(spec.agg, sorted(durations, reverse=True), quorum) or 0.0,
    )
    return result, where


def combined(instance: Instance, seen: list[Seen], quorum: int) -> dict[str, float]:
    """Each metric over the locations, as `agg` says; worst is high unless a rule on the
    metric alerts when it is `below` a bound (days left of a certificate)."""
    low_is_bad = {
        rule.metric for rule in instance.thresholds if getattr(rule, "below", None) is not None
    }
    names = {name for s in seen for name in s.metrics}
    out = {}
    for name in names:
        values = [s.metrics[name] for s in seen if name in s.metrics]
        base = name.split("{", 1)[0]
        worst_first = sorted(values, reverse=base not in low_is_bad)
        value = _pick(instance.locations.agg, worst_first, quorum)
        if value is not None:
            out[name] = value
    return out


def _pick(agg: str, worst_first: list[float], quorum: int) -> float | None:
    if not worst_first:
        return None
    if agg == "quorum":
        # fewer values than the quorum: no value, so no rule fires on too few locations
        return worst_first[quorum - 1] if len(worst_first) >= quorum else None
    if agg == "worst":
        return worst_first[0]
    if agg == "best":
        return worst_first[-1]
    if agg == "median":
        return float(statistics.median(worst_first))
    return sum(worst_first) / len(worst_first)
