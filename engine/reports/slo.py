"""Service level objectives: SLIs, error budgets, burn rates and burn-rate alerts.

An SLO on a check with environments is judged per instance (`api@production` and
`api@staging` each have their own budget). Its SLI over the rolling `window` is

- availability (no `metric`): good runs ÷ runs;
- metric SLO: runs whose metric is at or below `below` (at or above `above`) ÷ runs
  that report the metric;

counting no run inside a `mute` maintenance window that covers the instance. The error
budget is 1 − objective; `budget_remaining` is the share of it not yet spent (negative
once the objective is missed); the burn rate over a window is its bad share ÷ the
budget (1 = spending exactly the budget over the SLO window).

Burn-rate alerts follow the multiwindow rules of the Google SRE workbook: page when the
1h and 5m burn rates both exceed `fast` (default 14.4: 2% of a 30-day budget in an
hour), or the 6h and 30m ones both exceed `slow` (default 6: 5% in six hours), while the
budget burns now (the 5m rate over `slow`). A firing alert resolves as soon as the 5m
burn rate is back under `slow` (or neither condition holds any more): the burning
stopped, though the longer windows still remember it. The alert is the internal rule
`burn-rate` of check `slo:<name>`, labelled with the check's labels plus `slo: <name>`
and `kind: slo`, raised and cleared through `Runtime.condition`, so it takes the same
holds, routes and escalation as any other; alerting holds it while its check's own
alerts fire ("covered by ...": the same outage pages once).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from watchkeeper.engine.config.instances import instance_key
from watchkeeper.engine.state.rollups import Aggregate, History, SloRule, mute_spans, slo_covers
from watchkeeper.schema.slos import SLO, BurnAlert
from watchkeeper.schema.units import format_duration

__all__ = [
    "BURN_WINDOWS",
    "COVER_WINDOW",
    "KIND",
    "SloParts",
    "Target",
    "budget_text",
    "covered_instance",
    "evaluate_slos",
    "run",
    "slo_status",
    "slo_warnings",
    "targets",
]

log = logging.getLogger("watchkeeper.slo")

BURN_WINDOWS: dict[str, float] = {"5m": 300.0, "30m": 1800.0, "1h": 3600.0, "6h": 21600.0}
RULE = "burn-rate"
CHECK_PREFIX = "slo:"
KIND = {"kind": "slo"}
"""The label every burn-rate alert carries besides the check's, for routes to tell it apart."""
NOW_WINDOW = "5m"
"""The burn window that says whether the budget burns now: alerts resolve on it."""
COVER_WINDOW = BURN_WINDOWS[NOW_WINDOW]
"""How long after its check's own alert resolves a burn-rate alert stays covered by it:
the 5m window still holds that outage's failures until then."""
AT_RISK = 0.25
"""Below this share of budget left (or while a burn condition holds) an SLO is at risk."""
INTERVAL = 60.0
"""How often the daemon evaluates its SLOs (and raises or clears burn-rate alerts)."""
STATUS_TTL = 2 * INTERVAL
"""`slo_status` returns the daemon's last evaluation while it is this fresh."""
_DEFAULT_ALERT = BurnAlert()


@dataclass(frozen=True)
class Target:
    """One SLO applied to one check instance."""

    name: str
    slo: SLO
    key: str
    check: str
    environment: str | None
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)
    runbook: str | None = None

    @property
    def signature(self) -> str | None:
        """The metric rule's name in rollups; None for availability."""
        if self.slo.metric is None:
            return None
        return SloRule(self.slo.metric, self.slo.below, self.slo.above).signature


def targets(config: Any, instances: Mapping[str, Any]) -> list[Target]:
    """Return every (SLO, instance) pair of a config, in SLO then instance order."""
    found = []
    for name, slo in (getattr(config, "slos", None) or {}).items():
        for key, instance in sorted(instances.items()):
            if slo_covers(slo.check, instance.check, instance.environment):
                found.append(
                    Target(
                        name,
                        slo,
                        key,
                        instance.check,
                        instance.environment,
                        dict(getattr(instance, "labels", {}) or {}),
                        getattr(instance, "runbook", None),
                    )
                )
    return found


# -- judging -----------------------------------------------------------------------------


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 12)


