"""The report: uptime, latency, error rate, metrics, incidents and SLO budgets per check.

One function builds it for `watchkeeper report` and for tasks with `report: {since}` (the
seed's weekly review). Figures leave out runs inside `mute` maintenance windows that
cover the instance (counted as `muted_runs`). Whole UTC days come from daily rollups,
partial days from raw results, so a month of a hundred checks reads about a day of rows.
Latency percentiles are exact when only raw results were read, and within 1% when whole
days came from rollups (`latency.exact` says which).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio

from watchkeeper.engine.alerting.maintenance import Maintenance
from watchkeeper.engine.config.instances import instance_key
from watchkeeper.engine.reports.slo import budget_left, evaluate, targets
from watchkeeper.engine.state.rollups import Aggregate, History
from watchkeeper.schema.units import format_duration

__all__ = ["build_report", "render_text", "select_instances", "task_report"]

log = logging.getLogger("watchkeeper.report")

READS_AT_ONCE = 4
"""Instances aggregated concurrently: store reads overlap with counting."""


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def select_instances(instances: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Return the instances named (`name` or `name@env`); raise KeyError naming unknown ones."""
    names = list(names)
    # a located check is reported as one check: its runs per location are its parts
    instances = {k: i for k, i in instances.items() if i.parent is None}
    if not names:
        return dict(instances)
    chosen = {k: i for k, i in instances.items() if k in names or i.check in names}
    unknown = [
        n for n in names if n not in instances and not any(i.check == n for i in instances.values())
    ]
    if unknown:
        raise KeyError(", ".join(unknown))
    return chosen


async def build_report(
    config: Any,
    store: Any,
    *,
    since: float,
    until: float,
    maintenance: Maintenance | None = None,
    instances: Mapping[str, Any] | None = None,
    checks: Iterable[str] = (),
    now: float | None = None,
) -> dict[str, Any]:
    """Return the report of [since, until) as a JSON-ready dict (docs/slos.md shows it).

    `instances` defaults to the config's expanded check instances; `checks` narrows them
    to names (`name` or `name@env`). SLOs are evaluated as of `until` over their own
    windows, with their attainment within the period besides. `now` (default `until`)
    tells which raw results retention has already removed.
    """
    now = until if now is None else now
    if instances is None:
        from watchkeeper.engine.config.instances import expand
        from watchkeeper.engine.plugins import registry

        instances = expand(config, registry())
    instances = select_instances(instances, checks)
    history = History(store, config, instances=instances, maintenance=maintenance)
    await history.refresh()
    slo_targets = targets(config, instances)
    incidents = await _incidents(store, since, until)
    if checks:
        # only the chosen instances' incidents, and their SLOs' burn-rate alerts
        wanted = {(i.check, i.environment) for i in instances.values()}
        wanted |= {(f"slo:{t.name}", t.environment) for t in slo_targets}
        incidents = [i for i in incidents if (i["check"], i["environment"]) in wanted]
    by_instance: dict[str, list[dict[str, Any]]] = {}
    for incident in incidents:
        key = instance_key(incident["check"], incident["environment"])
        by_instance.setdefault(key, []).append(incident)
    aggregates: dict[str, Aggregate] = {}
    limiter = anyio.CapacityLimiter(READS_AT_ONCE)

    async def one(key: str) -> None:
        async with limiter:
            aggregates[key] = await history.aggregate(key, since, until, now=now)

    async with anyio.create_task_group() as tg:
        for key in instances:
            tg.start_soon(one, key, name=f"report {key}")
    rows = []
    pooled = Aggregate(latencies=None)
    for key, instance in sorted(instances.items()):
        pooled.merge(aggregates[key])
        rows.append(_check_row(instance, aggregates[key], by_instance.get(key, [])))
    slos = []
    known = {(key, until - since): aggregate for key, aggregate in aggregates.items()}
    for target, status in await evaluate(history, slo_targets, until, known):
        good, bad = aggregates[target.key].slo_counts(target.signature)
        period = {
            "good": good,
            "bad": bad,
            "total": good + bad,
            "sli": good / (good + bad) if good + bad else None,
        }
        slos.append({**status, "period": period})
    durations = [i["duration"] for i in incidents if i["duration"] is not None]
    return {
        "since": _iso(since),
        "until": _iso(until),
        "period": until - since,
        "period_text": format_duration(until - since),
        "generated_at": _iso(datetime.now(UTC).timestamp()),
        "totals": {
            "checks": len(rows),
            "runs": pooled.runs,
            "failures": pooled.failures,
            "muted_runs": pooled.muted_runs,
            "uptime": pooled.uptime,
            "error_rate": pooled.error_rate,
            "incidents": len(incidents),
            "mttr": _mean(durations),
        },
        "checks": rows,
        "slos": slos,
        "incidents": incidents,
    }


