"""Notices: what a notifier delivers — a group of alerts, an event, a task, an announcement.

A notice is built once, written to the outbox, and handed to a notifier plugin as is on
every attempt; its `id` is the idempotency key a receiver sees on each of them (the
webhook's Idempotency-Key header; PagerDuty's dedup_key is the alert id instead, so that
trigger and resolve pair up).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

NoticeKind = Literal["alert", "event", "task", "announcement", "test"]

DETAIL_LIMIT = 300
"""Characters of a probe's own words a message body shows (a response body excerpt...)."""
REASON_LIMIT = 80
"""Characters of them a headline may carry."""
RECOVERED = ("recovered", "back within", "stable again")
"""How the resolve reasons of an incident that ended by itself begin."""

# `HTTP 503 from https://host/path (expected 200): {"status": ...}`: the http probe's
# failure; its status says it, the body excerpt is detail
_HTTP_STATUS = re.compile(r"^HTTP (\d{3}) from \S+ \(expected [^)]*\)")
# the check's own URL, which the headline already names by the check
_OWN_URL = re.compile(r" (?:from|to|on|at|for) https?://\S+?(?=[:;,]? |[:;,]?$)")


def one_line(text: Any) -> str:
    """Return text on one line, runs of white space made one space."""
    return " ".join(str(text).split())


def cut(text: str, limit: int) -> str:
    """Return text cut to `limit` characters, at a word where one is near, marked with …."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space > limit * 2 // 3:
        head = head[:space]
    return head.rstrip(" ,;:") + "…"


LOCATIONS_SAID = " — down in "
"""Where a located check's summary turns from the probe's words to the locations'."""


def reason_of(summary: str | None) -> str:
    """Return what a probe said is wrong, in a few words: `HTTP 503`, `timed out after 30s
    waiting for the response`, `cannot connect: connection refused`."""
    text = one_line(summary or "")
    if m := _HTTP_STATUS.match(text):
        return f"HTTP {m[1]}"
    text = _OWN_URL.sub("", text)
    head, sep, rest = text.partition(": ")
    # what follows a colon is often a quoted body or a library's long words
    if sep and len(head) >= 8 and (len(text) > REASON_LIMIT or rest[:1] in ("{", "[", "<")):
        text = head
    first, sep, _ = text.partition("; ")  # several failures: the first one
    if sep and len(text) > REASON_LIMIT:
        text = first
    return cut(text, REASON_LIMIT) or "down"


