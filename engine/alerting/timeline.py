"""An alert's timeline: what happened to it (held, notified, escalated...), by its id."""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.state.store import Row


def alert_event(runtime: Any, alert: Alert, what: str, detail: str = "") -> None:
    """Add an event to an alert's timeline."""
    runtime.writer.append(
        "alert_events",
        Row(key=alert.id, at=runtime.clock.now(), data={"event": what, "detail": detail}),
    )
