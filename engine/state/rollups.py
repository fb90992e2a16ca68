"""Daily rollups of the results history, and aggregates of any span built from them.

Raw results are kept for `state.retention` (30d by default); a report over a year, the
status page's 90-day bars and an SLO's 30-day window must not read millions of rows
each time. So once a UTC day is over (and has settled for a few minutes), every check
instance gets one row in the `rollups` stream: `at` = the day's start, `data` = the
day's counts, latency percentiles, a mergeable latency sketch, per-metric sums and the
good/bad counts of every metric SLO on the instance. Rollups are kept for
`state.rollup_retention` (400d).

Streams are append-only, so recomputing a day appends a newer row; readers keep, per
(instance, day), the row with the greatest `computed_at`. The `meta/rollups_done`
document says through which day rollups are complete and on which `basis` (the SLO
definitions and `mute` windows they were classified with). A changed basis re-rolls
the days whose raw results are still complete.

`History.aggregate()` answers "what happened to this instance in [since, until)": whole
days come from rollups, the rest from raw results (whole past hours cached in a daemon),
so a 30-day report of 100 checks at one run a minute reads about one day of raw rows.
Runs inside a `mute` window covering the instance are counted apart and left out of
every figure (DESIGN ► Maintenance: muted time does not count against SLOs).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel

from watchkeeper.engine.alerting.maintenance import Maintenance
from watchkeeper.engine.config.instances import split_key
from watchkeeper.engine.state.store import Row, StateStore

__all__ = [
    "Aggregate",
    "History",
    "Sketch",
    "SloRule",
    "roll_up",
    "rollup_basis",
    "run",
    "slo_rules",
]

log = logging.getLogger("watchkeeper.rollups")

DAY = 86400.0
HOUR = 3600.0
STREAM = "rollups"
DONE = ("meta", "rollups_done")  # (collection, key) of the progress document
VERSION = 1
SETTLE = 600.0
"""A day is rolled up this long after it ends, so results still buffered are in."""
HOUR_SETTLE = 120.0
"""A past hour's raw aggregate is cached this long after it ends."""
INTERVAL = 900.0
"""How often the daemon's rollup task looks for a completed day."""
CLAIM_STALE = 3600.0
"""A replica's claim on a day older than this (it died mid-way) is taken over."""
ACCURACY = 0.01
"""Relative accuracy of latency percentiles read from sketches (rollups): bucket width."""
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}

_GAMMA = 1 + ACCURACY
_LOG_GAMMA = math.log(_GAMMA)
_TINY = 1e-9  # latencies at or below this count as zero
_NUMBERS = frozenset({int, float})  # exactly: a bool is not a measurement


def day_start(at: float) -> float:
    """Return the start of the UTC day holding `at`."""
    return math.floor(at / DAY) * DAY


def iso_day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


# -- latency sketch ------------------------------------------------------------------------


