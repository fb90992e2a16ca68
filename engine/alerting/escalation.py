"""Escalation and acknowledgement.

A policy's clock starts when an alert's first notice is actually delivered; a level runs
when the clock reaches its `after` while the alert fires unacknowledged. A severity change
routes the alert again: the routes it meets now give it their policy (which starts with
its first notice at that severity), or stop the running one when they have none. Whoever
an escalation level told hears the resolution; those tracking incidents themselves
(PagerDuty) hear the acknowledgement (DESIGN.md Semantics ► Escalation).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from watchkeeper.engine.alerting.alert_notices import AlertNotices, notice_alert
from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.alerting.groups import Group, Grouping
from watchkeeper.engine.alerting.holds import RELEASE_INTERVAL, Holds
from watchkeeper.engine.alerting.outbox import Outbox
from watchkeeper.engine.alerting.timeline import alert_event

log = logging.getLogger("watchkeeper.alerting")


class Escalation:
    """Run escalation levels, follow the routes' policies, and take acknowledgements.

    An alert's escalation state lives on the alert (`alert.escalation`); `timer(at,
    "escalate", alert_id)` asks the alerting loop to call `escalate` then.
    """

    def __init__(
        self,
        runtime: Any,
        outbox: Outbox,
        grouping: Grouping,
        holds: Holds,
        notices: AlertNotices,
        timer: Callable[[float, str, str], None],
        *,
        actions: Any = None,
    ):
        self.runtime = runtime
        self.outbox = outbox
        self.grouping = grouping
        self.holds = holds
        self.notices = notices
        self.timer = timer
        self.actions = actions
        self.clock = runtime.clock

    @property
    def config(self) -> Any:
        return self.runtime.config

    async def escalate(self, alert_id: str, now: float) -> None:
        """Run an alert's next escalation level if it is due and the alert still fires."""
        alert = self.runtime.book.by_id.get(alert_id)
        if alert is None or alert.status != "firing":
            return
        esc = alert.escalation
        if not esc or esc.get("stopped") or esc.get("next_at") is None or esc["next_at"] > now:
            return
        if alert.acked_at is not None:
            esc["stopped"] = "acknowledged"
            self.runtime.save_alert(alert)
            return
        levels = self.config.escalation.get(esc["policy"]) or []
        index = esc.get("next", 0)
        if index >= len(levels):
            return
        if self.holds.hold_reason(alert, now):
            self.timer(now + RELEASE_INTERVAL, "escalate", alert.id)  # wait for the release
            return
        level = levels[index]
        name = level.name or f"level {index + 1}"
        alert_event(self.runtime, alert, "escalated", name)
        log.warning(
            "alert escalated",
            extra={
                "alert": alert.id,
                "check": alert.instance,
                "policy": esc["policy"],
                "level": name,
            },
        )
        for action_name in level.actions:
            outcome = await self.run_action(action_name, alert, now)
            alert.actions.append(outcome)
        if level.notify:
            notice = self.notices.make(
                [notice_alert(alert, "escalation", name)], None, now, escalation=name
            )
            for notifier in level.notify:
                await self.outbox.enqueue(notifier, notice, group=f"escalation|{alert.id}")
            told = esc.setdefault("told", [])
            told += [n for n in level.notify if n not in told]
        if index + 1 < len(levels):
            esc["next"] = index + 1
            start = esc.get("started_at", alert.notified_at)
            esc["next_at"] = start + levels[index + 1].after  # type: ignore[operator]
        elif level.repeat:
            esc["next_at"] = now + level.repeat
        else:
            esc["next"], esc["next_at"] = index + 1, None
        if esc.get("next_at") is not None:
            self.timer(esc["next_at"], "escalate", alert.id)
        self.runtime.save_alert(alert)

    def follow_route(self, alert: Alert, route: int | None, severity: str, now: float) -> bool:
        """Give the alert the escalation policy of the routes it meets now, when a notice
        at its current severity has reached one of them for the first time: start it
        (the first notice), switch to it (a severity change to a route with another
        policy), or stop the one running (its route has none). True when it changed.

        A policy's clock starts with that notice; its levels already run for this
        incident are not run again, and the levels other policies ran stay run (their
        notifiers hear the acknowledgement and the resolution).
        """
        esc = alert.escalation
        if severity != alert.severity or esc.get("severity") == alert.severity:
            return False  # a notice of a former severity, or this severity is settled
        routes = self.grouping.routes_for(alert)
        if route not in routes:
            return False  # a route it left, hearing the change: not its route now
        esc["severity"] = alert.severity
        if alert.acked_at is not None:
            return True  # acknowledged: nothing starts again for this incident
        policy = next(
            (
                self.config.routes[i].escalate
                for i in routes
                if self.config.routes[i].escalate in self.config.escalation
            ),
            None,
        )
        current = esc.get("policy")
        if policy is None:
            self.stop(alert, f"severity {alert.severity}: its route has no escalation policy")
            return True
        if policy == current and not esc.get("stopped"):
            return True  # the same policy goes on, on its clock
        done = esc.setdefault("done", {})
        if current is not None and current in self.config.escalation:
            done[current] = max(done.get(current, 0), esc.get("next", 0))
        levels = self.config.escalation[policy]
        index = done.get(policy, 0)
        esc.pop("stopped", None)
        esc.update(policy=policy, started_at=now, next=index)
        esc["next_at"] = now + levels[index].after if index < len(levels) else None
        if esc["next_at"] is not None:
            self.timer(esc["next_at"], "escalate", alert.id)
        if current is not None:
            alert_event(
                self.runtime, alert, "escalation policy", f"{policy} (severity {alert.severity})"
            )
            log.warning(
                "escalation policy changed",
                extra={
                    "alert": alert.id,
                    "check": alert.instance,
                    "severity": alert.severity,
                    "policy": policy,
                    "previous": current,
                    "next_level": index + 1,
                },
            )
        return True

    def stop(self, alert: Alert, reason: str) -> None:
        """Stop a running escalation for a reason other than acknowledgement; say so."""
        esc = alert.escalation
        policy = esc.get("policy")
        if policy is None or esc.get("stopped") or esc.get("next_at") is None:
            return  # nothing is running
        done = esc.setdefault("done", {})
        done[policy] = max(done.get(policy, 0), esc.get("next", 0))
        esc["stopped"], esc["next_at"] = reason, None
        self.runtime.save_alert(alert)
        alert_event(self.runtime, alert, "escalation stopped", reason)
        log.warning(
            "escalation stopped",
            extra={"alert": alert.id, "check": alert.instance, "policy": policy, "reason": reason},
        )

    async def resolve(self, alert: Alert, now: float) -> None:
        """Tell the notifiers an escalation level paged that the incident is over (a
        PagerDuty incident opened at level 3 must close too)."""
        routed = self.grouping.told_by_routes(alert)  # they hear it through their group
        for name in (alert.escalation or {}).get("told", []):
            options = self.config.notifiers.get(name)
            if name in routed or options is None or not options.send_resolved:
                continue
            notice = self.notices.make(
                [notice_alert(alert, "resolved")],
                None,
                now,
                escalation=alert.escalation.get("policy"),
            )
            await self.outbox.enqueue(name, notice, group=f"escalation|{alert.id}")

    async def run_action(self, name: str, alert: Alert, now: float) -> dict[str, Any]:
        if self.outbox.dry_run:
            log.info("dry run: action not run", extra={"action": name, "alert": alert.id})
            return {"name": name, "ok": True, "message": "dry run: not run", "at": now}
        if self.actions is None:
            return {"name": name, "ok": False, "message": "actions are not available", "at": now}
        outcome = await self.actions.run(name, alert, now)
        alert_event(self.runtime, alert, "action", f"{name}: {'ok' if outcome['ok'] else 'failed'}")
        return outcome

    async def acknowledge(
        self, alert_id: str, by: str, comment: str | None = None, at: float | None = None
    ) -> Alert | None:
        """Acknowledge an incident: escalation and repeats stop; resolution still notifies."""
        alert = self.runtime.book.by_id.get(alert_id)
        if alert is None or not alert.open or alert.acked_at is not None:
            return alert
        alert.acked_by, alert.acked_at = by, at or self.clock.now()
        alert.ack_comment = comment
        if alert.escalation:
            alert.escalation["stopped"] = "acknowledged"
        self.runtime.save_alert(alert)
        alert_event(self.runtime, alert, "acknowledged", by)
        log.info("alert acknowledged", extra={"alert": alert.id, "check": alert.instance, "by": by})
        # whoever was paged about it and tracks incidents itself (PagerDuty, Sentry) hears
        # of the acknowledgement: route notifiers and escalation levels' alike
        told: dict[str, Group | None] = dict(self.grouping.told_by_routes(alert))
        for name in (alert.escalation or {}).get("told", []):
            told.setdefault(name, None)
        for name, group in told.items():
            options = self.config.notifiers.get(name)
            plugin = options and self.runtime.reg.types["notifier"].get(options.type)
            if plugin is None or getattr(plugin, "groups", True):
                continue
            if alert.labels.get("failing_notifier") == name:
                continue
            item = notice_alert(alert, "acknowledged")
            if group is not None:
                notice = self.notices.make([item], group, alert.acked_at)
                await self.outbox.enqueue(name, notice, group=group.key)
            else:
                policy = alert.escalation.get("policy")
                notice = self.notices.make([item], None, alert.acked_at, escalation=policy)
                await self.outbox.enqueue(name, notice, group=f"escalation|{alert.id}")
        return alert