def burning(rates: Mapping[str, float | None], alert: BurnAlert) -> str | None:
    """Return `fast` or `slow` when that multiwindow condition holds, else None."""

    def over(label: str, limit: float) -> bool:
        rate = rates.get(label)
        return rate is not None and rate > limit

    if over("1h", alert.fast) and over("5m", alert.fast):
        return "fast"
    if over("6h", alert.slow) and over("30m", alert.slow):
        return "slow"
    return None


def burning_now(rates: Mapping[str, float | None]) -> float | None:
    """Return the burn rate of the shortest window that holds runs (5m, else 30m)."""
    for label in (NOW_WINDOW, "30m"):
        if rates.get(label) is not None:
            return rates[label]
    return None


def alert_active(rates: Mapping[str, float | None], alert: BurnAlert, firing: bool) -> bool:
    """Decide whether a burn-rate alert fires after this evaluation.

    A new alert needs a multiwindow condition and the budget burning now (the 5m rate, or
    the 30m one when no run fell in the last 5 minutes, over `slow`), so that the slow
    condition's 30m memory of a burst cannot open a second incident once it is over. A
    firing alert resolves when neither condition holds, or when the last 5 minutes hold
    runs and burn under `slow`.
    """
    condition = burning(rates, alert)
    if condition is None:
        return False
    if firing:
        recent = rates.get(NOW_WINDOW)
        return recent is None or recent > alert.slow
    recent = burning_now(rates)
    return recent is not None and recent > alert.slow


def budget_left(remaining: float | None) -> str:
    """Say what is left of an error budget in a table cell: `62.3%`, or `exhausted (166× spent)`."""
    if remaining is None:
        return "no data"
    if remaining < 0:
        return f"exhausted ({1.0 - remaining:.3g}× spent)"
    return f"{remaining * 100:.1f}%"


def budget_text(remaining: float | None, window_text: str) -> str:
    """Say how much of the error budget is left in plain words (never a negative share)."""
    if remaining is None:
        return f"no runs yet to judge the {window_text} error budget"
    if remaining < 0:
        spent = 1.0 - remaining
        return f"the {window_text} error budget is exhausted ({spent:.3g}× spent)"
    return f"{remaining * 100:.1f}% of the {window_text} error budget left"


def covered_instance(config: Any, alert: Any) -> str | None:
    """Return the check instance a burn-rate alert is about, or None for other alerts."""
    if alert.rule != RULE or not alert.check.startswith(CHECK_PREFIX):
        return None
    slo = (getattr(config, "slos", None) or {}).get(alert.check[len(CHECK_PREFIX) :])
    if slo is None:
        return None
    return instance_key(slo.check.split("@", 1)[0], alert.environment)


def judge(
    target: Target, window: Aggregate, burn: Mapping[str, Aggregate], now: float
) -> dict[str, Any]:
    """Return one SLO instance's status (the shape `slo_status` lists)."""
    slo = target.slo
    budget = 1.0 - slo.objective
    good, bad = window.slo_counts(target.signature)
    total = good + bad
    rates: dict[str, float | None] = {}
    for label, aggregate in burn.items():
        g, b = aggregate.slo_counts(target.signature)
        rates[label] = _ratio((b / (g + b)) / budget) if g + b else None
    sli = good / total if total else None
    remaining = 1.0 - (bad / total) / budget if total else None
    hot = burning(rates, slo.alert or _DEFAULT_ALERT)
    if not total:
        status = "no-data"
    elif bad > budget * total * (1 + 1e-9):
        status = "breached"
    elif (remaining is not None and remaining < AT_RISK) or hot:
        status = "at-risk"
    else:
        status = "ok"
    return {
        "slo": target.name,
        "check": target.check,
        "environment": target.environment,
        "kind": "availability" if slo.metric is None else "metric",
        "metric": slo.metric,
        "below": slo.below,
        "above": slo.above,
        "objective": _ratio(slo.objective),
        "window": slo.window,
        "window_text": format_duration(slo.window),
        "description": slo.description,
        "good": good,
        "bad": bad,
        "total": total,
        "sli": _ratio(sli),
        "error_budget": _ratio(budget),
        "bad_allowed": round(budget * total, 6),
        "budget_remaining": _ratio(remaining),
        "burn_rates": rates,
        "burning": hot,
        "alert": slo.alert.model_dump() if slo.alert else None,
        "status": status,
        "muted_runs": window.muted_runs,
        "evaluated_at": _iso(now),
    }


