"""Alerts: one incident of one rule of one check instance, pending ► firing ► resolved."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Status = Literal["pending", "firing", "resolved"]
ChangeKind = Literal["pending", "firing", "severity", "resolved", "flapping", "stable", "discarded"]


def new_alert_id() -> str:
    """Return a fresh alert id: short, unguessable, easy to type after `alerts ack`."""
    return secrets.token_hex(6)


@dataclass
class Alert:
    """An incident: identified by (check, environment, rule); a new incident gets a new id."""

    id: str
    check: str
    environment: str | None
    rule: str
    severity: str
    status: Status
    summary: str
    started_at: float
    updated_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    direction: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    runbook: str | None = None
    description: str | None = None
    flapping: bool = False
    held: str | None = None
    """Why notices are held back now: `blocked by db`, `maintenance X`, `silenced`, ..."""
    acked_by: str | None = None
    acked_at: float | None = None
    ack_comment: str | None = None
    notified_at: float | None = None
    """When the first notice about this incident was actually sent: the escalation clock."""
    announced_at: float | None = None
    """When a notice about this incident was first handed to the outbox (stored before it
    goes out): whoever resolves the alert then knows a resolution is owed."""
    escalation: dict[str, Any] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    resolve_reason: str | None = None
    said: str | None = None
    """What the probe said in the run that last breached a threshold rule (the Sentry
    probe names the new issues): a threshold alert's context in its notices."""
    severity_history: list[list[Any]] = field(default_factory=list)
    replica: str | None = None
    """For host-scoped checks run by several replicas: which replica's host this is."""
    source: str = "check"
    """`check` for a probe's alerts; `internal` for those the daemon raises itself (a
    failing notifier, a failed backup, an SLO burning its budget); `external` for those
    posted to the Alertmanager intake (`POST /api/v2/alerts`, engine/run/intake.py)."""
    fingerprint: str | None = None
    """External alerts: the hash of their label set, which is what identifies them."""
    external: dict[str, Any] = field(default_factory=dict)
    """External alerts: `annotations`, `generator_url`, `expires_at` (resolved then unless
    sent again)."""
    locations: dict[str, Any] | None = None
    """Checks run from several locations: which see the check `down`, `up` or `unknown`
    (no live replica there, or no result yet), and the `quorum`, as of the last verdict."""

    @property
    def instance(self) -> str:
        if self.fingerprint:
            return f"{self.check}#{self.fingerprint}"  # one per label set, never a check key
        key = f"{self.check}@{self.environment}" if self.environment else self.check
        return f"{key}~{self.replica}" if self.replica else key

    @property
    def open(self) -> bool:
        return self.status != "resolved"

    @property
    def duration(self) -> float | None:
        """Seconds from firing to resolution (None while open or if it never fired)."""
        if self.fired_at is None or self.resolved_at is None:
            return None
        return self.resolved_at - self.fired_at

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Alert:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    def public(self) -> dict[str, Any]:
        """Return the JSON shape used by the API, the CLI and webhooks."""
        return {
            "id": self.id,
            "check": self.check,
            "environment": self.environment,
            "rule": self.rule,
            "severity": self.severity,
            "status": self.status,
            "summary": self.summary,
            "started_at": _iso(self.fired_at or self.started_at),
            "resolved_at": _iso(self.resolved_at),
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "labels": self.labels,
            "runbook": self.runbook,
            "flapping": self.flapping,
            "held": self.held,
            "acknowledged": self.acked_at is not None,
            "acked_by": self.acked_by,
            "replica": self.replica,
            "resolve_reason": self.resolve_reason,
            "source": self.source,
            **({"locations": self.locations} if self.locations is not None else {}),
            **(self._external_public() if self.source == "external" else {}),
        }

    def _external_public(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "annotations": dict(self.external.get("annotations") or {}),
            "generator_url": self.external.get("generator_url"),
            "expires_at": _iso(self.external.get("expires_at")) if self.open else None,
        }


@dataclass(slots=True)
class AlertChange:
    """What happened to an alert in one evaluation."""

    alert: Alert
    kind: ChangeKind
    previous_severity: str | None = None


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
