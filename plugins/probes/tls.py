"""The `tls` probe: certificate expiry, chain and hostname of any TLS service."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.probe import Probe
from watchkeeper.schema.checks import ProbeOptions


class TlsOptions(ProbeOptions):
    """Connect to host:port (after STARTTLS if asked) and inspect the certificate."""

    host: str = Field(description="Host to connect to.")
    port: int = Field(443, ge=1, le=65535, description="TCP port.")
    server_name: str | None = Field(
        None, description="Name sent as SNI and matched against the certificate (default: host)."
    )
    starttls: Literal["smtp", "postgres", "imap"] | None = Field(
        None, description="Speak this protocol's STARTTLS before the handshake."
    )
    ca_bundle: str | None = Field(
        None, description="PEM file of CA certificates to trust (default: the system's)."
    )
    require_valid: bool = Field(
        True,
        description="Fail when the chain or hostname does not "
        "verify (metrics are reported either way).",
    )


class TlsProbe(Probe):
    """Metrics: certificate_expiry, chain_valid, hostname_valid, handshake_time."""

    type = "tls"
    Options = TlsOptions


@hookimpl
def watchkeeper_probes():
    return [TlsProbe]
