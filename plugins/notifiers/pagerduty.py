"""The `pagerduty` notifier: Events API v2, one event per alert, paired by dedup_key."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.notifier import Notifier
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret

PagerDutySeverity = Literal["critical", "error", "warning", "info"]


class PagerDutyOptions(NotifierOptions):
    """Trigger and resolve PagerDuty incidents."""

    template_names = ("summary",)
    routing_key: Secret = Field(description="Integration (routing) key of the service.")
    url: str = Field("https://events.pagerduty.com/v2/enqueue", description="Events API URL.")
    severity_map: dict[str, PagerDutySeverity] = Field(
        default_factory=lambda: {
            "critical": "critical",
            "high": "error",
            "medium": "warning",
            "warning": "warning",
            "low": "info",
            "info": "info",
        },
        description="watchkeeper severity -> PagerDuty severity.",
    )


class PagerDutyNotifier(Notifier):
    type = "pagerduty"
    Options = PagerDutyOptions
    groups = False


@hookimpl
def watchkeeper_notifiers():
    return [PagerDutyNotifier]
