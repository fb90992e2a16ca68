"""The `system` probe: the host's CPU, memory, swap, disks and load."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.probe import Probe
from watchkeeper.schema.checks import ProbeOptions


class SystemOptions(ProbeOptions):
    """Read resource usage of the host the daemon runs on."""

    disks: list[str] = Field(
        default_factory=lambda: ["/"],
        description="Mount points whose usage is reported as disk_usage{path=...}.",
    )


class SystemProbe(Probe):
    """Metrics: cpu_usage, memory_usage, swap_usage, load1/5/15, disk_usage/disk_free{path}."""

    type = "system"
    Options = SystemOptions
    scope = "host"


@hookimpl
def watchkeeper_probes():
    return [SystemProbe]
