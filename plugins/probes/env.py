"""The `env` probe: required settings are present, without ever showing their values."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.probe import Probe
from watchkeeper.schema.checks import ProbeOptions


class EnvOptions(ProbeOptions):
    """Named environment variables must be set and non-empty."""

    require: list[str] = Field(min_length=1, description="Variable names that must be set.")


class EnvProbe(Probe):
    """Metrics: missing (count)."""

    type = "env"
    Options = EnvOptions
    scope = "host"


@hookimpl
def watchkeeper_probes():
    return [EnvProbe]
