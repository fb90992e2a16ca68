"""One check's page (`GET /checks/{check}`): its response time as an SVG chart drawn on
the server, daily uptime, latest results, incidents, maintenance windows and settings;
for a check run from several locations, each location's state and latency.

Figures come from `History` (engine/state/rollups.py), the same aggregates reports and
SLOs use: whole rolled-up days from the daily rollups, the rest from raw results, runs in
a `mute` window left out. The chart shows each period's median and 95th percentile of the
good runs' response time (the probe's `response_time`, else the run's duration) with the
check's thresholds on that time as lines. Probe messages, probe options and the runbook
are shown only to the admin: they may name internal hosts; secrets are masked for all.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from watchkeeper.engine.api import views
from watchkeeper.engine.api.status_page import (
    StatusPage,
    View,
    clock,
    day_class,
    headline,
    percent,
    render_template,
    status_text,
    timeline,
)
from watchkeeper.engine.observe.redaction import MASK, is_secret_name
from watchkeeper.engine.run.evaluate import metric_kind
from watchkeeper.engine.state.rollups import DAY, HOUR, History, day_start
from watchkeeper.schema.checks import CheckCommon
from watchkeeper.schema.units import format_duration, format_limit, format_quantity

RANGES = {
    "24h": ("last 24 hours", 24, HOUR, "%H:%M", 6),
    "7d": ("last 7 days", 28, 6 * HOUR, "%a %d", 4),
    "30d": ("last 30 days", 30, DAY, "%b %d", 5),
}
"""name -> (words, buckets, bucket length, axis label format, buckets per axis label)."""
DEFAULT_RANGE = "24h"
UPTIME_DAYS = 30
RESULTS = 20
INCIDENT_DAYS = 30
INCIDENTS = 20
LATENCY_METRICS = ("response_time", "duration")
"""Metrics the chart plots: thresholds on them are drawn as lines."""

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 34
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass
class Period:
    """One bucket of the chart or one day of the uptime table."""

    start: float
    runs: int
    failures: int
    p50: float | None
    p95: float | None

    @property
    def uptime(self) -> float | None:
        return 1 - self.failures / self.runs if self.runs else None


# -- reading -------------------------------------------------------------------------------


async def periods(history: History, key: str, range_name: str, now: float) -> list[Period]:
    """Return the chart's periods for a range, oldest first (the last one runs to now)."""
    _words, count, length, _fmt, _every = RANGES[range_name]
    if length == DAY:
        first = day_start(now) - (count - 1) * DAY
        days = await history.daily(key, first, now, now=now)
        return [_period(first + i * DAY, aggregate) for i, (_date, aggregate) in enumerate(days)]
    end = math.ceil(now / length) * length
    found = []
    for i in range(count):
        start = end - (count - i) * length
        aggregate = await history.aggregate(key, start, min(start + length, now), now=now)
        found.append(_period(start, aggregate))
    return found


def range_start(range_name: str, now: float) -> float:
    """Return when a range's first period starts (the chart's left edge)."""
    _words, count, length, _fmt, _every = RANGES[range_name]
    if length == DAY:
        return day_start(now) - (count - 1) * DAY
    return math.ceil(now / length) * length - count * length


async def location_rows(
    history: History, instance: Any, row: dict[str, Any], range_name: str, now: float
) -> dict[str, Any] | None:
    """Return the Locations section of a check run from several places: each location's
    state, last run, how long that run took, and its uptime, p50 and p95 over the range
    (from the results of its own run, `check/location`); None for a check run from one."""
    spec = getattr(instance, "locations", None)
    seen = {s["location"]: s for s in row.get("locations") or ()}
    if spec is None or not seen:
        return None
    since = range_start(range_name, now)
    places = []
    for location, key in zip(spec.from_, instance.location_keys, strict=True):
        state = seen.get(location) or {"status": "unknown"}
        aggregate = await history.aggregate(key, since, now, now=now)
        quantiles = aggregate.percentiles()
        places.append(
            {
                "location": location,
                "status": state["status"],
                "why": state.get("why"),
                "last_run": clock(state["last_run"]) if state.get("last_run") else "never",
                "took": _seconds(state.get("duration")),
                "runs": aggregate.runs,
                "uptime": percent(aggregate.uptime),
                "p50": _seconds(quantiles["p50"]),
                "p95": _seconds(quantiles["p95"]),
            }
        )
    down = sum(p["status"] == "down" for p in places)
    return {
        "quorum": spec.needed,
        "count": len(places),
        "down": down,
        "places": places,
        "words": RANGES[range_name][0],
    }


