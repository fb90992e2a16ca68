"""Alerts posted from outside, as to Alertmanager: raised, refreshed and resolved.

Prometheus (or anything speaking Alertmanager's v2 API) sends each firing alert again
every `resend_delay` (1m by default) with `endsAt` a few evaluation intervals ahead, and,
once its rule stops, with `endsAt` in the past. An alert is known by its label set (its
fingerprint); `alertname` is its rule, its `severity` label picks one of `severities`.
It resolves when told (`endsAt` past), or when it is not sent again before its `endsAt`
or, without one, within `server.intake_resolve_timeout` — as Alertmanager does.

External alerts take the same path as a check's (`Runtime._changed`: the store, the
event hooks, then holds, routes, groups, escalation and acknowledgement). With replicas,
an alert belongs to the owner of its key; another replica hands it over through the
store, as conditions are.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio

from watchkeeper.engine.alerting.alerts import Alert, AlertChange, new_alert_id

log = logging.getLogger("watchkeeper.intake")

EXTERNAL_CHECK = "external"
"""The `check` of every external alert: routes may match it (`match: {check: external}`)."""
SOURCE = "external"
NAMELESS = "external"
"""The rule of a posted alert without an `alertname` label."""
COLLECTION = "intake"
"""Where a replica leaves alerts whose key another replica owns."""
MAX_OPEN = 10_000
"""External alerts open at once; past this, new ones are refused (a runaway rule)."""
POLL_INTERVAL = 2.0
SUMMARY_LIMIT = 500
TEXT_LIMIT = 4000


class IntakeFull(Exception):
    """As many external alerts are open as may be."""


@dataclass(slots=True)
class Posted:
    """One alert as Alertmanager's `postableAlert` carries it (times in UNIX seconds)."""

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: float | None = None
    ends_at: float | None = None
    generator_url: str | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def rule(self) -> str:
        return self.labels.get("alertname") or NAMELESS

    @property
    def key(self) -> str:
        return f"{EXTERNAL_CHECK}#{self.fingerprint}"

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Posted:
        return cls(
            labels=dict(doc.get("labels") or {}),
            annotations=dict(doc.get("annotations") or {}),
            starts_at=doc.get("starts_at"),
            ends_at=doc.get("ends_at"),
            generator_url=doc.get("generator_url"),
        )


def fingerprint(labels: dict[str, str]) -> str:
    """Return a stable hash of a label set: the same labels in any order, the same id."""
    digest = hashlib.sha256()
    for name in sorted(labels):
        # a separator no label holds: {a: "b,c"} and {a: "b", c: ""} must differ
        digest.update(name.encode() + b"\xff" + labels[name].encode() + b"\xff")
    return digest.hexdigest()[:16]


def summary_of(posted: Posted) -> str:
    """Return what an alert says in one line: `HighErrorRate: 7% of requests fail`."""
    notes = posted.annotations
    text = (notes.get("summary") or notes.get("message") or notes.get("description") or "").strip()
    text = " ".join(text.split())
    summary = f"{posted.rule}: {text}" if text else posted.rule
    return summary[:SUMMARY_LIMIT]


