"""The `composite` probe: several other checks failing at once.

A composite never runs: the engine re-judges it when one of its members goes down or comes
back up. Until that first happens it has no result of its own, so what it shows (the
status page, `watchkeeper status`, /api/status, /health) is judged here from its
members' current state: up with "3 of 3 up" while too few are down. The judging is the
engine's (engine/run/composite.py); this module declares the type and its options.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Metric, Probe
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


@hookimpl
def watchkeeper_probes():
    return [CompositeProbe]