def _period(start: float, aggregate: Any) -> Period:
    quantiles = aggregate.percentiles()
    return Period(start, aggregate.runs, aggregate.failures, quantiles["p50"], quantiles["p95"])


async def latest_results(daemon: Any, key: str, detailed: bool) -> list[dict[str, Any]]:
    """Return the newest results, newest first; messages only for the admin."""
    try:
        rows = await daemon.store.read("results", key, newest_first=True, limit=RESULTS)
    except Exception:
        return []
    found = []
    for row in rows:
        data = row.data
        metrics = data.get("metrics") or {}
        took = metrics.get("response_time", data.get("duration"))
        found.append(
            {
                "time": clock(row.at),
                "ok": bool(data.get("ok")),
                "took": _seconds(took),
                "message": (data.get("message") or "") if detailed else "",
            }
        )
    return found


async def check_incidents(daemon: Any, key: str, now: float) -> list[dict[str, Any]]:
    """Return the instance's firing incidents and those resolved lately, newest first."""
    from watchkeeper.engine.alerting.alerts import Alert

    seen = {
        a.id: a
        for a in daemon.runtime.book.open.values()
        if a.instance == key and a.status == "firing"
    }
    try:
        docs = await daemon.store.get_all("alerts")
    except Exception:
        docs = {}
    for doc_id, doc in docs.items():
        if doc_id in seen or doc.get("status") != "resolved" or not doc.get("fired_at"):
            continue
        if (doc.get("resolved_at") or 0) < now - INCIDENT_DAYS * DAY:
            continue
        alert = Alert.from_doc(doc)
        if alert.instance == key:
            seen[doc_id] = alert
    chosen = sorted(seen.values(), key=lambda a: a.fired_at or a.started_at, reverse=True)
    return [
        {
            "id": alert.id,
            "rule": alert.rule,
            "severity": alert.severity,
            "status": alert.status,
            "summary": alert.summary,
            "acknowledged": alert.acked_at is not None,
            "timeline": await timeline(daemon.store, alert),
        }
        for alert in chosen[:INCIDENTS]
    ]


def windows(daemon: Any, instance: Any, now: float) -> list[dict[str, Any]]:
    """Return the maintenance windows under way or starting soon that cover the instance."""
    found = []
    until = now + views.UPCOMING_DAYS * DAY
    for window in daemon.maintenance.occurrences(now, until):
        if not window.covers_check(instance.check, instance.environment, instance.labels):
            continue
        found.append(
            {
                "name": window.name,
                "effect": window.effect,
                "reason": window.reason,
                "under_way": window.under_way(now),
                "start_text": clock(window.start),
                "end_text": clock(window.end),
            }
        )
    return found


# -- settings ------------------------------------------------------------------------------

_COMMON = set(CheckCommon.model_fields) | {"probe", "type"}


def schedule_text(instance: Any) -> str:
    """Return when the check runs, in words."""
    schedule = instance.schedule
    if schedule is None:
        return "none: its results arrive from outside (heartbeats) or from other checks"
    if schedule.every is not None:
        text = f"every {format_duration(schedule.every)}"
    else:
        text = f"cron {schedule.cron} ({schedule.timezone or instance.timezone})"
    if schedule.jitter:
        text += f", spread by up to {format_duration(schedule.jitter)}"
    return text


def threshold_rows(instance: Any) -> list[dict[str, Any]]:
    """Return the check's threshold rules, their limits written in their units."""
    units = getattr(instance.options, "extract", None) or {}
    rows = []
    for rule in instance.thresholds:
        kind = metric_kind(rule.metric, units)
        limits = []
        if rule.above is not None:
            limits.append(f"above {format_limit(rule.above, kind)}")
        if rule.below is not None:
            limits.append(f"below {format_limit(rule.below, kind)}")
        over = []
        if rule.agg:
            over.append(str(rule.agg))
        if rule.window:
            over.append(f"over {format_duration(rule.window)}")
        if isinstance(rule.for_, float):
            over.append(f"breaching for {format_duration(rule.for_)}")
        elif rule.for_ > 1:
            over.append(f"{rule.for_} evaluations in a row")
        if rule.where:
            over.append(", ".join(f"{k}={v}" for k, v in rule.where.items()))
        rows.append(
            {
                "name": rule.rule_id,
                "metric": rule.metric,
                "limit": " and ".join(limits),
                "how": " ".join(over),
                "severity": rule.severity,
            }
        )
    return rows


