"""The `env` probe: required settings are present, without ever showing their values."""

from __future__ import annotations

import os

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Metric, Probe, ProbeContext, Result
from watchkeeper.schema.checks import ProbeOptions


class EnvOptions(ProbeOptions):
    """Named environment variables must be set and non-empty."""

    require: list[str] = Field(min_length=1, description="Variable names that must be set.")


class EnvProbe(Probe):
    """Check that required environment variables are set, never reading their values."""

    type = "env"
    Options = EnvOptions
    scope = "host"
    metrics = (Metric("missing", "count", "variables unset or blank"),)

    async def check(self, options: EnvOptions, ctx: ProbeContext) -> Result:
        # names only: a value, even a wrong one, may be a credential
        missing = [name for name in options.require if not os.environ.get(name, "").strip()]
        metrics = {"missing": float(len(missing))}
        if missing:
            noun = "variable" if len(missing) == 1 else "variables"
            return Result(
                ok=False,
                message=f"missing or empty environment {noun}: {', '.join(missing)}",
                metrics=metrics,
            )
        count = len(options.require)
        noun = "variable is" if count == 1 else "variables are"
        return Result(ok=True, message=f"{count} required {noun} set", metrics=metrics)


@hookimpl
def watchkeeper_probes():
    return [EnvProbe]
