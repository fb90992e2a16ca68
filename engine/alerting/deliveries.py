"""What the outbox reports back: a notice delivered, or a receiver given up on."""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.alerting.escalation import Escalation
from watchkeeper.engine.alerting.holds import INTERNAL_CHECK
from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.engine.alerting.outbox import Delivery
from watchkeeper.engine.alerting.timeline import alert_event


class Deliveries:
    """A delivered notice starts escalation clocks; a receiver that keeps failing alerts.

    `delivered` and `gave_up` are the outbox's `on_sent` and `on_gave_up` callbacks.
    """

    def __init__(self, runtime: Any, escalation: Escalation):
        self.runtime = runtime
        self.escalation = escalation
        self.clock = runtime.clock
        self.replica: str | None = None  # set when daemons share the store

    @property
    def config(self) -> Any:
        return self.runtime.config

    async def delivered(self, delivery: Delivery, notice: Notice) -> None:
        """Start escalation clocks when an alert's first notice is actually delivered, and
        move them to another policy when its first notice at a new severity is."""
        if notice.kind != "alert" or notice.escalation is not None:
            return
        now = self.clock.now()
        for item in notice.alerts:
            alert = self.runtime.book.by_id.get(item.id)
            if alert is None or alert.status != "firing" or item.status != "firing":
                continue
            if item.change == "acknowledged":
                continue  # says nothing new about the alert
            changed = False
            if alert.notified_at is None:
                alert.notified_at = now
                alert_event(self.runtime, alert, "notified", delivery.notifier)
                changed = True
            if self.escalation.follow_route(alert, notice.route, item.severity, now):
                changed = True
            if changed:
                self.runtime.save_alert(alert)
        key = INTERNAL_CHECK + (f"~{self.replica}" if self.replica else "")
        internal = self.runtime.book.get_open(key, f"notifier:{delivery.notifier}")
        if internal is not None:
            await self.runtime.condition(
                f"notifier:{delivery.notifier}",
                active=False,
                severity=internal.severity,
                summary="delivering again",
                replica=self.replica,
            )

    async def gave_up(self, delivery: Delivery) -> None:
        """A receiver kept failing: alert through the other routes."""
        await self.runtime.condition(
            f"notifier:{delivery.notifier}",
            active=True,
            severity=self.config.severities[0],
            summary=f"notifier {delivery.notifier} failed to deliver a notice for "
            f"{delivery.attempts} attempts: {delivery.last_error}",
            labels={"failing_notifier": delivery.notifier},
            replica=self.replica,  # each replica reports its own failed deliveries
        )
