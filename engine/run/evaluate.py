"""Judge results: the implicit `up` rule and threshold rules, counters, windows, flapping.

One `Evaluator` per check instance keeps a short history of recent results (as long as
its longest window) and one `RuleState` per rule id; `evaluate()` turns a result into
alert changes exactly as DESIGN.md Semantics ► Rules and alerts says. The state is a
plain dict (`state_doc()`) so the store can keep it and a restart (or another replica)
continues the counters where they were.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from watchkeeper.engine.alerting.alerts import Alert, AlertChange, new_alert_id
from watchkeeper.engine.config.instances import Instance
from watchkeeper.engine.run.probe import Result
from watchkeeper.schema.checks import Threshold
from watchkeeper.schema.units import format_against, format_duration, format_quantity

UP = "up"
DERIVED = ("error_rate", "uptime")


@dataclass(slots=True)
class Point:
    """One past result, as the history keeps it."""

    at: float
    ok: bool
    values: dict[str, float]


@dataclass(slots=True)
class RuleState:
    """Counters of one rule (all its severity tiers) for one instance."""

    active: bool = False
    severity: str | None = None
    fails: int = 0
    oks: int = 0
    # a threshold rule's tiers breached (index -> runs, and since when); None until one
    # is: the `up` rule of every check never needs them
    breach: dict[str, int] | None = None
    since: dict[str, float] | None = None
    clean: int = 0
    flips: list[float] | tuple[()] = ()  # replaced, never changed in place
    flapping: bool = False
    alert_id: str | None = None

    def to_doc(self) -> dict[str, Any]:
        # written on every run: a hand-made copy is several times cheaper than asdict()
        return {
            "active": self.active,
            "severity": self.severity,
            "fails": self.fails,
            "oks": self.oks,
            "breach": dict(self.breach) if self.breach else {},
            "since": dict(self.since) if self.since else {},
            "clean": self.clean,
            "flips": list(self.flips),
            "flapping": self.flapping,
            "alert_id": self.alert_id,
        }


class AlertBook:
    """Every alert the daemon knows about, with the open one per (instance, rule)."""

    def __init__(self, alerts: Iterable[Alert] = ()):
        self.by_id: dict[str, Alert] = {}
        self.open: dict[tuple[str, str], Alert] = {}
        for alert in alerts:
            self.add(alert)

    def add(self, alert: Alert) -> None:
        self.by_id[alert.id] = alert
        if alert.open:
            self.open[(alert.instance, alert.rule)] = alert

    def close(self, alert: Alert) -> None:
        self.open.pop((alert.instance, alert.rule), None)

    def get_open(self, instance: str, rule: str) -> Alert | None:
        return self.open.get((instance, rule))

    def open_for(self, instance: str) -> list[Alert]:
        return [a for (key, _rule), a in self.open.items() if key == instance]


@lru_cache(maxsize=16)
def _ranks(severities: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(severities)}


def flat_values(result: Result) -> dict[str, float]:
    """Return a result's metrics with labelled samples as `name{k=v,...}` keys."""
    return result.flat_metrics()


def labelled_key(metric: str, where: dict[str, str]) -> str:
    return metric + "{" + ",".join(f"{k}={v}" for k, v in sorted(where.items())) + "}"


EXTRACT_KINDS = {
    **dict.fromkeys(("ns", "us", "ms", "s", "m", "h", "d"), "duration"),
    **dict.fromkeys(("bytes", "kb", "mb", "gb", "kib", "mib", "gib"), "size"),
    **dict.fromkeys(("ratio", "percent"), "ratio"),
}


def metric_kind(metric: str | None, units: Mapping[str, Any] | None = None) -> str:
    """Return what a metric measures: duration, size, ratio or number.

    `units` are a check's `extract` entries (name -> Extraction, or name -> unit): what
    monitor.yaml says wins over what the name suggests.
    """
    if metric is None:
        return "number"
    name = metric.split("{")[0]
    declared = (units or {}).get(name)
    if declared is not None:
        return EXTRACT_KINDS.get(getattr(declared, "unit", declared), "number")
    if name.endswith(("_time", "_expiry", "runtime", "duration", "_age", "_latency", "_seconds")):
        return "duration"
    if name.endswith(("_usage", "_rate", "_ratio", "uptime", "_percent")):
        return "ratio"
    if name.endswith(("_bytes", "_size", "_memory", "_free", "_rss", "_available")) or (
        "memory" in name or "heap" in name
    ):
        return "size"
    return "number"


def render_value(metric: str | None, value: float | None) -> str:
    """Show a metric value in the unit people think in (2.5s, 812ms, 87.5%, 943.7MB)."""
    if value is None or metric is None:
        return "n/a"
    return format_quantity(value, metric_kind(metric))


