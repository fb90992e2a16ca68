"""What a self-healing action is: the class contract run by escalation level 1."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from watchkeeper.schema.alerting import ActionOptions


@dataclass(slots=True)
class ActionResult:
    """What an action did; recorded on the alert and shown in later notices."""

    ok: bool
    message: str = ""
    duration: float = 0.0


@dataclass(slots=True)
class ActionContext:
    """What an action gets besides its options."""

    name: str
    """The action's name in monitor.yaml."""
    alert: Any
    """The alert it runs for (engine.alerts.Alert): id, check, environment, rule..."""
    base_dir: Path
    log: logging.Logger
    timeout: float
    config_path: Path | None = None
    """The monitor.yaml the daemon runs (absolute), so a `watchkeeper` command an action
    runs works on the same configuration."""


class Action:
    """Base of action plugins: a `type`, an `Options` model and `run()`."""

    type: ClassVar[str]
    Options: ClassVar[type[ActionOptions]]

    async def run(self, options: Any, ctx: ActionContext) -> ActionResult:
        """Run the action once for an alert and report what happened."""
        raise NotImplementedError(f"action {self.type!r} does not implement run()")
