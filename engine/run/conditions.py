"""Alerts that no probe produces: a failing notifier, a backup, an SLO, raised or cleared
by the part of the daemon that knows.

A condition another replica answers for is handed to it through the store. Part of
`Runtime` (runtime.py).
"""

from __future__ import annotations

from watchkeeper.engine.alerting.alerts import Alert, AlertChange


class RuntimeConditions:
    """Conditions raised and cleared as alerts, through the same path as a check's.

    A part of `Runtime`, which supplies the clock, alert book, state writer and
    ownership (`mine`) used here.
    """

    async def condition(
        self,
        rule: str,
        *,
        active: bool,
        severity: str,
        summary: str,
        check: str = "watchkeeper",
        environment: str | None = None,
        labels: dict[str, str] | None = None,
        runbook: str | None = None,
        replica: str | None = None,
    ) -> Alert | None:
        """Raise or clear an alert that no probe produces (a failing notifier, a backup...).

        It goes through the same holds, routes and escalation as a check's alerts.
        """
        from watchkeeper.engine.alerting.alerts import new_alert_id
        from watchkeeper.engine.config.instances import instance_key

        now = self.clock.now()
        key = instance_key(check, environment) + (f"~{replica}" if replica else "")
        if not self.mine(key):
            # another replica answers for this condition: hand it over through the store
            self.writer.put(
                "conditions",
                f"{key}|{rule}",
                {
                    "rule": rule,
                    "active": active,
                    "severity": severity,
                    "summary": summary,
                    "check": check,
                    "environment": environment,
                    "labels": labels or {},
                    "runbook": runbook,
                    "at": now,
                },
            )
            return None
        alert = self.book.get_open(key, rule)
        changes: list[AlertChange] = []
        if active and alert is None:
            alert = Alert(
                id=new_alert_id(),
                check=check,
                environment=environment,
                rule=rule,
                severity=severity,
                status="firing",
                summary=summary,
                started_at=now,
                updated_at=now,
                fired_at=now,
                labels=dict(labels or {}),
                runbook=runbook,
                severity_history=[[now, severity]],
                source="internal",
                replica=replica,
            )
            self.book.add(alert)
            changes.append(AlertChange(alert, "firing"))
        elif active and alert is not None:
            alert.summary, alert.updated_at = summary, now
            if alert.severity != severity:
                previous, alert.severity = alert.severity, severity
                changes.append(AlertChange(alert, "severity", previous))
            else:
                self.save_alert(alert)
        elif not active and alert is not None:
            alert.status, alert.resolved_at, alert.updated_at = "resolved", now, now
            alert.resolve_reason = summary
            self.book.close(alert)
            changes.append(AlertChange(alert, "resolved"))
        await self._changed(changes)
        return alert