class Intake:
    """Raise, refresh and resolve the alerts posted to `POST /api/v2/alerts`."""

    def __init__(self, runtime: Any):
        self.runtime = runtime
        self._wake = anyio.Event()

    @property
    def config(self) -> Any:
        return self.runtime.config

    def open_alerts(self) -> list[Alert]:
        """Return the open external alerts, oldest first."""
        found = [a for a in self.runtime.book.open.values() if a.source == SOURCE]
        return sorted(found, key=lambda a: a.started_at)

    def severity_of(self, labels: dict[str, str]) -> str:
        """Map the `severity` label onto `severities`; an unknown one (or none) takes
        `server.intake_severity`."""
        wanted = (labels.get("severity") or "").strip()
        known = list(self.config.severities)
        for name in (wanted, wanted.lower()):
            if name in known:
                return name
        return self.config.server.intake_severity

    # -- taking posts ------------------------------------------------------------------

    async def receive(self, posted: list[Posted]) -> None:
        """Take one post's alerts, in order; IntakeFull when a new one finds no room (those
        before it are taken)."""
        now = self.runtime.clock.now()
        for item in posted:
            if not self.runtime.mine(item.key):
                # another replica answers for this label set: it finds it in the store
                self.runtime.writer.put(COLLECTION, item.fingerprint, {**item.to_doc(), "at": now})
                continue
            await self.apply(item, now)
        self._wake.set()

    async def apply(self, item: Posted, now: float) -> Alert | None:
        """Raise, refresh or resolve the alert of one posted label set."""
        runtime = self.runtime
        alert = runtime.book.get_open(item.key, item.rule)
        if item.ends_at is not None and item.ends_at <= now:
            if alert is not None:
                ended = max(item.ends_at, alert.fired_at or alert.started_at)
                await self.resolve(alert, ended, "recovered: its source says it ended")
            return alert  # an end heard of an alert not open here: nothing to tell
        timeout = float(self.config.server.intake_resolve_timeout)
        expires = item.ends_at if item.ends_at is not None else now + timeout
        severity = self.severity_of(item.labels)
        notes = {k: v[:TEXT_LIMIT] for k, v in item.annotations.items()}
        runbook = notes.get("runbook_url") or notes.get("runbook") or None
        description = notes.get("description") or None
        external = {"annotations": notes, "generator_url": item.generator_url,
                    "expires_at": expires}  # fmt: skip
        changes: list[AlertChange] = []
        if alert is None:
            if sum(1 for a in runtime.book.open.values() if a.source == SOURCE) >= MAX_OPEN:
                raise IntakeFull(f"{MAX_OPEN} external alerts are open; no room for more")
            started = min(item.starts_at or now, now)
            alert = Alert(
                id=new_alert_id(),
                check=EXTERNAL_CHECK,
                environment=None,
                rule=item.rule,
                severity=severity,
                status="firing",
                summary=summary_of(item),
                started_at=started,
                updated_at=now,
                fired_at=started,
                labels=dict(item.labels),
                runbook=runbook,
                description=description,
                severity_history=[[now, severity]],
                source=SOURCE,
                fingerprint=item.fingerprint,
                external=external,
            )
            runtime.book.add(alert)
            changes.append(AlertChange(alert, "firing"))
        else:
            alert.summary, alert.updated_at = summary_of(item), now
            alert.runbook, alert.description, alert.external = runbook, description, external
            if alert.severity != severity:
                previous, alert.severity = alert.severity, severity
                alert.severity_history.append([now, severity])
                changes.append(AlertChange(alert, "severity", previous))
            else:
                runtime.save_alert(alert)  # its new expiry survives a restart
        await runtime._changed(changes)
        return alert

    async def resolve(self, alert: Alert, at: float, reason: str) -> None:
        """Resolve an external alert at `at`; its notices say `reason`."""
        now = self.runtime.clock.now()
        alert.status, alert.resolved_at, alert.updated_at = "resolved", min(at, now), now
        alert.resolve_reason = reason
        self.runtime.book.close(alert)
        await self.runtime._changed([AlertChange(alert, "resolved")])

    # -- timers ------------------------------------------------------------------------

    async def expire(self, now: float) -> int:
        """Resolve the external alerts not sent again in time; return how many."""
        due = [a for a in self.open_alerts() if (a.external.get("expires_at") or 0) <= now]
        for alert in due:
            expires = float(alert.external.get("expires_at") or now)
            await self.resolve(alert, expires, "not sent again before it expired")
        return len(due)

    async def take_handed_over(self) -> None:
        """Apply the alerts other replicas left in the store for label sets this one owns."""
        store = self.runtime.store
        try:
            docs = await store.get_all(COLLECTION)
        except Exception:
            return
        done = []
        for key, doc in sorted(docs.items(), key=lambda item: item[1].get("at", 0)):
            item = Posted.from_doc(doc)
            if not self.runtime.mine(item.key):
                continue
            try:
                await self.apply(item, self.runtime.clock.now())
            except IntakeFull:
                log.warning("external alert dropped: too many open", extra={"key": item.key})
            done.append(key)
        if done:
            await store.delete(COLLECTION, done)

    def next_expiry(self) -> float | None:
        found = [a.external.get("expires_at") for a in self.open_alerts()]
        return min((float(e) for e in found if e is not None), default=None)

    async def run(self, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        """Resolve expired alerts on time (and take handed-over ones) until cancelled."""
        task_status.started()
        clock = self.runtime.clock
        next_poll = clock.now()
        while True:
            now = clock.now()
            try:
                await self.expire(now)
                if self.runtime.replica is not None and now >= next_poll:
                    await self.take_handed_over()
                    next_poll = now + POLL_INTERVAL
            except Exception:
                log.exception("external alert timer failed")
            upcoming = [next_poll] if self.runtime.replica is not None else []
            expiry = self.next_expiry()
            if expiry is not None:
                upcoming.append(expiry)
            wait = (min(upcoming) - clock.now()) if upcoming else 60.0
            with anyio.move_on_after(max(0.05, min(wait, 60.0))):
                await self._wake.wait()
            self._wake = anyio.Event()
