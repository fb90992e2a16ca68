"""An alert's timeline: what happened to it (held, notified, escalated...), by its id."""

from __future__ import annotations

from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.state.store import Row


class Timeline:
    """Add events to alerts' timelines."""

    def _event(self, alert: Alert, what: str, detail: str = "") -> None:
        self.runtime.writer.append(
            "alert_events",
            Row(key=alert.id, at=self.clock.now(), data={"event": what, "detail": detail}),
        )
