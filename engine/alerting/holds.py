"""Holds: whether an alert may be notified now, and if not, why.

An alert is *held* (not notified) while a parent it depends on is down, while a mute
window or a silence covers it, or (threshold alerts) while its own check is down; an SLO
burn-rate alert, while its check's own alerts speak for the outage. Held alerts are
notified when the hold ends if they still fire (DESIGN.md Semantics ► Notification).
"""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.run.evaluate import UP

RELEASE_INTERVAL = 30.0
INTERNAL_CHECK = "watchkeeper"  # the check of the daemon's own alerts (`Runtime.condition`)


class Holds:
    """Why an alert is held: dependencies, its check down, SLO cover, windows, silences.

    `held` names the firing alerts that wait for their hold to end; `silences` are those
    in force (the inbox reloads them from the store).
    """

    def __init__(self, runtime: Any, maintenance: Any = None):
        self.runtime = runtime
        self.maintenance = maintenance
        self.held: set[str] = set()
        self.silences: dict[str, Any] = {}
        # check instance -> when its last alert resolved (or was discarded): SLO burn-rate
        # alerts about it stay covered a while after (`_slo_cover`)
        self._check_resolved: dict[str, float] = {}

    @property
    def config(self) -> Any:
        return self.runtime.config

    def check_resolved(self, instance: str, at: float) -> None:
        """A check instance's last alert resolved (or was discarded) at `at`."""
        self._check_resolved[instance] = at

    def alert_fields(self, alert: Alert) -> dict[str, Any]:
        return {
            "check": alert.check,
            "environment": alert.environment,
            "rule": alert.rule,
            "severity": alert.severity,
            "instance": alert.instance,
            "labels": alert.labels,
        }

    def hold_reason(self, alert: Alert, at: float) -> str | None:
        """Return why an alert must not be notified now, or None."""
        instance = self.runtime.instances.get(alert.instance)
        if instance is not None:
            for parent in instance.depends_on:
                if self.runtime.instance_down(parent):
                    return f"blocked by {parent}"
            if alert.rule != UP and self.runtime.instance_down(alert.instance):
                return f"{alert.instance} is down"
        covered = self._slo_cover(alert)
        if covered is not None:
            return covered
        if self.maintenance is not None and alert.check != INTERNAL_CHECK:
            window = self.maintenance.muted(at, alert.check, alert.environment, alert.labels)
            if window is not None:
                return f"maintenance {window.name}"
        if self.silences:
            from watchkeeper.engine.alerting.silences import silenced_by

            silence = silenced_by(self.silences.values(), self.alert_fields(alert), at)
            if silence is not None:
                return f"silenced ({silence.id}: {silence.reason})"
        return None

    def _slo_cover(self, alert: Alert) -> str | None:
        """Hold an SLO burn-rate alert behind its check's own alerts: one outage, one page.

        It is held like a dependent while an alert of that check instance is open (pending
        or firing), and after the last one resolves until an SLO evaluation made more than
        COVER_WINDOW later still finds the budget burning; only then is it notified.
        """
        if alert.source != "internal" or not alert.check.startswith("slo:"):
            return None
        from watchkeeper.engine.reports.slo import COVER_WINDOW, covered_instance

        key = covered_instance(self.config, alert)
        if key is None:
            return None
        for other in self.runtime.book.open_for(key):
            if other.source == "check":
                return f"covered by {key}'s alert"
        resolved = self._check_resolved.get(key)
        if resolved is not None and alert.updated_at <= resolved + COVER_WINDOW:
            return f"covered by {key}'s alert (resolved; the burn must outlast it)"
        return None

    async def rehold(self, now: float) -> None:
        """Mark firing alerts that a window starting now covers as held (shown as muted)."""
        for alert in list(self.runtime.book.open.values()):
            if alert.status != "firing" or alert.id in self.held:
                continue
            reason = self.hold_reason(alert, now)
            if reason is not None:
                alert.held = reason
                self.held.add(alert.id)
                self.runtime.save_alert(alert)