def _check_row(
    instance: Any, aggregate: Aggregate, incidents: list[dict[str, Any]]
) -> dict[str, Any]:
    latency = None
    if aggregate.sketch.count:
        latency = {
            **aggregate.percentiles(),
            "samples": aggregate.sketch.count,
            "source": aggregate.latency_source,
            "exact": aggregate.exact,
        }
    durations = [i["duration"] for i in incidents if i["duration"] is not None]
    return {
        "check": instance.check,
        "environment": instance.environment,
        "runs": aggregate.runs,
        "failures": aggregate.failures,
        "muted_runs": aggregate.muted_runs,
        "uptime": aggregate.uptime,
        "error_rate": aggregate.error_rate,
        "latency": latency,
        "metrics": aggregate.metric_stats(),
        "incidents": len(incidents),
        "mttr": _mean(durations),
        "first_run": _iso(aggregate.first_at),
        "last_run": _iso(aggregate.last_at),
    }


async def _incidents(store: Any, since: float, until: float) -> list[dict[str, Any]]:
    """Return the alerts that fired within [since, until), oldest first."""
    found = []
    for doc in (await store.get_all("alerts")).values():
        fired = doc.get("fired_at")
        if fired is None or not since <= fired < until:
            continue
        resolved = doc.get("resolved_at")
        found.append(
            {
                "id": doc.get("id"),
                "check": doc.get("check"),
                "environment": doc.get("environment"),
                "rule": doc.get("rule"),
                "severity": doc.get("severity"),
                "summary": doc.get("summary"),
                "source": doc.get("source", "check"),
                "fired_at": _iso(fired),
                "resolved_at": _iso(resolved),
                "duration": resolved - fired if resolved is not None else None,
            }
        )
    found.sort(key=lambda i: (i["fired_at"], i["id"] or ""))
    return found


async def task_report(daemon: Any, name: str) -> dict[str, Any] | None:
    """Return the report a task attaches (`report: {since}`), None when it has none.

    A report that cannot be built is logged and left out: the checklist still goes.
    The dict also carries `text`, the report rendered as plain text for notifiers.
    """
    task = daemon.config.tasks.get(name)
    if task is None or task.report is None:
        return None
    now = daemon.clock.now()
    try:
        report = await build_report(
            daemon.config,
            daemon.store,
            since=now - task.report.since,
            until=now,
            maintenance=daemon.maintenance,
            instances=daemon.runtime.instances,
        )
    except Exception as exc:
        log.warning("task report failed", extra={"task": name, "error": str(exc)})
        return None
    report["text"] = render_text(report)
    return report


# -- rendering ---------------------------------------------------------------------------


def percent(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.2f}s" if value < 60 else format_duration(value)


def metric_text(metric: str, value: float | None) -> str:
    """Show a metric value; seconds keep two decimals below a minute (2.50s, not 2s)."""
    from watchkeeper.engine.run.evaluate import render_value

    name = metric.split("{")[0]
    if value is not None and name.endswith(("_time", "duration")) and 1 <= value < 60:
        return seconds(value)
    return render_value(metric, value)


def burn(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}×"


def name_of(item: Mapping[str, Any]) -> str:
    return instance_key(item["check"], item.get("environment"))


def render_text(report: Mapping[str, Any]) -> str:
    """Return the report as plain text: a few lines per check and per SLO."""
    totals = report["totals"]
    lines = [
        f"Report {report['since']} to {report['until']} ({report['period_text']}): "
        f"uptime {percent(totals['uptime'])}, {totals['incidents']} incident(s), "
        f"MTTR {seconds(totals['mttr'])}",
        "",
    ]
    for row in report["checks"]:
        latency = row["latency"] or {}
        lines.append(
            f"{name_of(row)}: uptime {percent(row['uptime'])}, "
            f"error rate {percent(row['error_rate'])}, "
            f"p50 {seconds(latency.get('p50'))} p95 {seconds(latency.get('p95'))} "
            f"p99 {seconds(latency.get('p99'))}, {row['runs']} runs, "
            f"{row['incidents']} incident(s), MTTR {seconds(row['mttr'])}"
        )
        extra = [
            f"{metric} avg {metric_text(metric, stat['avg'])}"
            for metric, stat in row["metrics"].items()
            if metric != "response_time"
        ]
        if extra:
            lines.append("  " + ", ".join(extra))
    if report["slos"]:
        lines.append("")
        for slo in report["slos"]:
            lines.append(
                f"SLO {slo['slo']} ({name_of(slo)}): {slo['status']}, SLI {percent(slo['sli'])} "
                f"of {percent(slo['objective'])} over {slo['window_text']}, "
                f"budget left {budget_left(slo['budget_remaining'])}, "
                f"burn 1h {burn(slo['burn_rates'].get('1h'))}"
            )
    return "\n".join(lines)
