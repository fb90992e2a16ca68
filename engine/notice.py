"""Notices: what a notifier delivers — a group of alerts, an event, a task, an announcement.

A notice is built once, written to the outbox, and handed to a notifier plugin as is on
every attempt; its `id` is the idempotency key a receiver sees on each of them (the
webhook's Idempotency-Key header; PagerDuty's dedup_key is the alert id instead, so that
trigger and resolve pair up).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

NoticeKind = Literal["alert", "event", "task", "announcement", "test"]


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
            "summary": self.summary,
            "started_at": self.started_at,
            "resolved_at": self.resolved_at,
        }
        extra = {
            "duration": self.duration,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "runbook": self.runbook,
            "labels": self.labels,
            "escalation": self.escalation,
            "actions": self.actions,
            "reason": self.reason,
            "flapping": self.flapping or None,
            "acknowledged": self.acknowledged or None,
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
    collapsed: bool = False
    """A firing notice that was never sent folded into this resolved one."""
    dry_run: bool = False

    @property
    def firing(self) -> list[NoticeAlert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[NoticeAlert]:
        return [a for a in self.alerts if a.status == "resolved"]

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


def new_notice_id() -> str:
    """Return a fresh idempotency key."""
    return "wk-" + secrets.token_hex(10)