async def burn_aggregates(history: History, key: str, now: float) -> dict[str, Aggregate]:
    """Return an instance's good/bad counts over each burn window ending at `now`.

    One read of the longest window; only the counts an SLO needs are kept (runs,
    failures, metric SLO verdicts), as this runs for every SLO every minute.
    """
    since = now - max(BURN_WINDOWS.values())
    rows = await history.store.read("results", key, since=since, until=now)
    muted = mute_spans(history.maintenance, key, history.labels.get(key), since, now)
    rules = history.rules(key)
    starts = [(now - length, Aggregate(latencies=None)) for length in BURN_WINDOWS.values()]
    for row in rows:
        if muted and muted(row.at):
            continue
        failed = not row.data.get("ok")
        verdicts = []
        for rule in rules:
            value = rule.value(row.data)
            if value is not None:
                verdicts.append((rule.signature, 0 if rule.good(value) else 1))
        for start, aggregate in starts:
            if row.at >= start:
                aggregate.runs += 1
                aggregate.failures += failed
                for signature, verdict in verdicts:
                    aggregate.slo.setdefault(signature, [0, 0])[verdict] += 1
    return {label: aggregate for label, (_s, aggregate) in zip(BURN_WINDOWS, starts, strict=True)}


async def evaluate(
    history: History,
    found: list[Target],
    now: float,
    known: Mapping[tuple[str, float], Aggregate] | None = None,
) -> list[tuple[Target, dict[str, Any]]]:
    """Judge each target as of `now` (call `history.refresh()` first).

    `known` holds aggregates already made, by (instance, window length) ending at `now`.
    """
    out = []
    by_key: dict[str, list[Target]] = {}
    for target in found:
        by_key.setdefault(target.key, []).append(target)
    for key, group in by_key.items():
        burn = await burn_aggregates(history, key, now)
        windows: dict[float, Aggregate] = {}
        for target in group:
            length = target.slo.window
            if length not in windows:
                windows[length] = (known or {}).get((key, length)) or await history.aggregate(
                    key, now - length, now, now=now
                )
            out.append((target, judge(target, windows[length], burn, now)))
    return out


# -- the daemon's side ---------------------------------------------------------------------


@dataclass(eq=False)
class SloParts:
    """What SLO evaluation needs when there is no Daemon object (tests, tools)."""

    config: Any
    store: Any
    runtime: Any = None
    maintenance: Any = None
    instances: Mapping[str, Any] | None = None
    clock: Any = None


@dataclass(eq=False)
class _State:
    config: Any
    maintenance: Any
    history: History
    targets: list[Target]
    results: list[dict[str, Any]] = field(default_factory=list)
    at: float | None = None
    lock: anyio.Lock = field(default_factory=anyio.Lock)


_STATES: weakref.WeakKeyDictionary[Any, _State] = weakref.WeakKeyDictionary()


def _parts(owner: Any) -> SloParts:
    if isinstance(owner, SloParts):
        parts = owner
    else:
        parts = SloParts(
            config=owner.config,
            store=owner.store,
            runtime=getattr(owner, "runtime", None),
            maintenance=getattr(owner, "maintenance", None),
            clock=getattr(owner, "clock", None),
        )
    if parts.instances is None and parts.runtime is not None:
        parts.instances = parts.runtime.instances
    if parts.instances is None:
        from watchkeeper.engine.config.instances import expand
        from watchkeeper.engine.plugins import registry

        parts.instances = expand(parts.config, registry())
    return parts


def _state(owner: Any, parts: SloParts) -> _State:
    state = _STATES.get(owner)
    if (
        state is None
        or state.config is not parts.config
        or state.maintenance is not parts.maintenance
    ):
        history = History(
            parts.store,
            parts.config,
            instances=parts.instances,
            maintenance=parts.maintenance,
            cache_hours=True,
        )
        state = _State(
            parts.config, parts.maintenance, history, targets(parts.config, parts.instances)
        )
        try:
            _STATES[owner] = state
        except TypeError:  # an owner without weak references: no caching between calls
            pass
    return state


