"""The public face: an HTML status page (no JavaScript) and shields-style SVG badges.

Checks are grouped by environment or a label (`server.group_by`), each with a 90-day bar
of daily uptime: daily rollups (stream `rollups`, key = check instance, data `{date, runs,
failures}`) where they exist, else counted from raw results (stream `results`) for the
days the store still keeps. Past days are counted once and remembered; today is counted
again at most every ten seconds. Incident summaries (which may name internal hosts) are
shown only to callers presenting the admin token.
"""

from __future__ import annotations

import functools
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape as xml_escape

from watchkeeper.engine.api import views
from watchkeeper.engine.config.instances import split_key
from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.engine.reports.slo import budget_left

DAYS = 90
FALLBACK_DAYS = 31
"""Days counted from raw results when no rollup covers them (raw results' usual retention)."""
TODAY_TTL = 10.0
ROLLUP_TTL = 300.0
SETTLE = 300.0
"""A day is counted for good once it ended this long ago (late writes have landed)."""
RECENT_INCIDENTS = 3 * 86400.0
NARROW_DAYS = 30
"""Days of the strip a narrow screen shows (the stylesheet hides the older ones)."""
REFRESH = {"30": 30, "60": 60, "300": 300}
"""Auto-refresh periods a reader may ask for (`?refresh=30`); none by default (WCAG 2.2.1)."""
TEMPLATES = Path(__file__).parent / "templates"
OTHER = "Other"
"""The group of checks without an environment (or without the grouping label)."""


@functools.cache
def _env() -> Any:
    # built at the first page asked for: a daemon nobody opens a page of needs no jinja2
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "svg", "xml"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).date().isoformat()