@dataclass
class NoticeAlert:
    """One alert as a notice shows it (the webhook's `alerts[]` item plus what templates use)."""

    id: str
    check: str
    environment: str | None
    rule: str
    severity: str
    status: str  # firing | resolved
    summary: str
    started_at: str | None
    resolved_at: str | None = None
    duration: float | None = None
    """Seconds the incident lasted (resolved alerts)."""
    metric: str | None = None
    value: float | None = None
    value_text: str | None = None
    threshold: float | None = None
    threshold_text: str | None = None
    direction: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    runbook: str | None = None
    description: str | None = None
    flapping: bool = False
    acknowledged: bool = False
    escalation: str | None = None
    """Name of the escalation level this notice belongs to, if any."""
    actions: list[dict[str, Any]] = field(default_factory=list)
    """Self-healing actions run for this alert so far: {name, ok, message, at}."""
    reason: str | None = None
    """Why a resolved alert resolved (recovered, check removed from monitor.yaml...)."""
    change: str | None = None
    """What happened: firing, severity, resolved, flapping, stable, repeat, escalation."""
    measure: str | None = None
    """What a threshold rule judges, in words: `response_time (p95 over 1h)`."""
    previous_severity: str | None = None
    """The severity before a severity change."""
    headline: str = ""
    """One line saying where, what is wrong and how bad: `api-health@production is down:
    HTTP 503 (critical)`; once resolved, what recovered, after how long and what it was."""
    detail: str | None = None
    """The probe's own words when the headline had to shorten them (a response body
    excerpt...), or the rule's description; at most DETAIL_LIMIT characters."""
    source_url: str | None = None
    """An external alert's `generatorURL`: where its source shows it (a Prometheus graph)."""
    locations: dict[str, Any] | None = None
    """A check run from several locations: which see it `down`, `up`, `unknown`, and the
    `quorum` (docs/scaling.md ► Locations)."""

    def __post_init__(self) -> None:
        if self.detail is None:
            self.detail = self._detail()
        if not self.headline:
            self.headline = self._headline()

    def refresh(self) -> None:
        """Write the headline again after the facts it is made of were changed."""
        self.headline = self._headline()

    @property
    def where(self) -> str:
        return f"{self.check}@{self.environment}" if self.environment else self.check

    @property
    def crossed(self) -> bool:
        """True for a threshold alert that knows its value and threshold."""
        return self.metric is not None and self.value is not None and self.threshold is not None

    def problem(self) -> str:
        """Return what is (or was) wrong without where: `HTTP 503`, `query_time 2.5s above 2s`."""
        if self.crossed:
            value = self.value_text if self.value_text is not None else f"{self.value:g}"
            limit = (
                self.threshold_text if self.threshold_text is not None else f"{self.threshold:g}"
            )
            return f"{self.measure or self.metric} {value} {self.direction or 'vs'} {limit}"
        summary = self.summary
        if self.locations:
            # a located check's summary is what a failing location said, then who sees
            # what (engine/run/locations.py): the headline names the places itself
            summary = summary.split(LOCATIONS_SAID, 1)[0]
        return reason_of(summary)

    def _detail(self) -> str | None:
        if self.crossed:
            return None  # the value and its threshold say it all
        text = one_line(self.summary or "")
        return cut(text, DETAIL_LIMIT) if text and text != reason_of(text) else None

    def _headline(self) -> str:
        where, down = self.where, self.rule == "up" and not self.crossed
        if self.status == "resolved":
            lasted = f" after {_lasted(self.duration)}" if self.duration is not None else ""
            was = f"(was: {self.problem()})"
            if self.reason and not self.reason.startswith(RECOVERED):
                return f"{where} resolved{lasted}: {self.reason} {was}"
            verb = "stopped flapping and recovered" if self.change == "stable" else "recovered"
            return f"{where} {verb}{lasted} {was}"
        severity = self.severity
        if self.change == "severity":
            severity += f", was {self.previous_severity}" if self.previous_severity else ", now"
        what = self.problem()
        if self.change == "flapping":
            text = f"{where} keeps going down: {what}" if down else f"{where} is flapping: {what}"
        elif self.change == "stable":
            text = f"{where} stopped flapping" + (f" and is down: {what}" if down else f": {what}")
        elif self.change == "repeat":
            text = f"{where} is still down: {what}" if down else f"{where}: still {what}"
        elif down and self.locations and self.locations.get("down"):
            places = self.locations["down"]
            total = sum(len(self.locations.get(k) or ()) for k in ("down", "up", "unknown"))
            quorum = self.locations.get("quorum")
            text = (
                f"{where} is down in {', '.join(places)} ({len(places)} of {total}, "
                f"quorum {quorum}): {what}"
            )
        else:
            text = f"{where} is down: {what}" if down else f"{where}: {what}"
        return f"{text} ({severity})"

    def webhook(self) -> dict[str, Any]:
        """Return the item of the webhook's `alerts` list: DESIGN.md's keys first, then
        what a receiver may also act on (only when there is something to say)."""
        item: dict[str, Any] = {
            "id": self.id,
            "check": self.check,
            "environment": self.environment,
            "rule": self.rule,
            "severity": self.severity,
            "status": self.status,
            "summary": self.headline,
            "started_at": self.started_at,
            "resolved_at": self.resolved_at,
        }
        extra = {
            # the probe's words describe the failure, not the recovery
            "detail": self.detail if self.status == "firing" else None,
            "duration": self.duration,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "runbook": self.runbook,
            "source_url": self.source_url,
            "labels": self.labels,
            "escalation": self.escalation,
            "actions": self.actions,
            "reason": self.reason,
            "flapping": self.flapping or None,
            "acknowledged": self.acknowledged or None,
            "locations": self.locations,
        }
        item.update({k: v for k, v in extra.items() if v not in (None, {}, [])})
        return item


