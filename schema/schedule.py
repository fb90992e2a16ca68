"""When things run: `{every: 5m}` or `{cron: "0 2 * * *", timezone: UTC, jitter: 10s}`."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from watchkeeper.schema.base import ConfigModel
from watchkeeper.schema.cron import cron_error, schedule_error, zone_error
from watchkeeper.schema.text import shown
from watchkeeper.schema.units import Duration


def check_cron(expr: str) -> str:
    """Raise ValueError with a person's explanation when a cron expression is invalid."""
    problem = cron_error(expr)
    if problem and problem.startswith("never fires"):
        # valid syntax, but no run to schedule: the daemon would have nothing to wait for
        raise ValueError(f"cron '{shown(expr, 60)}' {problem}")
    if problem:
        raise ValueError(f"invalid cron expression '{shown(expr, 60)}': {problem}")
    return expr


def check_timezone(name: str) -> str:
    """Raise ValueError when a timezone is not an IANA name."""
    problem = zone_error(name)
    if problem:
        raise ValueError(problem)
    return name


CronExpr = Annotated[str, AfterValidator(check_cron)]
TimezoneName = Annotated[str, AfterValidator(check_timezone)]


class CronSpec(ConfigModel):
    """A cron expression in a timezone (used where only cron makes sense)."""

    cron: CronExpr = Field(
        description="Five-field cron expression, classic Unix (Vixie) rules; "
        "`SUN#1` = first Sunday, `L` = last day of the month."
    )
    timezone: TimezoneName | None = Field(
        None,
        description="IANA timezone the expression is "
        "read in; default: `defaults.timezone`, else UTC.",
    )


class Schedule(ConfigModel):
    """Either a fixed interval (`every`) or a cron expression in a timezone."""

    every: Duration | None = Field(
        None,
        description="Run at this interval, phase-locked "
        "to the check's name so restarts and replicas agree.",
    )
    cron: CronExpr | None = Field(
        None,
        description="Five-field cron expression (classic Unix "
        "rules; `*/5 * * * *`, `0 2 * * SUN#1`).",
    )
    timezone: TimezoneName | None = Field(
        None, description="IANA timezone for `cron`; default: `defaults.timezone`, else UTC."
    )
    jitter: Duration = Field(
        0.0,
        description="Spread runs by up to this much, by a fixed "
        "offset derived from the name (the same on every replica).",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("a schedule needs exactly one of `every` or `cron`")
        if self.every is not None and self.every <= 0:
            raise ValueError("`every` must be longer than 0s")
        # what the timetable refuses to build (`every: 0.0001s`, a jitter of 10,000 years)
        # is refused here, by the same function, so validate and the scheduler agree
        if problem := schedule_error(self):
            raise ValueError(problem)
        if self.every is not None and self.jitter >= self.every:
            raise ValueError("`jitter` must be shorter than `every`")
        return self
