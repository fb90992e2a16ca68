"""One mail-server check, shared by the `smtp`, `imap` and `pop3` probes.

Each protocol supplies a `MailSession` (connect, greeting, capabilities, STARTTLS, login,
quit); `check_mail` runs its steps in order, times them and turns every way they can
fail into a one-line message. This module is not a plugin of its own.
"""

from __future__ import annotations

import datetime as dt
import ssl
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from watchkeeper.engine.run.probe import Metric, ProbeContext, Result
from watchkeeper.plugins.probes.http import (
    TlsContexts,
    certificate_expiry,
    network_reason,
    time_budget,
    took,
)
from watchkeeper.plugins.probes.tls import CERTIFICATE_EXPIRY, expiry_phrase
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration

TlsMode = Literal["none", "starttls", "implicit"]

METRICS = (
    Metric("connect_time", "duration", "TCP connect"),
    Metric(
        "handshake_time",
        "duration",
        "from connected to ready: greeting, capabilities and, with TLS, the TLS handshake "
        "(and STARTTLS); login not included",
    ),
    CERTIFICATE_EXPIRY,
)


class MailOptions(ProbeOptions):
    """Keys every mail probe has; each probe names its own default ports."""

    host: str = Field(description="Host name or address of the mail server.")
    port: int | None = Field(None, ge=1, le=65535, description="TCP port.")
    tls: TlsMode = Field(
        "starttls",
        description="`starttls`: upgrade the plain connection (down when the server does not "
        "offer it); `implicit`: TLS from the first byte; `none`: no TLS.",
    )
    verify: bool = Field(
        True, description="With TLS: verify the certificate chain and the host name."
    )
    ca_bundle: str | None = Field(
        None, description="With TLS: PEM file of CA certificates to trust (default: the system's)."
    )
    username: str | None = Field(None, description="Log in as this user (with `password`).")
    password: Secret | None = Field(None, description="Password for `username`.")

    @model_validator(mode="after")
    def _login_needs_both(self) -> MailOptions:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both, or neither")
        return self


class Refused(Exception):
    """The server answered, but not as a healthy one does; the message says how."""


class MailSession(ABC):
    """One connection to a mail server, step by step; failures raise `Refused` or OSError."""

    protocol: ClassVar[str]  # SMTP, IMAP, POP3
    starttls_command: ClassVar[str]  # STARTTLS, STLS

    @abstractmethod
    async def connect(self, host: str, port: int) -> None:
        """Open the TCP connection."""

    @abstractmethod
    async def start_tls(self, context: ssl.SSLContext, server_name: str) -> None:
        """Complete a TLS handshake on the connection (implicit TLS, or after STARTTLS)."""

    @abstractmethod
    async def greeting(self) -> None:
        """Read the server's greeting; raise Refused unless it is a welcome."""

    @abstractmethod
    async def capabilities(self) -> set[str]:
        """Ask for the server's capabilities (EHLO, CAPABILITY, CAPA), upper case."""

    @abstractmethod
    def offers_starttls(self, capabilities: set[str]) -> bool:
        """Return whether the capabilities include STARTTLS."""

    @abstractmethod
    async def starttls(self) -> None:
        """Send STARTTLS (STLS) and read the go-ahead; the handshake is `start_tls`."""

    @abstractmethod
    async def login(self, username: str, password: str, capabilities: set[str]) -> None:
        """Log in; raise Refused when the server refuses."""

    @abstractmethod
    async def quit(self) -> None:
        """Say goodbye (QUIT, LOGOUT) and read the answer."""

    @abstractmethod
    def ssl_object(self) -> Any:
        """Return the TLS session's ssl object, or None without TLS."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection at once."""


