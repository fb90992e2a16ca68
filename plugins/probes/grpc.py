"""The `grpc` probe: the standard gRPC health check, `grpc.health.v1.Health/Check`."""

from __future__ import annotations

import re
import ssl
import time
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.run.probe import Metric, OpenContext, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import time_budget, took
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration

INSTALL = "pip install 'watchkeeper[grpc]'"
_TARGET = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(?P<port>\d{1,5})$")
_METADATA_KEY = re.compile(r"^[a-z0-9_.-]+$")
_REFUSED = re.compile(r"connection refused", re.IGNORECASE)
_TLS_FAILED = re.compile(r"ssl|handshake|certificate|tls|verification", re.IGNORECASE)
# gRPC's UNAVAILABLE details start with its address bookkeeping; the cause comes after
_PREAMBLE = re.compile(r"^failed to connect to all addresses; last error: \w+: (?:ipv[46]:\S+: )?")


class GrpcOptions(ProbeOptions):
    """Ask a gRPC server's health service whether it, or one service, is serving."""

    target: str = Field(description="host:port of the gRPC server.")
    service: str = Field(
        "", description="Service name to ask about; empty (the default): the whole server."
    )
    tls: bool = Field(False, description="Connect with TLS.")
    verify: bool = Field(True, description="With tls: verify the certificate chain and name.")
    ca_bundle: str | None = Field(
        None, description="With tls: PEM file of CA certificates to trust (default: the system's)."
    )
    server_name: str | None = Field(
        None, description="With tls: name sent as SNI and verified (default: the target's host)."
    )
    client_cert: str | None = Field(
        None, description="With tls: PEM client certificate (mutual TLS)."
    )
    client_key: str | None = Field(None, description="With tls: PEM key of the client certificate.")
    metadata: dict[str, Secret] = Field(
        default_factory=dict,
        description="Metadata sent with the call, e.g. authorization (values are secret).",
    )

    @field_validator("target")
    @classmethod
    def _host_port(cls, value: str) -> str:
        match = _TARGET.match(value)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ValueError("expected host:port, e.g. api.internal:50051 or [::1]:50051")
        return value

    @field_validator("metadata")
    @classmethod
    def _keys(cls, value: dict[str, Secret]) -> dict[str, Secret]:
        for key in value:
            if not _METADATA_KEY.match(key) or key.endswith("-bin"):
                raise ValueError(
                    f"metadata key {key!r}: use lower-case letters, digits, `-`, `_` and `.` "
                    "(binary `-bin` keys are not supported)"
                )
        return value

    @model_validator(mode="after")
    def _tls_keys(self) -> GrpcOptions:
        if not self.tls:
            given = [
                key
                for key in ("ca_bundle", "server_name", "client_cert", "client_key")
                if getattr(self, key) is not None
            ]
            if given or not self.verify:
                given = given or ["verify"]
                raise ValueError(f"`{'`, `'.join(given)}` needs `tls: true`")
        if not self.verify and self.ca_bundle is not None:
            raise ValueError("give either `ca_bundle` or `verify: false`, not both")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("`client_key` needs `client_cert`")
        if self.client_cert is not None and self.client_key is None:
            raise ValueError("`client_cert` needs `client_key`")
        return self


class GrpcProbe(Probe):
    """Call grpc.health.v1.Health/Check; SERVING is good."""

    type = "grpc"
    Options = GrpcOptions
    metrics = (
        Metric(
            "response_time",
            "duration",
            "from starting the call (connecting and TLS included) to the health status",
        ),
    )

    async def open(self, ctx: OpenContext) -> None:
        # import now, not inside the first check's timeout; a missing extra is reported there
        try:
            _grpc()
        except ImportError:
            pass

    async def check(self, options: GrpcOptions, ctx: ProbeContext) -> Result:
        import anyio

        try:
            grpc, health_pb2, health_pb2_grpc = _grpc()
        except ImportError:
            return Result(ok=False, message=f"the grpc probe needs grpcio: {INSTALL}")
        target = options.target
        what = f"service {options.service!r}" if options.service else "the server"
        metadata = tuple((k, v.get_secret_value()) for k, v in options.metadata.items())
        secrets = [value for _, value in metadata if value]
        budget = time_budget(ctx.timeout)
        deadline = time.perf_counter() + budget
        channel_options: list[tuple[str, Any]] = [("grpc.enable_retries", 0)]
        try:
            if options.tls:
                credentials, name = await _credentials(grpc, options, ctx, deadline)
                if name:
                    channel_options.append(("grpc.ssl_target_name_override", name))
                channel = grpc.aio.secure_channel(target, credentials, channel_options)
            else:
                channel = grpc.aio.insecure_channel(target, channel_options)
        except _Failed as exc:
            return Result(ok=False, message=str(exc), details=exc.details)
        start = time.perf_counter()
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=options.service)
            call = stub.Check(
                request,
                timeout=max(deadline - time.perf_counter(), 0.001),
                metadata=metadata or None,
                wait_for_ready=False,
            )
            response = await _finished(call)
            elapsed = time.perf_counter() - start
        except grpc.aio.AioRpcError as exc:
            elapsed = time.perf_counter() - start
            return _failed(grpc, exc, target, what, elapsed, ctx.timeout, secrets)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await channel.close()
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        metrics = {"response_time": elapsed}
        details = {"status": status, "service": options.service}
        if status == "SERVING":
            message = f"{target}: {what} is SERVING ({took(elapsed)})"
            return Result(ok=True, message=message, metrics=metrics, details=details)
        if status == "SERVICE_UNKNOWN":
            message = f"{target} does not know {what} (SERVICE_UNKNOWN)"
        else:
            message = f"{target}: {what} is {status}"
        return Result(ok=False, message=message, metrics=metrics, details=details)