def probe_options(instance: Any) -> list[tuple[str, str]]:
    """Return the probe's own options as (name, text); secret fields come out masked."""
    try:
        dumped = instance.options.model_dump(mode="json", exclude_unset=True)
    except Exception:
        return []
    found = []
    for name, value in sorted(dumped.items()):
        if name in _COMMON or value is None:
            continue
        value = _shown(value)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        found.append((name, text))
    return found


def _shown(value: Any) -> Any:
    """Return an option's value with the passwords of URLs in it, and their query values
    named like secrets, masked: a password written into a URL in monitor.yaml (not through
    a variable) is no registered secret, so the page's masking would not catch it."""
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    if not isinstance(value, str) or "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return value
    netloc, query = parts.netloc, parts.query
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(is_secret_name(k) for k, _ in pairs):
        query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return value
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def settings(instance: Any, detailed: bool) -> list[tuple[str, str]]:
    """Return the check's probe, schedule and alerting settings as (what, value) rows."""
    rows = [
        ("probe", instance.probe_type),
        ("schedule", schedule_text(instance)),
        ("timeout", format_duration(instance.timeout)),
        ("severity when it fails", instance.severity),
        ("alerts after", _runs(instance.failure_threshold, "failed")),
        ("resolves after", _runs(instance.success_threshold, "good")),
    ]
    if instance.depends_on:
        rows.append(("depends on", ", ".join(instance.depends_on)))
    if instance.labels:
        rows.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(instance.labels.items()))))
    if detailed and instance.runbook:
        rows.append(("runbook", instance.runbook))
    return rows


def _runs(n: int, kind: str) -> str:
    return f"{n} {kind} run" + ("" if n == 1 else "s") + (" in a row" if n > 1 else "")


# -- the chart -----------------------------------------------------------------------------