async def evaluate_slos(
    daemon_or_parts: Any, now: float | None = None, *, alerts: bool = True
) -> list[dict[str, Any]]:
    """Evaluate every SLO as of `now`; raise or clear burn-rate alerts; return the statuses.

    Takes the Daemon (its config, store, maintenance, runtime and clock) or a SloParts.
    Keeps its caches on that object between calls, so the daemon calling it every
    INTERVAL reads only the last hour's raw results and the edges of each window.
    """
    parts = _parts(daemon_or_parts)
    if now is None:
        now = parts.clock.now() if parts.clock is not None else _wall()
    state = _state(daemon_or_parts, parts)
    async with state.lock:
        await state.history.refresh()
        judged = await evaluate(state.history, state.targets, now)
        state.history.sweep()
        state.results = [status for _target, status in judged]
        state.at = now
    if alerts and parts.runtime is not None:
        await _alert(parts.runtime, judged)
    return state.results


async def slo_status(daemon: Any) -> list[dict[str, Any]]:
    """Return every SLO instance's status for the HTTP API and the status page.

    The daemon's last periodic evaluation when it is fresh, else a new one (without
    touching alerts). Each item: slo, check, environment, kind, metric, below, above,
    objective, window (seconds), window_text, description, good, bad, total, sli,
    error_budget, bad_allowed, budget_remaining, burn_rates {5m, 30m, 1h, 6h},
    burning (fast | slow | null), alert, status (ok | at-risk | breached | no-data),
    muted_runs, evaluated_at.
    """
    parts = _parts(daemon)
    now = parts.clock.now() if parts.clock is not None else _wall()
    state = _STATES.get(daemon)
    if (
        state is not None
        and state.config is parts.config
        and state.at is not None
        and 0 <= now - state.at < STATUS_TTL
    ):
        return state.results
    return await evaluate_slos(daemon, now, alerts=False)


async def _alert(runtime: Any, judged: list[tuple[Target, dict[str, Any]]]) -> None:
    wanted: set[tuple[str, str | None]] = set()
    for target, status in judged:
        alert = target.slo.alert
        if alert is None:
            continue
        check = f"{CHECK_PREFIX}{target.name}"
        wanted.add((check, target.environment))
        open_alert = runtime.book.get_open(instance_key(check, target.environment), RULE)
        active = alert_active(status["burn_rates"], alert, firing=open_alert is not None)
        if not active and open_alert is None:
            continue
        await runtime.condition(
            RULE,
            active=active,
            severity=alert.severity,
            summary=_summary(target, status, alert, active),
            check=check,
            environment=target.environment,
            labels={**target.labels, "slo": target.name, **KIND},
            runbook=target.runbook,
        )
    for (_instance, rule), open_alert in list(runtime.book.open.items()):
        if rule != RULE or not open_alert.check.startswith(CHECK_PREFIX):
            continue
        if (open_alert.check, open_alert.environment) not in wanted:
            await runtime.condition(
                RULE,
                active=False,
                severity=open_alert.severity,
                summary="the SLO or its alert was removed from monitor.yaml",
                check=open_alert.check,
                environment=open_alert.environment,
            )


def _summary(target: Target, status: dict[str, Any], alert: BurnAlert, active: bool) -> str:
    rates = status["burn_rates"]
    where = instance_key(target.check, target.environment)

    def rate(label: str) -> str:
        value = rates.get(label)
        return "n/a" if value is None else f"{value:.1f}×"

    if not active:
        burn = f"burn stopped: {rate(NOW_WINDOW)} over the last 5m, {rate('1h')} over 1h"
    elif status["burning"] == "fast":
        burn = f"burning {rate('1h')} over 1h and {rate('5m')} over 5m (limit {alert.fast:g}×)"
    else:
        burn = f"burning {rate('6h')} over 6h and {rate('30m')} over 30m (limit {alert.slow:g}×)"
    budget = budget_text(status["budget_remaining"], status["window_text"])
    return f"SLO {target.name} on {where}: error budget {burn}; {budget}"


def _wall() -> float:
    import time

    return time.time()


