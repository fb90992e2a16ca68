"""Who hears about what: notifier and action basics, routes, escalation, maintenance, tasks."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from watchkeeper.schema.base import ConfigModel, Name, PluginOptions, empty_dict, empty_list
from watchkeeper.schema.cron import jitter_error
from watchkeeper.schema.schedule import CronSpec, Schedule
from watchkeeper.schema.units import Duration


class NotifierOptions(PluginOptions):
    """Keys every notifier has besides its type's own."""

    plugin_kind = "notifier"
    template_names: ClassVar[tuple[str, ...]] = ()  # overridable message templates

    send_resolved: bool = Field(True, description="Also tell this receiver when an alert resolves.")
    templates: dict[str, str] = Field(
        default_factory=empty_dict,
        description="jinja2 templates overriding this notifier's default messages, by name.",
    )
    timeout: Duration = Field(10.0, description="Longest one delivery attempt may take.")
    give_up_after: Duration = Field(
        86400.0,
        description="Retry a failing delivery this long, then alert through the other routes.",
    )
    retry_initial: Duration = Field(
        5.0,
        description="Wait this long before the first retry; each further wait doubles "
        "(with jitter).",
    )
    retry_max: Duration = Field(600.0, description="Longest wait between two attempts.")


class ActionLimit(ConfigModel):
    """Stop an action repeating: at most `runs` within `within`."""

    runs: int = Field(ge=1, description="Most runs allowed within the window.")
    within: Duration = Field(description="The window, e.g. 1h.")


class ActionOptions(PluginOptions):
    """Keys every self-healing action has besides its type's own."""

    plugin_kind = "action"

    timeout: Duration = Field(60.0, description="Longest the action may take.")
    limit: ActionLimit | None = Field(
        None, description="e.g. {runs: 3, within: 1h}: a broken fix is not retried forever."
    )


MIN_REPEAT = 1.0
"""Shortest `repeat`: a shorter one re-sends a notice as fast as the daemon can, and one
below the clock's resolution (`0.0001ms`) comes due again at the instant it was sent."""


def check_span(value: float | None, *, repeat: bool = False) -> float | None:
    """Refuse a timer length the alerting loop cannot wait for: not finite, beyond the
    5-year horizon, or (for a `repeat`) shorter than a second."""
    if value is None:
        return value
    if problem := jitter_error(value):
        raise ValueError(problem)
    if repeat and value < MIN_REPEAT:
        raise ValueError("must be at least 1s (a repeat re-sends the notice each time)")
    return value


class RouteMatch(ConfigModel):
    """What a route matches; every given key must match. `{}` matches everything."""

    severity: str | list[str] | None = Field(
        None, description="One severity, a list, or `>=high` (that severity or a more severe one)."
    )
    check: str | list[str] | None = Field(
        None, description="Check names (shell-style patterns such as `api-*` allowed)."
    )
    environment: str | list[str] | None = Field(None, description="Environment names.")
    rule: str | list[str] | None = Field(
        None,
        description="Rule ids (`up`, a threshold's name or metric; shell-style patterns allowed).",
    )
    labels: dict[str, str] = Field(
        default_factory=empty_dict, description="Labels the check must carry, exactly."
    )
    event: str | list[str] | None = Field(
        None,
        description="Match posted events of this kind (deploy, rollback...) instead of alerts.",
    )
    kind: Literal["alert", "event"] | None = Field(
        None, description="Match only notices of this kind."
    )


class Route(ConfigModel):
    """One routing rule; the first that matches wins unless it says `continue: true`."""

    match: RouteMatch = Field(default_factory=RouteMatch, description="What this route matches.")
    notify: list[Name] = Field(default_factory=empty_list, description="Notifiers to tell.")
    escalate: Name | None = Field(None, description="Escalation policy to start.")
    repeat: Duration | None = Field(
        None, description="Re-notify an unchanged firing group this often until acknowledged."
    )
    group_by: list[str] = Field(
        default_factory=lambda: ["check", "environment"],
        description="Alerts sharing these fields are sent as one "
        "message; [] = one group for the route.",
    )
    group_wait: Duration = Field(
        30.0,
        description="Wait this long before a new group's first message, to gather its members.",
    )
    group_interval: Duration = Field(300.0, description="Send a changed group at most this often.")
    continue_: bool = Field(False, alias="continue", description="Keep matching later routes.")

    @field_validator("group_wait", "group_interval")
    @classmethod
    def _span(cls, value: float) -> float:
        return check_span(value)

    @field_validator("repeat")
    @classmethod
    def _repeat(cls, value: float | None) -> float | None:
        return check_span(value, repeat=True)