def render_against(
    metric: str | None,
    value: float,
    threshold: float,
    direction: str | None = None,
    units: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """Show a value and its threshold in one unit, the value with enough digits to show
    why it crossed (2.004s above 2s)."""
    return format_against(value, threshold, metric_kind(metric, units), direction)


def measure_of(rule: Threshold) -> str:
    """Return what a rule judges, in words: `db_query_time`, `response_time (p95 over 1h)`."""
    metric = rule.metric if not rule.where else labelled_key(rule.metric, rule.where)
    if rule.agg in (None, "last"):
        return metric
    return f"{metric} ({rule.agg} over {format_duration(rule.window or 0)})"


class Evaluator:
    """Evaluate one instance's results into alert changes."""

    __slots__ = (
        "_said", "book", "history", "instance", "last_at", "last_ok", "rank", "rules", "span",
        "tiers",
    )  # fmt: skip

    def __init__(
        self,
        instance: Instance,
        severities: list[str],
        book: AlertBook,
        state: dict[str, Any] | None = None,
        history: Iterable[Point] = (),
    ):
        self.instance = instance
        self.rank = _ranks(tuple(severities))  # shared: one per severity list, not per check
        self.book = book
        self.rules: dict[str, RuleState] = {}
        # only the rules' windows read the history (flapping counts its own flips): a
        # longer history costs memory per run and nothing else (a reload that adds a
        # longer window reads what it lacks from the store, as a restart does); a check
        # without windows keeps none
        self.span = instance.window_needed()
        self.history: deque[Point] | tuple[()] = deque(history) if self.span else ()
        self.tiers: dict[str, list[Threshold]] = {}
        for rule in instance.thresholds:
            self.tiers.setdefault(rule.rule_id, []).append(rule)
        for tiers in self.tiers.values():
            tiers.sort(key=lambda r: self.rank.get(r.severity, len(self.rank)))
        for rid, doc in ((state or {}).get("rules") or {}).items():
            if rid == UP or rid in self.tiers:
                self.rules[rid] = RuleState(**doc)
        self.last_at: float | None = (state or {}).get("last_at")
        self.last_ok: bool | None = (state or {}).get("last_ok")
        self._said: str | None = None  # the probe's message in the run being evaluated

    # -- state ------------------------------------------------------------------------------

    def state_doc(self) -> dict[str, Any]:
        return {
            "rules": {rid: s.to_doc() for rid, s in self.rules.items()},
            "last_at": self.last_at,
            "last_ok": self.last_ok,
            "fingerprint": self.instance.fingerprint,
        }

    def rule(self, rid: str) -> RuleState:
        state = self.rules.get(rid)
        if state is None:
            state = self.rules[rid] = RuleState()
        return state

    @property
    def down(self) -> bool:
        """True while this instance's `up` alert fires."""
        state = self.rules.get(UP)
        return bool(state and state.active)

    # -- evaluation -------------------------------------------------------------------------

    def evaluate(self, result: Result, at: float) -> list[AlertChange]:
        """Take one result into account and return what changed."""
        values = flat_values(result)
        history = self.history
        if self.span:
            history.append(Point(at, result.ok, values))
            horizon = at - self.span
            while history and history[0].at < horizon:
                history.popleft()
        self.last_at, self.last_ok = at, result.ok
        self._said = result.message or None
        changes = self._up(result, at)
        for rid, tiers in self.tiers.items():
            derived = tiers[0].metric in DERIVED
            if result.ok or derived:  # a failed run leaves threshold counters as they are
                changes += self._threshold(rid, tiers, values, at)
        return changes

    def _up(self, result: Result, at: float) -> list[AlertChange]:
        inst, state = self.instance, self.rule(UP)
        if result.ok:
            state.fails, state.oks = 0, state.oks + 1
        else:
            state.fails, state.oks = state.fails + 1, 0
        summary = result.message or ("up" if result.ok else "down")
        detail = dict(summary=summary, metric=None, value=None, threshold=None, direction=None)
        if not state.active:
            if result.ok:
                return self._discard_pending(UP, at)
            if state.fails >= inst.failure_threshold:
                state.active, state.severity = True, inst.severity
                return self._became_active(UP, inst.severity, at, detail)
            return self._pending(UP, inst.severity, at, detail)
        alert = self.book.get_open(inst.key, UP)
        if alert is not None and not result.ok:
            alert.summary, alert.updated_at = summary, at
        if result.ok and state.oks >= inst.success_threshold:
            state.active = False
            return self._became_inactive(UP, at, f"recovered: {summary}")
        return []

    def _threshold(
        self, rid: str, tiers: list[Threshold], values: dict[str, float], at: float
    ) -> list[AlertChange]:
        state = self.rule(rid)
        if state.breach is None:
            state.breach = {}
        if state.since is None:
            state.since = {}
        breaching: list[tuple[Threshold, float]] = []
        evaluated = False
        for index, tier in enumerate(tiers):
            value, enough = self._value(tier, values, at)
            if not enough:
                continue  # too few samples (or no such metric): no change at all
            evaluated = True
            key = str(index)
            if _breaches(tier, value):
                state.breach[key] = state.breach.get(key, 0) + 1
                state.since.setdefault(key, at)
                breaching.append((tier, value))
            else:
                state.breach.pop(key, None)
                state.since.pop(key, None)
        if not evaluated:
            return []
        satisfied = [(t, v) for t, v in breaching if self._held_long_enough(state, tiers, t, at)]
        if satisfied:
            tier, value = satisfied[0]  # tiers are sorted most severe first
            state.clean = 0
            detail = self._detail(tier, value)
            if not state.active:
                state.active, state.severity = True, tier.severity
                return self._became_active(rid, tier.severity, at, detail)
            alert = self.book.get_open(self.instance.key, rid)
            if alert is not None:
                alert.value, alert.summary, alert.updated_at = value, detail["summary"], at
                alert.said = detail["said"]
                if state.severity != tier.severity and not alert.flapping:
                    previous, state.severity = state.severity, tier.severity
                    alert.severity = tier.severity
                    alert.threshold = tier.limit
                    alert.severity_history.append([at, tier.severity])
                    return [AlertChange(alert, "severity", previous)]
            state.severity = tier.severity
            return []
        if breaching:
            state.clean = 0
            if not state.active:
                tier, value = breaching[0]
                return self._pending(rid, tier.severity, at, self._detail(tier, value))
            return []
        state.clean += 1
        if state.active and state.clean >= self.instance.success_threshold:
            state.active = False
            return self._became_inactive(rid, at, "back within its threshold")
        if not state.active:
            return self._discard_pending(rid, at)
        return []

    def _held_long_enough(
        self, state: RuleState, tiers: list[Threshold], tier: Threshold, at: float
    ) -> bool:
        key = str(tiers.index(tier))
        if isinstance(tier.for_, int):
            return (state.breach or {}).get(key, 0) >= tier.for_
        return at - (state.since or {}).get(key, at) >= tier.for_

    def _value(
        self, rule: Threshold, values: dict[str, float], at: float
    ) -> tuple[float | None, bool]:
        """Return the rule's current value, and whether there is enough data to judge."""
        if rule.metric in DERIVED:
            window = [p for p in self.history if p.at > at - (rule.window or 0)]
            needed = rule.min_samples or self.instance.min_samples
            if len(window) < needed:
                return None, False
            error_rate = sum(not p.ok for p in window) / len(window)
            return (error_rate if rule.metric == "error_rate" else 1 - error_rate), True
        if rule.agg in (None, "last") and rule.window is None:
            value = self._pick(rule, values)
            return value, value is not None
        window = [p for p in self.history if p.ok and p.at > at - (rule.window or 0)]
        series = [v for p in window if (v := self._pick(rule, p.values)) is not None]
        # an aggregate over a window says little until the window holds enough runs
        if len(series) < (rule.min_samples or self.instance.min_samples):
            return None, False
        return _aggregate(rule.agg or "avg", series), True

    @staticmethod
    def _pick(rule: Threshold, values: dict[str, float]) -> float | None:
        if rule.where:
            return values.get(labelled_key(rule.metric, rule.where))
        value = values.get(rule.metric)
        if value is not None:
            return value
        prefix = rule.metric + "{"
        candidates = [v for k, v in values.items() if k.startswith(prefix)]
        if not candidates:
            return None
        # without `where`, a labelled metric is judged by its worst instance
        return max(candidates) if rule.above is not None else min(candidates)

    def _detail(self, rule: Threshold, value: float) -> dict[str, Any]:
        metric = rule.metric if not rule.where else labelled_key(rule.metric, rule.where)
        what = (
            metric
            if rule.agg in (None, "last")
            else (f"{rule.agg} {metric} over {format_duration(rule.window or 0)}")
        )
        units = getattr(self.instance.options, "extract", None)
        shown, limit = render_against(rule.metric, value, rule.limit, rule.direction, units)
        summary = f"{what} is {shown}, {rule.direction} the {rule.severity} threshold {limit}"
        if rule.description:
            summary += f" ({rule.description})"
        return dict(
            summary=summary,
            metric=metric,
            value=value,
            threshold=rule.limit,
            direction=rule.direction,
            said=self._said,
        )

    # -- transitions (with flapping) --------------------------------------------------------

    def _flip(self, state: RuleState, at: float) -> None:
        state.flips = [t for t in state.flips if t > at - self.instance.flap_window] + [at]

    def _became_active(
        self, rid: str, severity: str, at: float, detail: dict[str, Any]
    ) -> list[AlertChange]:
        state = self.rules[rid]
        self._flip(state, at)
        alert = self.book.get_open(self.instance.key, rid)
        if alert is not None and alert.status == "firing":
            alert.updated_at = at
            return []  # already firing: a flapping alert stays open through the flips
        if alert is None:
            alert = self._new_alert(rid, severity, at, detail)
        alert.status, alert.fired_at, alert.updated_at = "firing", at, at
        alert.severity = severity
        alert.severity_history.append([at, severity])
        for key, value in detail.items():
            setattr(alert, key, value)
        state.alert_id = alert.id
        if len(state.flips) > self.instance.flap_threshold and not state.flapping:
            state.flapping = alert.flapping = True
            return [AlertChange(alert, "flapping")]
        return [AlertChange(alert, "firing")]

    def _became_inactive(self, rid: str, at: float, reason: str) -> list[AlertChange]:
        state = self.rules[rid]
        self._flip(state, at)
        alert = self.book.get_open(self.instance.key, rid)
        if alert is None:
            return []
        if state.flapping or len(state.flips) > self.instance.flap_threshold:
            if not state.flapping:
                state.flapping = alert.flapping = True
                return [AlertChange(alert, "flapping")]
            alert.updated_at = at
            return []  # stays open while flapping; `settle()` ends it when stable
        return [self._resolve(alert, state, at, reason)]

    def _resolve(self, alert: Alert, state: RuleState, at: float, reason: str) -> AlertChange:
        alert.status, alert.resolved_at, alert.updated_at = "resolved", at, at
        alert.resolve_reason = reason
        state.alert_id = None
        self.book.close(alert)
        return AlertChange(alert, "resolved")

    def settle(self, at: float) -> list[AlertChange]:
        """End flapping for rules whose flips have quietened: notify once, stable."""
        changes = []
        for rid, state in self.rules.items():
            if not state.flapping:
                continue
            recent = [t for t in state.flips if t > at - self.instance.flap_window]
            if len(recent) > self.instance.flap_threshold // 2:
                continue
            state.flips, state.flapping = recent, False
            alert = self.book.get_open(self.instance.key, rid)
            if alert is None:
                continue
            alert.flapping = False
            if state.active:
                alert.updated_at = at
                changes.append(AlertChange(alert, "stable"))
            else:
                changes.append(self._resolve(alert, state, at, "stable again"))
        return changes

    def _pending(
        self, rid: str, severity: str, at: float, detail: dict[str, Any]
    ) -> list[AlertChange]:
        alert = self.book.get_open(self.instance.key, rid)
        if alert is not None:
            alert.updated_at = at
            for key, value in detail.items():
                setattr(alert, key, value)
            return []
        alert = self._new_alert(rid, severity, at, detail)
        self.rules[rid].alert_id = alert.id
        return [AlertChange(alert, "pending")]

    def _discard_pending(self, rid: str, at: float) -> list[AlertChange]:
        alert = self.book.get_open(self.instance.key, rid)
        if alert is None or alert.status != "pending":
            return []
        alert.status, alert.resolved_at, alert.updated_at = "resolved", at, at
        alert.resolve_reason = "recovered before it fired"
        self.rules[rid].alert_id = None
        self.book.close(alert)
        return [AlertChange(alert, "discarded")]

    def _new_alert(self, rid: str, severity: str, at: float, detail: dict[str, Any]) -> Alert:
        inst = self.instance
        alert = Alert(
            id=new_alert_id(),
            check=inst.check,
            environment=inst.environment,
            rule=rid,
            severity=severity,
            status="pending",
            started_at=at,
            updated_at=at,
            labels=dict(inst.labels),
            runbook=inst.runbook,
            description=inst.description,
            replica=inst.replica,
            **detail,
        )
        self.book.add(alert)
        return alert

    def resolve_all(self, at: float, reason: str) -> list[AlertChange]:
        """Resolve every open alert of this instance (the check was removed or disabled)."""
        changes = []
        for alert in self.book.open_for(self.instance.key):
            state = self.rule(alert.rule)
            state.active = False
            if alert.status == "pending":
                changes += self._discard_pending(alert.rule, at)
            else:
                changes.append(self._resolve(alert, state, at, reason))
        return changes


def _breaches(rule: Threshold, value: float | None) -> bool:
    if value is None or math.isnan(value):
        return False
    if rule.above is not None:
        return value > rule.above
    return value < rule.below  # type: ignore[operator]


def _aggregate(agg: str, series: list[float]) -> float:
    if agg == "avg":
        return sum(series) / len(series)
    if agg == "min":
        return min(series)
    if agg == "max":
        return max(series)
    if agg == "sum":
        return sum(series)
    if agg == "count":
        return float(len(series))
    if agg == "last":
        return series[-1]
    q = int(agg[1:]) / 100.0  # p50, p90, p95, p99: nearest-rank percentile
    ordered = sorted(series)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]