def _day_start(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()


@dataclass
class UptimeHistory:
    """Daily (runs, failures) per check instance, from rollups, else from raw results."""

    counted: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    """Settled days counted from raw results: day -> instance -> (runs, failures)."""
    today: tuple[float, str, dict[str, tuple[int, int]]] | None = None
    rollups: tuple[float, dict[tuple[str, str], tuple[int, int]]] | None = None

    async def days(self, store: Any, keys: list[str], now: float) -> dict[str, list[dict]]:
        """Return, per instance, DAYS entries `{date, runs, failures, uptime}` oldest first."""
        today = datetime.fromtimestamp(now, UTC).date()
        dates = [(today - timedelta(days=n)).isoformat() for n in range(DAYS - 1, -1, -1)]
        rolled = await self._rollups(store, now)
        fallback: dict[str, dict[str, tuple[int, int]]] = {}
        for day in dates[-FALLBACK_DAYS:]:
            if all((key, day) in rolled for key in keys):
                continue
            fallback[day] = await self._counted(store, day, now)
        found: dict[str, list[dict]] = {}
        for key in keys:
            row = []
            for day in dates:
                runs, failures = rolled.get((key, day)) or fallback.get(day, {}).get(key, (0, 0))
                row.append(
                    {
                        "date": day,
                        "runs": runs,
                        "failures": failures,
                        "uptime": (1 - failures / runs) if runs else None,
                    }
                )
            found[key] = row
        return found

    async def _rollups(self, store: Any, now: float) -> dict[tuple[str, str], tuple[int, int]]:
        if self.rollups is not None and now - self.rollups[0] < ROLLUP_TTL:
            return self.rollups[1]
        found: dict[tuple[str, str], tuple[int, int]] = {}
        try:
            rows = await store.read("rollups", since=now - (DAYS + 2) * 86400.0)
        except Exception:
            rows = []
        for row in rows:
            data = row.data
            day = data.get("date") or _day(row.at)
            runs, failures = data.get("runs"), data.get("failures")
            if isinstance(runs, int | float) and isinstance(failures, int | float) and runs >= 0:
                found[(row.key, str(day))] = (int(runs), int(failures))
        self.rollups = (now, found)
        return found

    async def _counted(self, store: Any, day: str, now: float) -> dict[str, tuple[int, int]]:
        start = _day_start(day)
        end = start + 86400.0
        settled = now >= end + SETTLE
        if settled and day in self.counted:
            return self.counted[day]
        if not settled and self.today and self.today[1] == day and now - self.today[0] < TODAY_TTL:
            return self.today[2]
        counts: dict[str, list[int]] = {}
        try:
            rows = await store.read("results", since=start, until=end)
        except Exception:
            return {}
        for row in rows:
            tally = counts.setdefault(row.key, [0, 0])
            tally[0] += 1
            tally[1] += 0 if row.data.get("ok") else 1
        found = {k: (v[0], v[1]) for k, v in counts.items()}
        if settled:
            self.counted[day] = found
            for old in [d for d in self.counted if d < _oldest(now)]:
                del self.counted[old]
        else:
            self.today = (now, day, found)
        return found


def _oldest(now: float) -> str:
    return (datetime.fromtimestamp(now, UTC).date() - timedelta(days=DAYS)).isoformat()


def day_class(uptime: float | None) -> str:
    """Return the CSS class of one day's bar."""
    if uptime is None:
        return "d-none"
    if uptime >= 0.999:
        return "d-up"
    if uptime >= 0.99:
        return "d-minor"
    if uptime >= 0.9:
        return "d-major"
    return "d-down"


def percent(value: float | None) -> str:
    if value is None:
        return "no data"
    text = f"{value * 100:.3f}".rstrip("0").rstrip(".")
    return f"{text}%"


def group_name(row: dict[str, Any], group_by: str) -> str:
    """Return the group heading a check instance goes under."""
    if group_by.startswith("label:"):
        return row.get("labels", {}).get(group_by[6:]) or OTHER
    return row.get("environment") or OTHER


async def timeline(store: Any, alert: Any) -> list[dict[str, Any]]:
    """Return an incident's timeline: fired, the events alerting recorded, resolved."""
    events = []
    if alert.fired_at is not None:
        events.append({"at": alert.fired_at, "event": "fired", "detail": alert.severity})
    try:
        rows = await store.read("alert_events", alert.id, limit=200)
    except Exception:
        rows = []
    for row in rows:
        events.append(
            {"at": row.at, "event": row.data.get("event", ""), "detail": row.data.get("detail")}
        )
    if alert.resolved_at is not None:
        events.append({"at": alert.resolved_at, "event": "resolved", "detail": None})
    events.sort(key=lambda e: e["at"])
    return [{**e, "time": clock(e["at"])} for e in events]


def clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


async def incidents(daemon: Any, now: float) -> list[dict[str, Any]]:
    """Return firing incidents and those resolved in the last days, newest first."""
    from watchkeeper.engine.alerting.alerts import Alert

    # external alerts are no check's incidents: they have a section of their own
    seen = {
        a.id: a
        for a in daemon.runtime.book.open.values()
        if a.status == "firing" and a.source != "external"
    }
    try:
        docs = await daemon.store.get_all("alerts")
    except Exception:
        docs = {}
    for key, doc in docs.items():
        if key in seen or doc.get("status") != "resolved" or not doc.get("fired_at"):
            continue
        if doc.get("source") == "external":
            continue
        if (doc.get("resolved_at") or 0) >= now - RECENT_INCIDENTS:
            seen[key] = Alert.from_doc(doc)
    found = []
    for alert in sorted(seen.values(), key=lambda a: a.fired_at or a.started_at, reverse=True):
        found.append(
            {
                "id": alert.id,
                "instance": alert.instance,
                "severity": alert.severity,
                "status": alert.status,
                "summary": alert.summary,
                "held": alert.held,
                "acknowledged": alert.acked_at is not None,
                "timeline": await timeline(daemon.store, alert),
            }
        )
    return found


def external_alerts(daemon: Any) -> list[dict[str, Any]]:
    """Return the open alerts posted to the Alertmanager intake, most severe first."""
    rank = {name: i for i, name in enumerate(daemon.config.severities)}
    found = [a for a in daemon.runtime.book.open.values() if a.source == "external"]
    found.sort(key=lambda a: (rank.get(a.severity, len(rank)), a.started_at))
    return [
        {
            "id": a.id,
            "name": a.rule,
            "severity": a.severity,
            "summary": a.summary,
            "labels": sorted((k, v) for k, v in a.labels.items() if k != "alertname"),
            "since": clock(a.fired_at or a.started_at),
            "source_url": a.external.get("generator_url"),
            "held": a.held,
            "acknowledged": a.acked_at is not None,
        }
        for a in found
    ]


@dataclass
class View:
    """How the reader asked to see the pages; carried from link to link in the URL."""

    detailed: bool = False
    """The admin token was presented: incident summaries and probe messages are shown."""
    refresh: int | None = None
    token: str | None = None
    """The admin token, when it came as `?token=`: links keep it, or the next page is 401."""
    placeholder: str = field(default_factory=lambda: f"tok{secrets.token_hex(12)}")

    @classmethod
    def of(cls, query: Any, *, detailed: bool, token: str | None) -> View:
        """Return the view a request's query string asks for."""
        return cls(detailed=detailed, refresh=REFRESH.get(query.get("refresh", "")), token=token)

    def link(self, path: str, **params: str | None) -> str:
        """Return a link to one of the pages, keeping the token and the refresh choice."""
        query: dict[str, str] = {}
        if self.token:
            # the page is masked for secrets after rendering; the token goes in after that
            query["token"] = self.placeholder
        if self.refresh:
            query["refresh"] = str(self.refresh)
        for name, value in params.items():
            if value is None:
                query.pop(name, None)
            else:
                query[name] = value
        return quote(path) + ("?" + urlencode(query) if query else "")

    def refresh_links(self, path: str, **params: str | None) -> list[dict[str, Any]]:
        """Return the auto-refresh choices for `path`: off and each period."""
        choices = [("off", None, "off")]
        choices += [(str(s), s, f"{s} s" if s < 60 else f"{s // 60} min") for s in REFRESH.values()]
        return [
            {
                "text": text,
                "href": self.link(path, **params, refresh=value if seconds else None),
                "current": seconds == self.refresh,
                "off": seconds is None,
            }
            for value, seconds, text in choices
        ]

    def finish(self, html: str) -> str:
        """Return rendered HTML with every secret masked, then the reader's token put back."""
        html = REDACTOR.redact(html)
        if self.token:
            html = html.replace(self.placeholder, quote(self.token, safe=""))
        return html


def render_template(template: str, view: View, **context: Any) -> str:
    """Render one of the pages' templates for a reader."""
    return view.finish(_env().get_template(template).render(view=view, **context))


def headline(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """Return the page's headline: (worst status, what it says), true of every check."""

    def count(n: int, one: str, many: str) -> str:
        return f"{n} {one if n == 1 else many}"

    down = sum(r["status"] == "down" for r in rows)
    degraded = sum(r["status"] == "degraded" for r in rows)
    waiting = sum(r["status"] == "unknown" and not r.get("last_run") for r in rows)
    unknown = sum(r["status"] == "unknown" for r in rows) - waiting
    parts = []
    if down:
        parts.append(count(down, "check is down", "checks are down"))
    if degraded:
        parts.append(count(degraded, "check is degraded", "checks are degraded"))
    if unknown:
        parts.append(count(unknown, "check has an unknown status", "checks have an unknown status"))
    if waiting:
        parts.append(
            count(
                waiting, "check is waiting for its first run", "checks waiting for their first run"
            )
        )
    if not rows:
        return "unknown", "No checks are configured"
    if not parts:
        return "up", "All checks are up" if len(rows) > 1 else "The check is up"
    status = "down" if down else "degraded" if degraded else "unknown"
    return status, "; ".join(parts)


def strip_summary(days: list[dict[str, Any]]) -> str:
    """Return what a row of daily bars shows, in words: to a screen reader it is one image."""
    full = sum(1 for d in days if d["runs"] and d["failures"] == 0)
    failing = sum(1 for d in days if d["runs"] and d["failures"])
    empty = sum(1 for d in days if not d["runs"])
    today = days[-1] if days else None
    words = [f"Daily uptime over the last {len(days)} days: {full} without failures"]
    if failing:
        worst = min(d["uptime"] for d in days if d["runs"])
        words.append(f"{failing} with failures (worst {percent(worst)})")
    if empty:
        words.append(f"{empty} without data")
    if today is not None:
        words.append("today " + (percent(today["uptime"]) if today["runs"] else "no data yet"))
    return ", ".join(words) + "."


def group_order(item: tuple[str, Any]) -> tuple[bool, str]:
    """Sort groups by name, the checks of no group last."""
    return item[0] == OTHER, item[0]


class StatusPage:
    """Render the page for one daemon; keeps the uptime history it has counted."""

    def __init__(self, daemon: Any):
        self.daemon = daemon
        self.history = UptimeHistory()

    async def context(
        self, now: float | None = None, *, view: View | None = None
    ) -> dict[str, Any]:
        now = time.time() if now is None else now
        view = view or View()
        daemon = self.daemon
        server = daemon.config.server
        group_by = getattr(server, "group_by", "environment") or "environment"
        rows = await views.checks(daemon)
        keys = [r["check"] + (f"@{r['environment']}" if r["environment"] else "") for r in rows]
        history = await self.history.days(daemon.store, keys, now)
        muted = {
            key: name
            for key, row in zip(keys, rows, strict=True)
            if (name := _window_over(daemon, row, now))
        }
        groups: dict[str, list[dict[str, Any]]] = {}
        for key, row in zip(keys, rows, strict=True):
            days = history[key]
            runs = sum(d["runs"] for d in days)
            failures = sum(d["failures"] for d in days)
            instance = views.instance(daemon, key)
            groups.setdefault(group_name(row, group_by), []).append(
                {
                    "name": key,
                    "check": row["check"],
                    "environment": row["environment"],
                    "status": row["status"],
                    "status_text": status_text(row),
                    "locations": location_items(row, instance),
                    "description": getattr(instance, "description", None),
                    "href": view.link(f"/checks/{key}"),
                    "maintenance": muted.get(key),
                    "last_run": clock(row["last_run"]) if row.get("last_run") else "never",
                    "uptime": percent((1 - failures / runs) if runs else None),
                    "summary": strip_summary(days),
                    "narrow_summary": strip_summary(days[-NARROW_DAYS:]),
                    "days": [
                        {
                            **d,
                            "css": day_class(d["uptime"]),
                            "title": f"{d['date']}: "
                            + (
                                f"{percent(d['uptime'])} of {d['runs']} runs"
                                if d["runs"]
                                else "no data"
                            ),
                        }
                        for d in days
                    ],
                }
            )
        windows = views.maintenance(daemon, now)
        slos = await views.slos(daemon)
        return {
            "title": server.title,
            "headline": headline(rows),
            "groups": sorted(groups.items(), key=group_order),
            "incidents": await incidents(daemon, now),
            "external": external_alerts(daemon),
            "under_way": [_window(w) for w in windows["under_way"]],
            "upcoming": [_window(w) for w in windows["upcoming"]],
            "slos": [_slo(s) for s in (slos or [])],
            "detailed": view.detailed,
            "generated": clock(now),
            "version": views.version(),
            "days": DAYS,
            "narrow_days": NARROW_DAYS,
            "refresh_links": view.refresh_links("/"),
            "home": view.link("/"),
        }

    async def render(self, now: float | None = None, *, view: View | None = None) -> str:
        """Return the page's HTML, every secret masked; a detailed view adds incident summaries."""
        view = view or View()
        return render_template("status.html", view, **await self.context(now, view=view))


def status_text(row: dict[str, Any]) -> str:
    """Return a check's status in words: `unknown` before any run says so."""
    if row["status"] == "unknown" and not row.get("last_run"):
        return "waiting"
    return row["status"]


def location_items(row: dict[str, Any], instance: Any) -> dict[str, Any] | None:
    """Return what each location of a check run from several sees, and the quorum; None
    for a check run from one place. Never a probe's message: the page is public."""
    seen = row.get("locations")
    if not seen:
        return None
    spec = getattr(instance, "locations", None)
    return {
        "quorum": spec.needed if spec is not None else None,
        "places": [
            {"location": s["location"], "status": s["status"], "why": s.get("why")} for s in seen
        ],
    }


def _window_over(daemon: Any, row: dict[str, Any], now: float) -> str | None:
    """Return the name of a maintenance window covering a check instance now, or None."""
    args = (now, row["check"], row["environment"], row.get("labels"))
    window = daemon.maintenance.muted(*args) or daemon.maintenance.paused(*args)
    return window.name if window is not None else None


def _window(public: dict[str, Any]) -> dict[str, Any]:
    def nice(text: str | None) -> str:
        if not text:
            return ""
        return clock(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())

    return {**public, "start_text": nice(public.get("start")), "end_text": nice(public.get("end"))}


def _slo(item: dict[str, Any]) -> dict[str, Any]:
    """Return an SLO row for the page, whatever shape `engine.slo` gives it."""

    def ratio(*names: str) -> str | None:
        for name in names:
            value = item.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return percent(float(value))
        return None

    check = item.get("check") or ""
    if item.get("environment"):
        check = f"{check}@{item['environment']}"
    status = str(item.get("status") or "")
    if not status and isinstance(item.get("ok"), bool):
        status = "ok" if item["ok"] else "breached"
    return {
        "name": item.get("name") or item.get("slo") or "",
        "check": check,
        "objective": ratio("objective", "target") or str(item.get("objective", "")),
        "window": str(item.get("window_text") or ""),
        "actual": ratio("sli", "actual", "value", "achieved") or "no data",
        "budget": _budget(item),
        "status": status,
    }


def _budget(item: dict[str, Any]) -> str:
    """What is left of an SLO's error budget, in words when it is spent."""
    for key in ("budget_remaining", "error_budget_remaining", "budget"):
        value = item.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return budget_left(float(value))
    return ""


# -- badges --------------------------------------------------------------------------------

BADGE_COLOURS = {
    "up": "#4c1",
    "degraded": "#dfb317",
    "down": "#e05d44",
    "maintenance": "#007ec6",
    "unknown": "#9f9f9f",
}
_RANK = {"down": 0, "degraded": 1, "unknown": 2, "up": 3}


def _text_width(text: str) -> int:
    # Verdana 11px averages ~6.5px a character; shields pads each side by 5px
    return int(len(text) * 6.5 + 10)


def badge_svg(label: str, status: str) -> str:
    """Return a flat shields-style badge: `label | status`."""
    colour = BADGE_COLOURS.get(status, BADGE_COLOURS["unknown"])
    left, right = _text_width(label), _text_width(status)
    width = left + right
    label_text, status_text = xml_escape(label), xml_escape(status)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label_text}: {status_text}">'
        f"<title>{label_text}: {status_text}</title>"
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        f'font-size="11">'
        f'<text x="{left / 2:.1f}" y="14">{label_text}</text>'
        f'<text x="{left + right / 2:.1f}" y="14">{status_text}</text>'
        f"</g></svg>"
    )


def badge_status(rows: list[dict[str, Any]], name: str) -> str | None:
    """Return the status a badge shows for `check` or `check@env` (worst of its
    environments), or None when no such check exists."""
    check, environment = split_key(name)
    chosen = [
        r
        for r in rows
        if r["check"] == check and (environment is None or r["environment"] == environment)
    ]
    if not chosen:
        return None
    return min((r["status"] for r in chosen), key=lambda s: _RANK.get(s, 2))
