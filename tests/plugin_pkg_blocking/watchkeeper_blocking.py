"""A `blocking` probe: sleeps without awaiting, so nothing else on its event loop runs."""

from __future__ import annotations

import time

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Probe, Result
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import Duration


class BlockingOptions(ProbeOptions):
    """Block the event loop for a while."""

    seconds: Duration = Field(60.0, description="How long to block.")


class BlockingProbe(Probe):
    type = "blocking"
    Options = BlockingOptions

    async def check(self, options: BlockingOptions, ctx) -> Result:
        time.sleep(options.seconds)  # the mistake this probe exists to make  # noqa: ASYNC251
        return Result(ok=True)


@hookimpl
def watchkeeper_probes():
    return [BlockingProbe]