class Sketch:
    """Mergeable quantiles within ACCURACY relative error (DDSketch's log buckets).

    Bucket i holds values in (γ^(i-1), γ^i] with γ = 1 + ACCURACY, so every value in it is
    within 1% of every other; it keeps their count and sum and answers with their mean.
    A quantile of merged days is thus within 1% of the true one, and exact when the
    values of its bucket are all the same.
    """

    __slots__ = ("bins", "count", "zeros")

    def __init__(self) -> None:
        self.bins: dict[int, list[float]] = {}  # bucket -> [count, sum]
        self.zeros = 0
        self.count = 0

    def add(self, value: float) -> None:
        self.count += 1
        if value <= _TINY:
            self.zeros += 1
            return
        i = math.ceil(math.log(value) / _LOG_GAMMA)
        held = self.bins.get(i)
        if held is None:
            self.bins[i] = [1, value]
        else:
            held[0] += 1
            held[1] += value

    def merge(self, other: Sketch) -> None:
        self.count += other.count
        self.zeros += other.zeros
        for i, (n, total) in other.bins.items():
            held = self.bins.get(i)
            if held is None:
                self.bins[i] = [n, total]
            else:
                held[0] += n
                held[1] += total

    def quantile(self, q: float) -> float | None:
        """Return the nearest-rank q-quantile (within ACCURACY), None when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = self.zeros
        if seen >= rank:
            return 0.0
        for i in sorted(self.bins):
            n, total = self.bins[i]
            seen += n
            if seen >= rank:
                # the mean stays inside the bucket, whatever rounding did to the sum
                low, high = _GAMMA ** (i - 1), _GAMMA**i
                return min(max(total / n, low), high)
        raise AssertionError("counts and bins disagree")  # pragma: no cover

    def to_data(self) -> dict[str, Any]:
        bins = {str(i): [n, round(s, 9)] for i, (n, s) in sorted(self.bins.items())}
        return {"z": self.zeros, "b": bins}

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | None) -> Sketch:
        sketch = cls()
        if data:
            sketch.zeros = int(data.get("z", 0))
            sketch.bins = {
                int(i): [int(n), float(s)] for i, (n, s) in (data.get("b") or {}).items()
            }
            sketch.count = sketch.zeros + sum(int(n) for n, _s in sketch.bins.values())
        return sketch


def exact_quantile(ordered: list[float], q: float) -> float | None:
    """Return the nearest-rank q-quantile of sorted values (the value at rank ⌈q·n⌉)."""
    if not ordered:
        return None
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


# -- SLO rules the rollups count -----------------------------------------------------------


@dataclass(frozen=True)
class SloRule:
    """A metric SLO's notion of a good run; `signature` names it in rollups."""

    metric: str
    below: float | None
    above: float | None
    signature: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if self.below is not None:
            signature = f"{self.metric}<={self.below!r}"
        else:
            signature = f"{self.metric}>={self.above!r}"
        object.__setattr__(self, "signature", signature)

    def value(self, data: Mapping[str, Any]) -> float | None:
        """Return the run's value of the metric (`duration` falls back to the run's own)."""
        value = (data.get("metrics") or {}).get(self.metric)
        if value is None and self.metric == "duration":
            value = data.get("duration")
        return value if type(value) in _NUMBERS else None

    def good(self, value: float) -> bool:
        # at the limit is good: a threshold at the same limit would not fire either
        return value <= self.below if self.below is not None else value >= self.above  # type: ignore[operator]


def slo_rules(config: Any, key: str) -> list[SloRule]:
    """Return the metric SLO rules that apply to an instance key."""
    check, environment = split_key(key)
    rules: dict[str, SloRule] = {}
    for slo in (getattr(config, "slos", None) or {}).values():
        if slo.metric is None or not slo_covers(slo.check, check, environment):
            continue
        rule = SloRule(slo.metric, slo.below, slo.above)
        rules[rule.signature] = rule
    return list(rules.values())


def slo_covers(ref: str, check: str, environment: str | None) -> bool:
    """Return whether an SLO's `check` (`name` or `name@env`) takes in an instance."""
    name, _, env = ref.partition("@")
    return name == check and (not env or env == environment)


# -- aggregates ------------------------------------------------------------------------------