@dataclass
class Notice:
    """One message for one notifier."""

    id: str
    kind: NoticeKind
    status: Literal["firing", "resolved", "info"]
    title: str
    severity: str | None = None
    alerts: list[NoticeAlert] = field(default_factory=list)
    group: dict[str, Any] = field(default_factory=dict)
    """The fields the alerts were grouped by, e.g. {"check": "api", "environment": "prod"}."""
    event: dict[str, Any] | None = None
    checklist: list[str] = field(default_factory=list)
    text: str | None = None
    """Body of a task, announcement, event or test notice."""
    report: dict[str, Any] | None = None
    created_at: float = 0.0
    route: int | None = None
    escalation: str | None = None
    escalation_level: str | None = None
    """The escalation step in words: `level 2 of standard (development): dev-team`."""
    collapsed: bool = False
    """A firing notice that was never sent folded into this resolved one."""
    dry_run: bool = False

    @property
    def firing(self) -> list[NoticeAlert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[NoticeAlert]:
        return [a for a in self.alerts if a.status == "resolved"]

    @property
    def headline(self) -> str:
        """Return the one line a person reads first: for an alert notice where, what is
        wrong and how bad (`api-health@production is down: HTTP 503 (critical)`), else
        the title."""
        if self.kind != "alert" or not self.alerts:
            return self.title
        return headline_of(self.alerts, self.severity, self.escalation_level or self.escalation)

    @property
    def detail(self) -> str | None:
        """Return the detail of the notice's one alert (None for several: each has its own)."""
        return self.alerts[0].detail if len(self.alerts) == 1 else None

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Notice:
        names = {f.name for f in fields(cls)}
        data = {k: v for k, v in doc.items() if k in names}
        alert_names = {f.name for f in fields(NoticeAlert)}
        data["alerts"] = [
            NoticeAlert(**{k: v for k, v in a.items() if k in alert_names})
            for a in data.get("alerts", [])
        ]
        return cls(**data)

    def webhook_payload(self) -> dict[str, Any]:
        """Return the webhook JSON: {"status", "alerts": [...]} plus context fields."""
        payload: dict[str, Any] = {
            "status": "firing" if self.firing else ("resolved" if self.alerts else self.status),
            "alerts": [a.webhook() for a in self.alerts],
            "kind": self.kind,
            "title": self.title,
            "group": self.group,
            "notice_id": self.id,
        }
        if self.event is not None:
            payload["event"] = self.event
        if self.text:
            payload["text"] = self.text
        if self.checklist:
            payload["checklist"] = self.checklist
        return payload


def headline_of(
    alerts: list[NoticeAlert], severity: str | None = None, escalation: str | None = None
) -> str:
    """Return the headline of a notice about these alerts (see `Notice.headline`)."""
    if len(alerts) == 1:
        text = alerts[0].headline
    else:
        places = list(dict.fromkeys(a.where for a in alerts))
        where = ", ".join(places[:2]) + (f" and {len(places) - 2} more" if len(places) > 2 else "")
        firing = [a for a in alerts if a.status == "firing"]
        recovered = len(alerts) - len(firing)
        if not firing:
            text = f"{where}: {recovered} alerts recovered"
        else:
            worst = severity or firing[0].severity
            count = f"{len(firing)} alerts firing" if not recovered else f"{len(firing)} firing"
            text = f"{where}: {count} ({worst})" + (f", {recovered} recovered" if recovered else "")
            named = [(a.where + " " if len(places) > 1 else "") + _short(a) for a in firing[:2]]
            text += ": " + "; ".join(named) + ("; …" if len(firing) > 2 else "")
    # once everything has recovered, how it was escalated or acknowledged is history
    if any(a.status == "firing" for a in alerts):
        if escalation:
            text += f" · escalated to {escalation}"
        if all(a.acknowledged for a in alerts):
            text += " · acknowledged"
    return text


def _short(alert: NoticeAlert) -> str:
    what = alert.problem()
    return f"down: {what}" if alert.rule == "up" and not alert.crossed else what


def _lasted(seconds: float) -> str:
    from watchkeeper.schema.units import format_duration

    return format_duration(seconds)


def new_notice_id() -> str:
    """Return a fresh idempotency key."""
    return "wk-" + secrets.token_hex(10)