async def check_mail(
    session: MailSession,
    options: MailOptions,
    ctx: ProbeContext,
    contexts: TlsContexts,
    ports: tuple[int, int],
) -> Result:
    """Connect, read the greeting and capabilities, upgrade to TLS, log in and quit.

    `ports` are the protocol's default ports without and with implicit TLS.
    """
    import anyio

    # the budget starts now: building a TLS context may take a moment of it
    deadline = time.perf_counter() + time_budget(ctx.timeout)
    port = options.port or ports[options.tls == "implicit"]
    target = _target(options.host, port)
    context = None
    if options.tls != "none":
        ca_bundle = None if options.ca_bundle is None else ctx.base_dir / options.ca_bundle
        try:
            context = await contexts.get(verify=options.verify, ca_bundle=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            return Result(ok=False, message=f"cannot load the CA bundle {options.ca_bundle}: {exc}")
    metrics: dict[str, float] = {}
    version = None
    step = "connecting to"
    try:
        with anyio.fail_after(max(deadline - time.perf_counter(), 0.0)):
            start = time.perf_counter()
            await session.connect(options.host, port)
            metrics["connect_time"] = time.perf_counter() - start
            start = time.perf_counter()
            if context is not None and options.tls == "implicit":
                step = "in the TLS handshake with"
                await session.start_tls(context, options.host)
            step = "waiting for the greeting from"
            await session.greeting()
            step = "waiting for the capabilities of"
            capabilities = await session.capabilities()
            if context is not None and options.tls == "starttls":
                if not session.offers_starttls(capabilities):
                    raise Refused(
                        f"does not offer {session.starttls_command}; set `tls: none` to "
                        "check it without TLS, or `tls: implicit` for its TLS port"
                    )
                step = f"waiting for the answer to {session.starttls_command} from"
                await session.starttls()
                step = "in the TLS handshake with"
                await session.start_tls(context, options.host)
                step = "waiting for the capabilities of"
                capabilities = await session.capabilities()
            metrics["handshake_time"] = time.perf_counter() - start
            ssl_object = session.ssl_object()
            version = ssl_object.version() if ssl_object is not None else None
            expiry = certificate_expiry(ssl_object)
            if expiry is not None:
                metrics["certificate_expiry"] = expiry
            if options.username is not None and options.password is not None:
                step = "logging in to"
                password = options.password.get_secret_value()
                await session.login(options.username, password, capabilities)
            step = "quitting"
            await session.quit()
    except TimeoutError:
        message = f"timed out after {format_duration(ctx.timeout)} {step} {target}"
        return Result(ok=False, message=message, metrics=metrics, details={"timeout": True})
    except Refused as exc:
        return Result(ok=False, message=f"{session.protocol} {target} {exc}", metrics=metrics)
    except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.IncompleteRead) as exc:
        return Result(ok=False, message=_broken(exc, step, target), metrics=metrics)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            await session.close()
    message = _ready(session.protocol, options, target, version, metrics)
    return Result(ok=True, message=message, metrics=metrics)


def _broken(exc: BaseException, step: str, target: str) -> str:
    """Say why the connection failed: refused, a TLS failure, or closed by the server."""
    cause = _ssl_error(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or cause.reason or str(cause)
        return f"TLS certificate of {target} is not trusted: {reason}"
    if cause is not None:
        return f"TLS handshake with {target} failed: {cause.reason or cause}"
    reason = network_reason(exc)
    if step == "connecting to":
        return f"cannot connect to {target}: {reason or exc}"
    return f"{reason or 'the server closed the connection'} {step} {target}"


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        current = current.__cause__ or current.__context__
    return None


_TLS_SHOWN = {"none": "no TLS", "starttls": "STARTTLS", "implicit": "implicit TLS"}


def _ready(
    protocol: str, options: MailOptions, target: str, version: str | None, metrics: dict
) -> str:
    ready = metrics["connect_time"] + metrics["handshake_time"]
    parts = [_TLS_SHOWN[options.tls]]
    if version:
        parts.append(version)
    if options.username is not None:
        parts.append(f"logged in as {options.username}")
    message = f"{protocol} {target} ready in {took(ready)} ({', '.join(parts)})"
    if "certificate_expiry" in metrics:
        seconds = metrics["certificate_expiry"]
        not_after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
        message += "; certificate " + expiry_phrase(seconds, not_after)
    return message


def quote(text: str) -> str:
    """Quote what a server said for a message, at most 120 characters."""
    text = " ".join(text.split())
    return repr(text if len(text) <= 120 else text[:119] + "…")


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LineSession(MailSession):
    """A line protocol over anyio streams (IMAP, POP3): send a line, read lines."""

    def __init__(self) -> None:
        self.stream: Any = None
        self.reader: Any = None

    async def connect(self, host: str, port: int) -> None:
        import anyio
        from anyio.streams.buffered import BufferedByteReceiveStream

        self.stream = await anyio.connect_tcp(host, port)
        self.reader = BufferedByteReceiveStream(self.stream)

    async def start_tls(self, context: ssl.SSLContext, server_name: str) -> None:
        from anyio.streams.buffered import BufferedByteReceiveStream
        from anyio.streams.tls import TLSStream

        # bytes sent before our handshake could be injected into the TLS session (CVE-2011-0411)
        if self.reader.buffer:
            raise Refused(f"sent data after agreeing to {self.starttls_command}")
        self.stream = await TLSStream.wrap(
            self.stream, hostname=server_name, ssl_context=context, standard_compatible=False
        )
        self.reader = BufferedByteReceiveStream(self.stream)

    async def send(self, line: str) -> None:
        await self.stream.send(line.encode() + b"\r\n")

    async def line(self) -> str:
        import anyio

        try:
            raw = await self.reader.receive_until(b"\n", 8192)
        except anyio.DelimiterNotFound:
            raise Refused("sent a line longer than 8192 bytes") from None
        return raw.decode("utf-8", errors="replace").rstrip("\r")

    def ssl_object(self) -> Any:
        from anyio.streams.tls import TLSAttribute

        if self.stream is None:
            return None
        return self.stream.extra(TLSAttribute.ssl_object, None)

    async def close(self) -> None:
        import anyio

        if self.stream is not None:
            await anyio.aclose_forcefully(self.stream)