@dataclass
class Aggregate:
    """What happened to one instance over some span; muted runs are only counted."""

    runs: int = 0
    failures: int = 0
    muted_runs: int = 0
    muted_failures: int = 0
    latencies: list[float] | None = field(default_factory=list)
    """Exact latencies while built from raw rows only; None once a rollup is merged in."""
    sketch: Sketch = field(default_factory=Sketch)
    from_response_time: int = 0
    metrics: dict[str, list[float]] = field(default_factory=dict)  # [count, sum, min, max]
    slo: dict[str, list[int]] = field(default_factory=dict)  # signature -> [good, bad]
    first_at: float | None = None
    last_at: float | None = None

    # -- building --------------------------------------------------------------------------

    def add(
        self, at: float, data: Mapping[str, Any], muted: bool, rules: Iterable[SloRule]
    ) -> None:
        """Count one stored result (a `results` row's time and data)."""
        ok = bool(data.get("ok"))
        if self.first_at is None or at < self.first_at:
            self.first_at = at
        if self.last_at is None or at > self.last_at:
            self.last_at = at
        if muted:
            self.muted_runs += 1
            self.muted_failures += not ok
            return
        self.runs += 1
        self.failures += not ok
        metrics = data.get("metrics") or {}
        if ok:
            latency = metrics.get("response_time")
            if type(latency) in _NUMBERS:
                self.from_response_time += 1
            else:
                latency = data.get("duration")
            if type(latency) in _NUMBERS:
                if self.latencies is not None:
                    self.latencies.append(latency)
                self.sketch.add(latency)
        stats = self.metrics
        for name, value in metrics.items():
            if type(value) not in _NUMBERS or not math.isfinite(value):
                continue
            stat = stats.get(name)
            if stat is None:
                stats[name] = [1, value, value, value]
            else:
                stat[0] += 1
                stat[1] += value
                if value < stat[2]:
                    stat[2] = value
                if value > stat[3]:
                    stat[3] = value
        for rule in rules:
            value = rule.value(data)
            if value is None:
                continue
            counts = self.slo.setdefault(rule.signature, [0, 0])
            counts[0 if rule.good(value) else 1] += 1

    def merge(self, other: Aggregate) -> None:
        """Add another span's aggregate to this one."""
        self.runs += other.runs
        self.failures += other.failures
        self.muted_runs += other.muted_runs
        self.muted_failures += other.muted_failures
        if self.latencies is not None and other.latencies is not None:
            self.latencies.extend(other.latencies)
        else:
            self.latencies = None
        self.sketch.merge(other.sketch)
        self.from_response_time += other.from_response_time
        for name, (count, total, low, high) in other.metrics.items():
            stat = self.metrics.get(name)
            if stat is None:
                self.metrics[name] = [count, total, low, high]
            else:
                stat[0] += count
                stat[1] += total
                stat[2] = min(stat[2], low)
                stat[3] = max(stat[3], high)
        for signature, (good, bad) in other.slo.items():
            counts = self.slo.setdefault(signature, [0, 0])
            counts[0] += good
            counts[1] += bad
        for at in (other.first_at, other.last_at):
            if at is not None:
                self.first_at = at if self.first_at is None else min(self.first_at, at)
                self.last_at = at if self.last_at is None else max(self.last_at, at)

    # -- reading ---------------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return not (self.runs or self.muted_runs)

    @property
    def uptime(self) -> float | None:
        return 1.0 - self.failures / self.runs if self.runs else None

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.runs if self.runs else None

    @property
    def latency_source(self) -> str | None:
        """`response_time`, `duration` (the run's own time) or `mixed`."""
        if not self.sketch.count:
            return None
        if self.from_response_time == self.sketch.count:
            return "response_time"
        return "duration" if not self.from_response_time else "mixed"

    @property
    def exact(self) -> bool:
        """True when percentiles come from every raw value, not from day sketches."""
        return self.latencies is not None

    def quantile(self, q: float) -> float | None:
        if self.latencies is not None:
            return exact_quantile(sorted(self.latencies), q)
        return self.sketch.quantile(q)

    def percentiles(self) -> dict[str, float | None]:
        if self.latencies is not None:
            ordered = sorted(self.latencies)
            return {name: exact_quantile(ordered, q) for name, q in QUANTILES.items()}
        return {name: self.sketch.quantile(q) for name, q in QUANTILES.items()}

    def metric_stats(self) -> dict[str, dict[str, float]]:
        return {
            name: {"avg": total / count, "min": low, "max": high, "samples": int(count)}
            for name, (count, total, low, high) in sorted(self.metrics.items())
        }

    def slo_counts(self, signature: str | None) -> tuple[int, int]:
        """Return (good, bad) runs for an SLO: availability when `signature` is None."""
        if signature is None:
            return self.runs - self.failures, self.failures
        good, bad = self.slo.get(signature, (0, 0))
        return good, bad

    # -- the stored form -------------------------------------------------------------------

    def rollup_data(self, day: float, basis: str, computed_at: float) -> dict[str, Any]:
        """Return the `rollups` row data of one day."""
        latency = None
        if self.sketch.count:
            latency = {
                **self.percentiles(),
                "samples": self.sketch.count,
                "source": self.latency_source,
            }
        return {
            "v": VERSION,
            "day": iso_day(day),
            "runs": self.runs,
            "failures": self.failures,
            "muted_runs": self.muted_runs,
            "muted_failures": self.muted_failures,
            "uptime": self.uptime,
            "latency": latency,
            "sketch": self.sketch.to_data(),
            "from_response_time": self.from_response_time,
            "metrics": {
                name: {"count": int(c), "sum": s, "min": lo, "max": hi, "avg": s / c}
                for name, (c, s, lo, hi) in sorted(self.metrics.items())
            },
            "slo": {sig: {"good": g, "bad": b} for sig, (g, b) in sorted(self.slo.items())},
            "first_at": self.first_at,
            "last_at": self.last_at,
            "basis": basis,
            "computed_at": computed_at,
        }

    @classmethod
    def from_rollup(cls, data: Mapping[str, Any]) -> Aggregate:
        return cls(
            runs=int(data.get("runs", 0)),
            failures=int(data.get("failures", 0)),
            muted_runs=int(data.get("muted_runs", 0)),
            muted_failures=int(data.get("muted_failures", 0)),
            latencies=None,
            sketch=Sketch.from_data(data.get("sketch")),
            from_response_time=int(data.get("from_response_time", 0)),
            metrics={
                name: [m["count"], m["sum"], m["min"], m["max"]]
                for name, m in (data.get("metrics") or {}).items()
            },
            slo={sig: [c["good"], c["bad"]] for sig, c in (data.get("slo") or {}).items()},
            first_at=data.get("first_at"),
            last_at=data.get("last_at"),
        )


