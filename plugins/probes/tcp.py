"""The `tcp` probe: can a port be connected to, and how fast."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.probe import Probe
from watchkeeper.schema.checks import ProbeOptions


class TcpOptions(ProbeOptions):
    """Open a TCP connection (optionally TLS) and optionally read a banner."""

    host: str = Field(description="Host name or address.")
    port: int = Field(ge=1, le=65535, description="TCP port.")
    tls: bool = Field(False, description="Complete a TLS handshake after connecting.")
    send: str | None = Field(None, description="Text to send after connecting.")
    expect_regex: str | None = Field(
        None, description="A regular expression the first bytes received must match."
    )


class TcpProbe(Probe):
    """Metrics: connect_time."""

    type = "tcp"
    Options = TcpOptions


@hookimpl
def watchkeeper_probes():
    return [TcpProbe]
