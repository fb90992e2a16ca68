"""A plugin whose probe options use a type pydantic cannot validate (a plain class)."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Probe, Result
from watchkeeper.schema.checks import ProbeOptions


class Endpoint:
    """Not a pydantic type: no schema can be generated for it."""


class BrokenOptions(ProbeOptions):
    """Options with an unusable field."""

    endpoint: Endpoint = Field(description="Where to probe.")


class BrokenProbe(Probe):
    type = "broken_fake"
    Options = BrokenOptions

    async def check(self, options: BrokenOptions, ctx) -> Result:
        return Result(ok=True)


@hookimpl
def watchkeeper_probes():
    return [BrokenProbe]