# -- maintenance ---------------------------------------------------------------------------


class MuteSpans:
    """The `mute` occurrences covering one instance, merged; asked about by instant."""

    def __init__(self, spans: Iterable[tuple[float, float]]):
        merged: list[list[float]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def __bool__(self) -> bool:
        return bool(self.starts)

    def __call__(self, at: float) -> bool:
        i = bisect.bisect_right(self.starts, at) - 1
        return i >= 0 and at < self.ends[i]


def mute_spans(
    maintenance: Maintenance | None,
    key: str,
    labels: Mapping[str, str] | None,
    since: float,
    until: float,
) -> MuteSpans:
    """Return the `mute` windows covering an instance within [since, until)."""
    if not maintenance:
        return MuteSpans(())
    check, environment = split_key(key)
    return MuteSpans(
        (o.start, o.end)
        for o in maintenance.occurrences(since, until)
        if o.effect == "mute" and o.covers_check(check, environment, labels or {})
    )


_WINDOW_SCOPE = {"name", "schedule", "duration", "start", "end", "checks", "labels", "environments"}


def rollup_basis(config: Any, labels: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """Return a digest of what classifies a run in a rollup: metric SLOs and mute windows."""
    signatures = sorted(
        f"{slo.check}:{SloRule(slo.metric, slo.below, slo.above).signature}"
        for slo in (getattr(config, "slos", None) or {}).values()
        if slo.metric is not None
    )
    windows = [
        w.model_dump(mode="json", include=_WINDOW_SCOPE)
        for w in (getattr(config, "maintenance", None) or [])
        if w.effect == "mute"
    ]
    defaults = getattr(config, "defaults", None)
    payload: dict[str, Any] = {
        "v": VERSION,
        "slos": signatures,
        "windows": windows,
        "tz": getattr(defaults, "timezone", None),
    }
    if labels and any(w.get("labels") for w in windows):
        payload["labels"] = {k: dict(v) for k, v in sorted(labels.items())}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def instance_labels(config: Any, instances: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """Return each instance's labels (from expanded instances, else from the config)."""
    if instances is not None:
        return {key: dict(getattr(i, "labels", {}) or {}) for key, i in instances.items()}
    defaults = getattr(getattr(config, "defaults", None), "labels", None) or {}
    labels: dict[str, dict] = {}
    for name, check in (getattr(config, "checks", None) or {}).items():
        for environment in check.environments or [None]:
            key = f"{name}@{environment}" if environment else name
            labels[key] = {**defaults, **(check.labels or {})}
    return labels


# -- reading history -----------------------------------------------------------------------


@dataclass
class _Marker:
    through: float = 0.0
    basis: str | None = None


class History:
    """Aggregates of an instance over any span, from rollups and raw results.

    Build one per configuration. With `cache_hours` (the daemon's SLO evaluation), the
    aggregates of whole past hours are kept, so each evaluation reads only the hour
    under way and the edges of its windows.
    """

    def __init__(
        self,
        store: StateStore,
        config: Any,
        *,
        instances: Mapping[str, Any] | None = None,
        maintenance: Maintenance | None = None,
        cache_hours: bool = False,
    ):
        self.store = store
        self.config = config
        self.labels = instance_labels(config, instances)
        self.maintenance = maintenance if maintenance is not None else Maintenance(config)
        self.retention = float(config.state.retention)
        self.basis = rollup_basis(config, self.labels)
        self.cache_hours = cache_hours
        self.marker = _Marker()
        self._rules: dict[str, list[SloRule]] = {}
        self._days: dict[tuple[str, float], Aggregate | None] = {}
        self._hours: dict[tuple[str, float], Aggregate] = {}
        self._used: set[tuple[str, float]] = set()  # cached days and hours asked for
        self.rows_read = 0

    async def refresh(self) -> None:
        """Read how far rollups are done; call before a batch of `aggregate` calls."""
        doc = await self.store.get(*DONE) or {}
        marker = _Marker(float(doc.get("through") or 0.0), doc.get("basis"))
        if marker.basis != self.marker.basis:
            self._days.clear()  # re-rolled days replace what was read before
        self.marker = marker

    def rules(self, key: str) -> list[SloRule]:
        rules = self._rules.get(key)
        if rules is None:
            rules = self._rules[key] = slo_rules(self.config, key)
        return rules

    def sweep(self) -> None:
        """Drop the cached days and hours not asked for since the last sweep.

        Call after each round of the same windows: as they slide, what they left behind
        goes, and the cache stays about one day of hours per instance and window edge.
        """
        for cache in (self._days, self._hours):
            for cached in [k for k in cache if k not in self._used]:
                del cache[cached]
        self._used.clear()

    async def aggregate(
        self, key: str, since: float, until: float, *, now: float | None = None
    ) -> Aggregate:
        """Return what happened to an instance in [since, until).

        Whole days that are rolled up come from rollups; so does a partial day whose raw
        results are past retention (the span is then widened to that whole day). The rest
        is read from raw results.
        """
        now = until if now is None else now
        total = Aggregate()
        if until <= since:
            return total
        raw_from = now - self.retention
        current = self.marker.basis == self.basis
        days: list[float] = []
        raw: list[list[float]] = []
        d = day_start(since)
        while d < until:
            lo, hi = max(since, d), min(until, d + DAY)
            whole = lo == d and hi == d + DAY
            rolled = d + DAY <= self.marker.through
            if rolled and (lo < raw_from or (whole and current)):
                days.append(d)
            elif raw and raw[-1][1] == lo:
                raw[-1][1] = hi
            else:
                raw.append([lo, hi])
            d += DAY
        if days:
            for aggregate in await self._rollups(key, days):
                if aggregate is not None:
                    total.merge(aggregate)
        for lo, hi in raw:
            total.merge(await self._raw(key, lo, hi, now))
        return total

    async def daily(
        self, key: str, since: float, until: float, *, now: float | None = None
    ) -> list[tuple[str, Aggregate]]:
        """Return (UTC date, aggregate) per day of [since, until): the status page's bars.

        The rolled-up days come from one read of the rollups.
        """
        days = []
        d = day_start(since)
        while d < until:
            days.append(d)
            d += DAY
        rolled = [d for d in days if d + DAY <= self.marker.through]
        if rolled:
            await self._rollups(key, rolled)
        return [
            (iso_day(d), await self.aggregate(key, max(d, since), min(d + DAY, until), now=now))
            for d in days
        ]

    async def _rollups(self, key: str, days: list[float]) -> list[Aggregate | None]:
        missing = [d for d in days if (key, d) not in self._days]
        if missing:
            rows = await self.store.read(STREAM, key, since=missing[0], until=missing[-1] + DAY)
            self.rows_read += len(rows)
            found = latest_rollups(rows)
            for d in missing:
                data = found.get(d)
                self._days[(key, d)] = None if data is None else Aggregate.from_rollup(data)
        self._used.update((key, d) for d in days)
        return [self._days[(key, d)] for d in days]

    async def _raw(self, key: str, since: float, until: float, now: float) -> Aggregate:
        """Aggregate raw results of [since, until), using and filling the hour cache."""
        segments: list[tuple[float, float, float | None]] = []
        t = since
        while t < until:
            h = math.floor(t / HOUR) * HOUR
            end = min(until, h + HOUR)
            cacheable = self.cache_hours and t == h and end == h + HOUR
            segments.append((t, end, h if cacheable and end <= now - HOUR_SETTLE else None))
            t = end
        total = Aggregate()
        pending: list[tuple[float, float, float | None]] = []
        for segment in segments:
            hour = segment[2]
            if hour is not None and (key, hour) in self._hours:
                self._used.add((key, hour))
                if pending:
                    total.merge(await self._read_segments(key, pending, now))
                    pending = []
                total.merge(self._hours[(key, hour)])
            else:
                pending.append(segment)
        if pending:
            total.merge(await self._read_segments(key, pending, now))
        return total

    async def _read_segments(
        self, key: str, segments: list[tuple[float, float, float | None]], now: float
    ) -> Aggregate:
        since, until = segments[0][0], segments[-1][1]
        rows = await self.store.read("results", key, since=since, until=until)
        self.rows_read += len(rows)
        muted = mute_spans(self.maintenance, key, self.labels.get(key), since, until)
        rules = self.rules(key)
        total = Aggregate()
        ends = [s[1] for s in segments]
        # cached hours serve SLOs, which need no exact latencies: keep them small
        parts = [Aggregate(latencies=None if self.cache_hours else []) for _ in segments]
        for row in rows:
            i = bisect.bisect_right(ends, row.at)
            if i < len(parts):
                parts[i].add(row.at, row.data, bool(muted) and muted(row.at), rules)
        for (_lo, _hi, hour), part in zip(segments, parts, strict=True):
            if hour is not None:
                self._hours[(key, hour)] = part
                self._used.add((key, hour))
            total.merge(part)
        return total


def latest_rollups(rows: Iterable[Row]) -> dict[float, dict[str, Any]]:
    """Return, per day, the data of the newest rollup row (a recomputation wins)."""
    found: dict[float, dict[str, Any]] = {}
    for row in rows:
        seen = found.get(row.at)
        if seen is None or row.data.get("computed_at", 0) >= seen.get("computed_at", 0):
            found[row.at] = row.data
    return found


# -- computing rollups ---------------------------------------------------------------------


async def roll_up(
    store: StateStore,
    config: Any,
    *,
    now: float,
    instances: Mapping[str, Any] | None = None,
    maintenance: Maintenance | None = None,
    max_days: int | None = None,
) -> list[str]:
    """Roll up every completed day not yet done; prune old rollups; return the days done.

    Safe to run from several replicas: a day is claimed insert-once first, and a second
    row for the same (instance, day) would be identical and deduplicated on read anyway.
    """
    maintenance = maintenance if maintenance is not None else Maintenance(config)
    labels = instance_labels(config, instances)
    basis = rollup_basis(config, labels)
    retention = float(config.state.retention)
    doc = await store.get(*DONE)
    end = day_start(now - SETTLE)  # days before this one are over and settled
    if doc is None:
        oldest = await store.read("results", limit=1)
        start = day_start(oldest[0].at) if oldest else end
    else:
        start = float(doc["through"])
        if doc.get("basis") != basis:
            # re-classify the days whose raw results are all still there
            start = min(start, math.ceil((now - retention) / DAY) * DAY)
    done: list[str] = []
    d = start
    while d < end and (max_days is None or len(done) < max_days):
        if not await _claim(store, basis, d, now):
            break  # another replica is on it
        await roll_up_day(
            store, config, d, basis=basis, labels=labels, maintenance=maintenance, now=now
        )
        await store.put(DONE[0], {DONE[1]: {"through": d + DAY, "basis": basis, "at": now}})
        done.append(iso_day(d))
        d += DAY
    if doc is None and not done:
        await store.put(DONE[0], {DONE[1]: {"through": end, "basis": basis, "at": now}})
    await store.trim(STREAM, now - float(config.state.rollup_retention))
    return done


async def roll_up_day(
    store: StateStore,
    config: Any,
    day: float,
    *,
    basis: str | None = None,
    labels: Mapping[str, Mapping[str, str]] | None = None,
    maintenance: Maintenance | None = None,
    now: float,
) -> int:
    """Compute one UTC day's rollup of every instance and append it; return the rows.

    Appending again for the same day replaces the earlier rows for readers (the newest
    `computed_at` wins), so this is also how a day is recomputed.
    """
    maintenance = maintenance if maintenance is not None else Maintenance(config)
    labels = labels if labels is not None else instance_labels(config)
    basis = basis or rollup_basis(config, labels)
    out: list[Row] = []
    for key in sorted(await store.stream_keys("results")):
        rows = await store.read("results", key, since=day, until=day + DAY)
        if not rows:
            continue
        muted = mute_spans(maintenance, key, labels.get(key), day, day + DAY)
        rules = slo_rules(config, key)
        aggregate = Aggregate()
        for row in rows:
            aggregate.add(row.at, row.data, bool(muted) and muted(row.at), rules)
        out.append(Row(key=key, at=day, data=aggregate.rollup_data(day, basis, now)))
        # a long catch-up must not starve the daemon's other tasks
        await anyio.lowlevel.checkpoint()
    if out:
        await store.append(STREAM, out)
    return len(out)


async def _claim(store: StateStore, basis: str, day: float, now: float) -> bool:
    key = f"rollup|{basis}|{iso_day(day)}"
    if await store.insert_once("claims", key, {"at": now}):
        return True
    doc = await store.get("claims", key) or {}
    return float(doc.get("at", 0.0)) < now - CLAIM_STALE


async def run(daemon: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """Roll up completed days for as long as the daemon runs (its `rollups` task)."""
    task_status.started()
    while True:
        now = daemon.clock.now()
        try:
            # not kept in a local across the sleep: a reload's instances replace these
            done = await roll_up(
                daemon.store,
                daemon.config,
                now=now,
                instances=getattr(getattr(daemon, "runtime", None), "instances", None),
                maintenance=daemon.maintenance,
            )
            if done:
                log.info("rolled up results", extra={"days": len(done), "last": done[-1]})
        except Exception as exc:  # the store may be away: next round then
            log.warning("rolling up results failed", extra={"error": str(exc)})
        await daemon.clock.sleep_until(now + INTERVAL)
