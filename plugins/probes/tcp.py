"""The `tcp` probe: can a port be connected to, and how fast."""

from __future__ import annotations

import re
import time

from pydantic import Field, model_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Metric, Probe, ProbeContext, Result
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import Size, format_duration


class TcpOptions(ProbeOptions):
    """Open a TCP connection (optionally TLS) and optionally read a banner."""

    host: str = Field(description="Host name or address.")
    port: int = Field(ge=1, le=65535, description="TCP port.")
    tls: bool = Field(False, description="Complete a TLS handshake after connecting.")
    send: str | None = Field(None, description="Text to send after connecting.")
    expect_regex: str | None = Field(
        None, description="A regular expression the first bytes received must match."
    )
    verify: bool = Field(
        True, description="With tls: verify the certificate chain and the host name."
    )
    ca_bundle: str | None = Field(
        None, description="With tls: PEM file of CA certificates to trust (default: the system's)."
    )
    server_name: str | None = Field(
        None, description="With tls: name sent as SNI and verified (default: host)."
    )
    read_limit: Size = Field(
        65536, description="With expect_regex: read at most this much before giving up."
    )

    @model_validator(mode="after")
    def _valid_regex(self) -> TcpOptions:
        if self.expect_regex is not None:
            try:
                re.compile(self.expect_regex)
            except re.error as exc:
                raise ValueError(f"expect_regex is not a valid regular expression: {exc}") from None
        return self


class TcpProbe(Probe):
    """Connect, optionally complete a TLS handshake and match what the server sends."""

    type = "tcp"
    Options = TcpOptions
    metrics = (
        Metric("connect_time", "duration", "TCP connect"),
        Metric("tls_time", "duration", "the TLS handshake (with `tls: true`)"),
        Metric(
            "response_time",
            "duration",
            "from sending `send` (or connecting) to the match (with `expect_regex`)",
        ),
        Metric(
            "certificate_expiry",
            "duration",
            "until the server certificate's `notAfter` (with `tls: true`)",
        ),
    )

    def __init__(self) -> None:
        # the http probe's module (and what it imports) is loaded when a probe is made to
        # run checks, not when `watchkeeper validate` reads the options
        from watchkeeper.plugins.probes.http import TlsContexts

        self.tls = TlsContexts()

    async def check(self, options: TcpOptions, ctx: ProbeContext) -> Result:
        import anyio

        from watchkeeper.plugins.probes.http import network_reason, time_budget, took

        target = _target(options.host, options.port)
        after = format_duration(ctx.timeout)
        deadline = time.perf_counter() + time_budget(ctx.timeout)
        metrics: dict[str, float] = {}
        start = time.perf_counter()
        try:
            with anyio.fail_after(_left(deadline)):
                stream = await anyio.connect_tcp(options.host, options.port)
        except TimeoutError:
            return Result(
                ok=False,
                message=f"timed out after {after} connecting to {target}",
                details={"timeout": True},
            )
        except OSError as exc:
            reason = network_reason(exc) or str(exc)
            return Result(ok=False, message=f"cannot connect to {target}: {reason}")
        metrics["connect_time"] = time.perf_counter() - start
        try:
            if options.tls:
                stream, failure = await self._handshake(stream, options, ctx, deadline, metrics)
                if failure:
                    return _failed(failure, metrics)
            if options.send is not None:
                await stream.send(options.send.encode())
            if options.expect_regex is not None:
                failure = await _expect(stream, options, ctx, deadline, metrics)
                if failure:
                    return _failed(failure, metrics)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            reason = network_reason(exc) or "connection closed"
            return Result(
                ok=False, message=f"connection to {target} failed: {reason}", metrics=metrics
            )
        finally:
            await anyio.aclose_forcefully(stream)
        message = f"connected to {target} in {took(metrics['connect_time'])}"
        if options.tls:
            message += f", TLS in {took(metrics['tls_time'])}"
        return Result(ok=True, message=message, metrics=metrics)

    async def _handshake(
        self,
        stream,
        options: TcpOptions,
        ctx: ProbeContext,
        deadline: float,
        metrics: dict[str, float],
    ):
        import ssl

        import anyio
        from anyio.streams.tls import TLSAttribute, TLSStream

        from watchkeeper.plugins.probes.http import certificate_expiry, network_reason

        target = _target(options.host, options.port)
        try:
            context = await self.tls.get(
                verify=options.verify,
                ca_bundle=None if options.ca_bundle is None else ctx.base_dir / options.ca_bundle,
            )
        except (OSError, ssl.SSLError) as exc:
            return stream, f"cannot load the CA bundle for {target}: {exc}"
        start = time.perf_counter()
        try:
            with anyio.fail_after(_left(deadline)):
                stream = await TLSStream.wrap(
                    stream,
                    hostname=options.server_name or options.host,
                    ssl_context=context,
                    standard_compatible=False,
                )
        except TimeoutError:
            after = format_duration(ctx.timeout)
            return stream, f"timed out after {after} in the TLS handshake with {target}"
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or str(exc)
            return stream, f"TLS certificate of {target} is not trusted: {reason}"
        except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as exc:
            reason = getattr(exc, "reason", None) or network_reason(exc) or "connection closed"
            return stream, f"TLS handshake with {target} failed: {reason}"
        metrics["tls_time"] = time.perf_counter() - start
        expiry = certificate_expiry(stream.extra(TLSAttribute.ssl_object))
        if expiry is not None:
            metrics["certificate_expiry"] = expiry
        return stream, None


async def _expect(
    stream, options: TcpOptions, ctx: ProbeContext, deadline: float, metrics: dict[str, float]
) -> str | None:
    """Read until expect_regex matches; return why it did not, or None."""
    import anyio

    pattern = re.compile(options.expect_regex or "")
    received = b""
    why = "the connection closed"
    start = time.perf_counter()
    with anyio.move_on_after(_left(deadline)) as scope:
        while len(received) < options.read_limit:
            try:
                received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
            if pattern.search(received[: options.read_limit].decode("utf-8", errors="replace")):
                metrics["response_time"] = time.perf_counter() - start
                return None
        else:
            why = f"read {options.read_limit} bytes"
    if scope.cancelled_caught:
        why = f"timed out after {format_duration(ctx.timeout)}"
    text = received[:120].decode("utf-8", errors="replace")
    shown = repr(text) + ("…" if len(received) > 120 else "")
    what = f"received {shown}" if received else "received nothing"
    target = _target(options.host, options.port)
    return f"no match for /{options.expect_regex}/ from {target} ({why}; {what})"


def _failed(message: str, metrics: dict[str, float]) -> Result:
    details = {"timeout": True} if "timed out after" in message else {}
    return Result(ok=False, message=message, metrics=metrics, details=details)


def _left(deadline: float) -> float:
    return max(deadline - time.perf_counter(), 0.0)


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@hookimpl
def watchkeeper_probes():
    return [TcpProbe]