class EscalationLevel(ConfigModel):
    """One level: after this long unacknowledged, notify these and run these actions."""

    after: Duration = Field(description="Counted from the alert's first notice actually sent.")
    name: str | None = Field(None, description="Shown in notifications and the timeline.")
    notify: list[Name] = Field(
        default_factory=empty_list, description="Notifiers told at this level."
    )
    actions: list[Name] = Field(
        default_factory=empty_list, description="Self-healing actions run at this level."
    )
    repeat: Duration | None = Field(
        None, description="Last level only: repeat it this often while unacknowledged."
    )

    @field_validator("after")
    @classmethod
    def _span(cls, value: float) -> float:
        return check_span(value)

    @field_validator("repeat")
    @classmethod
    def _repeat(cls, value: float | None) -> float | None:
        return check_span(value, repeat=True)


class Announce(ConfigModel):
    """Post a notice ahead of a maintenance window."""

    before: Duration = Field(description="How long before the start, e.g. 24h.")
    notify: list[Name] = Field(description="Notifiers that receive the announcement.")


class MaintenanceWindow(ConfigModel):
    """A quiet period: recurring (cron + duration) or one-off (start + end)."""

    name: Name = Field(description="Shown in `plan`, `route`, the status page and notices.")
    schedule: CronSpec | None = Field(None, description="When a recurring window starts.")
    duration: Duration | None = Field(None, description="How long a recurring window lasts.")
    start: AwareDatetime | None = Field(
        None, description="One-off window start, ISO-8601 with offset."
    )
    end: AwareDatetime | None = Field(None, description="One-off window end.")
    checks: list[str] = Field(default_factory=empty_list, description="Checks in scope.")
    labels: dict[str, str] = Field(
        default_factory=empty_dict, description="Checks carrying these labels are in scope."
    )
    environments: list[Name] = Field(
        default_factory=empty_list, description="Environments in scope."
    )
    backups: list[Name] = Field(default_factory=empty_list, description="Backup jobs in scope.")
    effect: Literal["mute", "pause"] = Field(
        "mute", description="mute: run and record, notify no one; pause: do not run at all."
    )
    announce: Announce | None = Field(None, description="Post a notice before the start.")
    reason: str | None = Field(None, description="Shown in notices and on the status page.")

    @model_validator(mode="after")
    def _one_kind(self) -> MaintenanceWindow:
        recurring = self.schedule is not None or self.duration is not None
        one_off = self.start is not None or self.end is not None
        if recurring and one_off:
            raise ValueError(
                "a window is either recurring (schedule + duration) or one-off "
                "(start + end), not both"
            )
        if recurring and (self.schedule is None or self.duration is None):
            raise ValueError("a recurring window needs both `schedule` and `duration`")
        if one_off and (self.start is None or self.end is None):
            raise ValueError("a one-off window needs both `start` and `end`")
        if not (recurring or one_off):
            raise ValueError("a window needs `schedule` + `duration` or `start` + `end`")
        return self

    @property
    def scoped(self) -> bool:
        return bool(self.checks or self.labels or self.environments or self.backups)


class ReportSpec(ConfigModel):
    """Attach a report of the last `since` to a task's message."""

    since: Duration = Field(604800.0, description="Period the report covers, e.g. 7d.")


class Task(ConfigModel):
    """A recurring human checklist posted to notifiers on schedule."""

    schedule: Schedule = Field(description="When the checklist is posted.")
    notify: list[Name] = Field(description="Notifiers that receive it.")
    checklist: list[str] = Field(default_factory=empty_list, description="Items to tick off.")
    description: str | None = Field(None, description="Shown above the checklist.")
    report: ReportSpec | None = Field(None, description="Attach an uptime/SLO report.")
