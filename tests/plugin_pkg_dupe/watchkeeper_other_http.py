"""A plugin whose probe type clashes with the built-in `http` probe."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Probe
from watchkeeper.schema.checks import ProbeOptions


class OtherHttpOptions(ProbeOptions):
    """Another take on requesting a URL."""

    url: str = Field(description="URL to request.")


class OtherHttpProbe(Probe):
    type = "http"
    Options = OtherHttpOptions


@hookimpl
def watchkeeper_probes():
    return [OtherHttpProbe]