def _seconds(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return format_quantity(float(value), "duration")


def nice_step(raw: float) -> float:
    """Return the smallest of 1, 2, 2.5, 5 times a power of ten that is at least `raw`."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= raw * (1 - 1e-9):
            return factor * power
    return 10 * power  # pragma: no cover


def latency_lines(instance: Any) -> list[dict[str, Any]]:
    """Return the thresholds on response time (the chart's lines): value and label."""
    lines = []
    for rule in instance.thresholds:
        if rule.metric not in LATENCY_METRICS:
            continue
        for direction in ("above", "below"):
            value = getattr(rule, direction)
            if value is not None and value > 0:
                agg = f"{rule.agg} " if rule.agg else ""
                label = f"{rule.severity}: {agg}{direction} {format_limit(value, 'duration')}"
                lines.append({"value": float(value), "label": label})
    return lines


def chart(found: list[Period], lines: list[dict[str, Any]], range_name: str) -> dict[str, Any]:
    """Return the geometry of the response-time chart: axes, series, threshold lines."""
    words, count, length, fmt, every = RANGES[range_name]
    values = [v for p in found for v in (p.p50, p.p95) if v is not None]
    top = max(values, default=0.0)
    # a threshold far above every value would flatten the lines: it is listed, not drawn
    drawn = [line for line in lines if not top or line["value"] <= top * 4]
    top = max([top, *(line["value"] for line in drawn)]) or 1.0
    step = nice_step(top * 1.08 / 4)
    ymax = step * max(1, math.ceil(top * 1.08 / step))
    band = PLOT_W / max(1, len(found))

    def x(i: int) -> float:
        return round(LEFT + (i + 0.5) * band, 1)

    def y(value: float) -> float:
        return round(TOP + PLOT_H * (1 - value / ymax), 1)

    series = []
    for name, css in (("p95", "p95"), ("p50", "p50")):
        segments: list[list[tuple[float, float]]] = [[]]
        for i, period in enumerate(found):
            value = getattr(period, name)
            if value is None:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append((x(i), y(value)))
        points = [pt for seg in segments for pt in seg]
        series.append(
            {
                "css": css,
                "lines": [" ".join(f"{a},{b}" for a, b in seg) for seg in segments if len(seg) > 1],
                "points": points,
            }
        )
    ticks = [
        {"y": y(i * step), "text": format_quantity(i * step, "duration")}
        for i in range(round(ymax / step) + 1)
    ]
    labels = [
        {"x": round(LEFT + i * band, 1), "text": _at(p.start, fmt)}
        for i, p in enumerate(found)
        if i % every == 0
    ]
    shown = [p for p in found if p.p50 is not None]
    if shown:
        highest = max(p.p95 for p in shown if p.p95 is not None)
        desc = (
            f"Response time over the {words}, {len(shown)} of {count} periods with data: "
            f"median from {_seconds(min(p.p50 for p in shown))} "
            f"to {_seconds(max(p.p50 for p in shown))}, "
            f"95th percentile up to {_seconds(highest)}."
        )
    else:
        desc = f"No response times were recorded over the {words}."
    if lines:
        desc += " Thresholds: " + "; ".join(line["label"] for line in lines) + "."
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "bottom": TOP + PLOT_H,
        "series": series,
        "ticks": ticks,
        "labels": labels,
        "label_y": HEIGHT - 12,
        "thresholds": [
            {**line, "y": y(line["value"]), "text_y": y(line["value"]) - 4} for line in drawn
        ],
        "hidden": [line for line in lines if line not in drawn],
        "desc": desc,
        "words": words,
        "empty": not shown,
        "table": [
            {
                "period": _at(p.start, "%Y-%m-%d %H:%M" if length < DAY else "%Y-%m-%d"),
                "runs": p.runs,
                "uptime": percent(p.uptime),
                "p50": _seconds(p.p50),
                "p95": _seconds(p.p95),
            }
            for p in found
        ],
    }


def _at(at: float, fmt: str) -> str:
    return datetime.fromtimestamp(at, UTC).strftime(fmt)


# -- the page ------------------------------------------------------------------------------


async def render_check(
    page: StatusPage, name: str, view: View, query: Any, now: float | None = None
) -> tuple[bool, str]:
    """Return (found, HTML) of a check's page; a check with environments lists them."""
    now = time.time() if now is None else now
    daemon = page.daemon
    title = daemon.config.server.title
    common = {
        "title": title,
        "home": view.link("/"),
        "generated": clock(now),
        "version": views.version(),
    }
    rows = await views.checks(daemon)
    keyed = {r["check"] + (f"@{r['environment']}" if r["environment"] else ""): r for r in rows}
    row = keyed.get(name)
    instance = views.instance(daemon, name) if row is not None else None
    if row is None or instance is None:
        siblings = [(k, r) for k, r in keyed.items() if r["check"] == name and r["environment"]]
        if not siblings:
            html = render_template("missing.html", view, name=name, refresh_links=[], **common)
            return False, html
        choices = [
            {
                "name": k,
                "href": view.link(f"/checks/{k}"),
                "status": r["status"],
                "status_text": status_text(r),
            }
            for k, r in siblings
        ]
        html = render_template(
            "environments.html",
            view,
            name=name,
            choices=choices,
            headline=headline([r for _k, r in siblings]),
            refresh_links=view.refresh_links(f"/checks/{name}"),
            **common,
        )
        return True, html
    range_name = query.get("range") if query.get("range") in RANGES else DEFAULT_RANGE
    history = History(
        daemon.store,
        daemon.config,
        instances=getattr(daemon.runtime, "all_instances", None) or daemon.runtime.instances,
        maintenance=daemon.maintenance,
    )
    await history.refresh()
    found = await periods(history, name, range_name, now)
    daily = found if range_name == "30d" else await periods(history, name, "30d", now)
    path = f"/checks/{name}"
    covering = windows(daemon, instance, now)
    context = {
        **common,
        "name": name,
        "row": row,
        "status_text": status_text(row),
        "last_run": clock(row["last_run"]) if row.get("last_run") else "never",
        "description": instance.description,
        "maintenance": [w for w in covering if w["under_way"]],
        "upcoming": [w for w in covering if not w["under_way"]],
        "chart": chart(found, latency_lines(instance), range_name),
        "locations": await location_rows(history, instance, row, range_name, now),
        "range": range_name,
        "ranges": [
            {
                "name": r,
                "text": RANGES[r][0],
                "href": view.link(path, range=r),
                "current": r == range_name,
            }
            for r in RANGES
        ],
        "days": [
            {
                "date": _at(p.start, "%Y-%m-%d"),
                "css": day_class(p.uptime),
                "uptime": percent(p.uptime),
                "runs": p.runs,
                "failures": p.failures,
                "p50": _seconds(p.p50),
                "p95": _seconds(p.p95),
            }
            for p in reversed(daily)
        ],
        "results": await latest_results(daemon, name, view.detailed),
        "incidents": await check_incidents(daemon, name, now),
        "settings": settings(instance, view.detailed),
        "thresholds": threshold_rows(instance),
        "options": probe_options(instance) if view.detailed else [],
        "detailed": view.detailed,
        "refresh_links": view.refresh_links(path, range=query.get("range") and range_name),
    }
    return True, render_template("check.html", view, **context)
