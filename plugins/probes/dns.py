"""The `dns` probe: resolve a name and check the answers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.probe import Probe
from watchkeeper.schema.base import ConfigModel
from watchkeeper.schema.checks import ProbeOptions

RecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "SRV", "PTR", "CAA"]


class DnsExpect(ConfigModel):
    """What good answers look like."""

    rcode: str = Field("NOERROR", description="Expected response code (NOERROR, NXDOMAIN...).")
    answers: list[str] | None = Field(None, description="The exact set of answers.")
    contains: list[str] = Field(
        default_factory=list, description="Answers that must be among those returned."
    )
    regex: str | None = Field(None, description="A regular expression every answer must match.")
    min_answers: int | None = Field(None, ge=0, description="At least this many answers.")


class DnsOptions(ProbeOptions):
    """Query a name for a record type against given or the system's resolvers."""

    name: str = Field(description="Name to resolve.")
    record_type: RecordType = Field("A", description="Record type to query.")
    resolvers: list[str] = Field(
        default_factory=list,
        description="Resolver addresses (`ip` or `ip:port`); default: the system's.",
    )
    protocol: Literal["udp", "tcp"] = Field("udp", description="Transport.")
    expect: DnsExpect = Field(default_factory=DnsExpect, description="What good answers look like.")


class DnsProbe(Probe):
    """Metrics: resolution_time, answer_count."""

    type = "dns"
    Options = DnsOptions


@hookimpl
def watchkeeper_probes():
    return [DnsProbe]