def _iso(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- validate -------------------------------------------------------------------------------

PASSIVE_PROBES = ("heartbeat", "composite")
"""Checks that run on no schedule of their own: how often they report is not known here."""


def slo_warnings(config: Any, loaded: Any = None) -> list[Any]:
    """Return `validate` warnings about burn-rate alerts that cannot work as meant.

    - a check that runs so seldom that one bad run in the 1h window already burns faster
      than `fast`: the alert then fires on any single failure and says nothing the
      check's own rules do not say sooner;
    - a burn-rate alert whose first matching route starts an escalation policy that runs
      self-healing actions (it carries the check's labels, e.g. `heal: redeploy`): a
      route matching `{rule: burn-rate}` or `{labels: {kind: slo}}` before it keeps SLO
      alerts apart.

    `loaded` (the loader's output) places each warning at its line in the file.
    """
    from watchkeeper.engine.config.loader import dotted
    from watchkeeper.engine.config.problems import Problem

    def warn(path: tuple, message: str) -> Problem:
        mark = None
        if loaded is not None:
            from watchkeeper.engine.config.validation import mark_at

            mark = mark_at(loaded, path)
        return Problem.at(mark, dotted(path), message, "warning")

    problems: list[Problem] = []
    checks = getattr(config, "checks", None) or {}
    for name, slo in (getattr(config, "slos", None) or {}).items():
        if slo.alert is None:
            continue
        check = checks.get(slo.check.split("@", 1)[0])
        if check is None:
            continue  # an unknown check is crossref's error already
        budget = 1.0 - slo.objective
        hourly = _runs_per_hour(config, check)
        if hourly is not None and budget > 0 and (1.0 / hourly) / budget > slo.alert.fast:
            one = (1.0 / hourly) / budget
            # the slowest schedule under which one bad run stays under `fast` over 1h
            needed = format_duration(max(1, int(3600.0 * slo.alert.fast * budget)))
            problems.append(
                warn(
                    ("slos", name, "alert"),
                    f"{slo.check} runs about {hourly:.0f} times an hour: one bad run is a burn "
                    f"of {one:.0f}× over 1h, over the fast limit {slo.alert.fast:g}×, so "
                    "this burn-rate alert fires on any single failure (the check's own "
                    f"rules say that sooner); run the check every {needed} or more often, "
                    "or drop `alert:`",
                )
            )
        actions = _healing_route(config, name, slo, check)
        if actions is not None:
            index, policy, names = actions
            problems.append(
                warn(
                    ("slos", name, "alert"),
                    f"the burn-rate alert carries {slo.check}'s labels and reaches routes[{index}],"
                    f" whose escalation {policy!r} runs {', '.join(names)}: an SLO alert "
                    "is no outage to self-heal; add a route matching "
                    "`{rule: burn-rate}` (or `{labels: {kind: slo}}`) before it",
                )
            )
    return problems


def _runs_per_hour(config: Any, check: Any) -> float | None:
    if check.probe in PASSIVE_PROBES:
        return None
    defaults = getattr(config, "defaults", None)
    schedule = check.schedule or getattr(defaults, "schedule", None)
    if schedule is None:
        return 3600.0 / 300.0  # the built-in default: every 5m
    if schedule.every:
        return 3600.0 / schedule.every
    from watchkeeper.engine.schedule.timetable import runs_per_week

    return runs_per_week(schedule.cron, schedule.timezone or "UTC") / (7 * 24)


def _healing_route(
    config: Any, name: str, slo: SLO, check: Any
) -> tuple[int, str, list[str]] | None:
    """Return the first route a burn-rate alert meets that escalates to actions, if any."""
    from watchkeeper.engine.alerting.routing import Subject, matching_routes

    defaults = getattr(config, "defaults", None)
    labels = {**(getattr(defaults, "labels", None) or {}), **(check.labels or {})}
    environments = (
        [slo.check.split("@", 1)[1]] if "@" in slo.check else (check.environments or [None])
    )
    escalation = getattr(config, "escalation", None) or {}
    for environment in environments:
        subject = Subject(
            kind="alert",
            severity=slo.alert.severity if slo.alert else None,
            check=f"{CHECK_PREFIX}{name}",
            environment=environment,
            labels={**labels, "slo": name, **KIND},
            rule=RULE,
        )
        for index in matching_routes(config.routes, subject, list(config.severities)):
            policy = config.routes[index].escalate
            names = [a for level in escalation.get(policy) or [] for a in level.actions]
            if names:
                return index, policy, names
    return None


async def run(daemon: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """Evaluate SLOs every INTERVAL for as long as the daemon runs (its `slos` task)."""
    task_status.started()
    while True:
        now = daemon.clock.now()
        if getattr(daemon.config, "slos", None):
            try:
                await evaluate_slos(daemon, now)
            except Exception as exc:  # the store may be away: next round then
                log.warning("evaluating SLOs failed", extra={"error": str(exc)})
        await daemon.clock.sleep_until(now + INTERVAL)
