"""What a self-healing action gets besides its options: the alert, where, how long."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class ActionContext:
    """One run of one action for one alert."""

    name: str
    """The action's name in monitor.yaml (`restart-app`)."""
    alert: Any | None
    """The alert it runs for (`engine.alerts.Alert` or a `NoticeAlert`), or None."""
    base_dir: Path
    """The folder of monitor.yaml: a relative `cwd` is relative to it."""
    log: logging.Logger
    timeout: float
    """Seconds the run may take; the action stops itself (and its children) after them."""

    def alert_fields(self) -> dict[str, str]:
        """Return the alert's fields by name (id, check, environment, rule, severity, summary)."""
        alert = self.alert
        if alert is None:
            return {}
        found = {
            key: getattr(alert, key, None)
            for key in ("id", "check", "environment", "rule", "severity", "summary", "status")
        }
        return {key: str(value) for key, value in found.items() if value is not None}
