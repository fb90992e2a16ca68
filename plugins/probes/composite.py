"""The `composite` probe: several other checks failing at once.

A composite never runs: the engine re-judges it when one of its members goes down or comes
back up. Until that first happens it has no result of its own, so what it shows (the
status page, `watchkeeper status`, /api/status, /health) is judged here from its
members' current state: up with "3 of 3 up" while too few are down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import Field, model_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.probe import Metric, Probe
from watchkeeper.schema.base import ConfigModel
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import Ratio


class Failing(ConfigModel):
    """How many of the checks must be down."""

    at_least: int | None = Field(None, ge=1, description="At least this many are down.")
    ratio: Ratio | None = Field(None, description="At least this share is down, e.g. 50%.")

    @model_validator(mode="after")
    def _one(self) -> Failing:
        if (self.at_least is None) == (self.ratio is None):
            raise ValueError("`failing` needs exactly one of `at_least` or `ratio`")
        return self


class CompositeOptions(ProbeOptions):
    """Down when enough of the listed checks' `up` alerts fire."""

    of: list[str] = Field(min_length=2, description="Checks (or check@environment) watched.")
    failing: Failing = Field(
        default_factory=lambda: Failing(at_least=2), description="How many must be down, default 2."
    )


class CompositeProbe(Probe):
    """Down when enough of its member checks are down; judged by the engine."""

    type = "composite"
    Options = CompositeOptions
    passive = True
    metrics = (
        Metric("failing", "count", "members whose `up` alert fires"),
        Metric("failing_ratio", "ratio", "the same as a share of the members"),
    )


def members_of(instance: Any, instances: Mapping[str, Any]) -> list[str]:
    """Return the member instance keys a composite instance watches.

    `name@env` is that instance; a bare name is the instance of the composite's own
    environment when there is one, else every instance of that check.
    """
    members: list[str] = []
    for name in instance.options.of:
        if "@" in name:
            members.append(name)
            continue
        own = f"{name}@{instance.environment}" if instance.environment else None
        if own is not None and own in instances:
            members.append(own)
        else:
            members.extend(k for k, i in instances.items() if i.check == name)
    return members


def failing(options: CompositeOptions, members: int, down: int) -> bool:
    """True when `down` of `members` is enough for the composite to be down."""
    if options.failing.at_least is not None:
        return down >= options.failing.at_least
    return members > 0 and down / members >= (options.failing.ratio or 1.0)


def judge(
    options: CompositeOptions, members: list[str], down: Iterable[str], unknown: Iterable[str]
) -> tuple[str, str]:
    """Return a composite's (status, message) from its members' state.

    `unknown` members have not reported yet. Status `unknown` only while none has.
    """
    down_set, unknown_set = set(down), set(unknown)
    known = [m for m in members if m not in unknown_set]
    if not known:
        return "unknown", f"none of its {len(members)} checks has run yet"
    failed = [m for m in known if m in down_set]
    message = f"{len(known) - len(failed)} of {len(members)} up"
    if failed:
        message += f"; down: {', '.join(failed)}"
    waiting = [m for m in members if m in unknown_set]
    if waiting:
        message += f"; not run yet: {', '.join(waiting)}"
    return ("down" if failing(options, len(members), len(failed)) else "up"), message


@hookimpl
def watchkeeper_probes():
    return [CompositeProbe]