class _Failed(Exception):
    """A run that cannot start; its message is the result's."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@cache
def _grpc() -> tuple[Any, Any, Any]:
    import os

    # gRPC's core logs every failed handshake to stderr; the result already says it
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    import grpc
    import grpc.aio
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    return grpc, health_pb2, health_pb2_grpc


async def _finished(call: Any) -> Any:
    """Await a gRPC call so that a cancellation from outside stays the canceller's.

    Awaiting the call itself lets gRPC turn the cancellation into a plain CancelledError
    of its own, which anyio then cannot tell from one meant for the whole task.
    """
    import anyio

    done = anyio.Event()
    call.add_done_callback(lambda _: done.set())
    try:
        await done.wait()
    finally:
        if not call.done():
            call.cancel()
    return await call


def _failed(
    grpc: Any,
    exc: Any,
    target: str,
    what: str,
    elapsed: float,
    timeout: float,
    secrets: list[str],
) -> Result:
    code = exc.code()
    text = " ".join((exc.details() or "").split())
    for secret in secrets:
        text = text.replace(secret, MASK)
    details: dict[str, Any] = {"code": code.name}
    metrics: dict[str, float] = {}
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        after = format_duration(timeout)
        details["timeout"] = True
        return Result(
            ok=False,
            message=f"timed out after {after} waiting for the health status from {target}",
            details=details,
        )
    if code is grpc.StatusCode.UNAVAILABLE:
        text = _PREAMBLE.sub("", text)
        if _REFUSED.search(text):
            message = f"cannot connect to {target}: connection refused (UNAVAILABLE)"
        elif _TLS_FAILED.search(text):
            message = f"TLS handshake with {target} failed (UNAVAILABLE): {_short(text)}"
        else:
            message = f"{target} is unavailable (UNAVAILABLE): {_short(text)}"
        return Result(ok=False, message=message, details=details)
    # the server answered: the time it took is worth keeping
    metrics["response_time"] = elapsed
    if code is grpc.StatusCode.UNIMPLEMENTED:
        message = f"{target} has no health service (UNIMPLEMENTED)"
    elif code is grpc.StatusCode.NOT_FOUND:
        # Health/Check answers an unknown service with NOT_FOUND (Watch says SERVICE_UNKNOWN)
        message = f"{target} does not know {what} (SERVICE_UNKNOWN: NOT_FOUND)"
    else:
        message = f"health check of {target} failed: {code.name}" + (
            f": {_short(text)}" if text else ""
        )
    return Result(ok=False, message=message, metrics=metrics, details=details)


async def _credentials(
    grpc: Any, options: GrpcOptions, ctx: ProbeContext, deadline: float
) -> tuple[Any, str | None]:
    """Return the channel's TLS credentials and the name to verify (None: the target's host)."""
    import anyio

    def read(value: str | None) -> bytes | None:
        return None if value is None else (ctx.base_dir / Path(value).expanduser()).read_bytes()

    try:
        roots, cert, key = await anyio.to_thread.run_sync(
            lambda: (read(options.ca_bundle), read(options.client_cert), read(options.client_key))
        )
    except OSError as exc:
        raise _Failed(f"cannot load TLS files for {options.target}: {exc}") from None
    name = options.server_name
    if not options.verify:
        # gRPC always verifies: trust the certificate the server presents, under its own name
        roots, name = await _presented(options, deadline, ctx.timeout)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key, certificate_chain=cert
    )
    return credentials, name


async def _presented(options: GrpcOptions, deadline: float, timeout: float) -> tuple[bytes, str]:
    """Fetch the server's certificate without verifying it; return it (PEM) and a name in it."""
    import anyio
    from anyio.streams.tls import TLSAttribute, TLSStream

    from watchkeeper.plugins.probes.tls import _decode

    host, _, port = options.target.rpartition(":")
    host = host.strip("[]")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with anyio.fail_after(max(deadline - time.perf_counter(), 0.0)):
            stream = await anyio.connect_tcp(host, int(port))
            try:
                stream = await TLSStream.wrap(
                    stream,
                    hostname=options.server_name or host,
                    ssl_context=context,
                    standard_compatible=False,
                )
                der = stream.extra(TLSAttribute.ssl_object).getpeercert(binary_form=True)
            finally:
                await anyio.aclose_forcefully(stream)
    except TimeoutError:
        after = format_duration(timeout)
        message = f"timed out after {after} in the TLS handshake with {options.target}"
        raise _Failed(message, {"timeout": True}) from None
    except (OSError, ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        from watchkeeper.plugins.probes.http import network_reason

        reason = network_reason(exc) or getattr(exc, "reason", None) or "the connection closed"
        if isinstance(exc, ConnectionRefusedError) or reason == "connection refused":
            raise _Failed(f"cannot connect to {options.target}: connection refused") from None
        raise _Failed(f"TLS handshake with {options.target} failed: {reason}") from None
    if not der:
        raise _Failed(f"{options.target} presented no TLS certificate")
    cert = _decode(der) or {}
    names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    common = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    name = next(iter(names + common), options.server_name or host)
    return ssl.DER_cert_to_PEM_cert(der).encode(), name


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


@hookimpl
def watchkeeper_probes():
    return [GrpcProbe]
