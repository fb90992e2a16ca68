"""The `smtp` probe: greeting, EHLO, STARTTLS and optionally AUTH of an SMTP server."""

from __future__ import annotations

import socket
import ssl
from typing import Any

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import OpenContext, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import TlsContexts, time_budget
from watchkeeper.plugins.probes.mail import METRICS, MailOptions, MailSession, Refused, check_mail


class SmtpOptions(MailOptions):
    """Talk to an SMTP server up to (optionally) AUTH, then QUIT."""

    port: int | None = Field(
        None, ge=1, le=65535, description="TCP port (default: 25, or 465 with `tls: implicit`)."
    )


class SmtpProbe(Probe):
    """Greet an SMTP server, upgrade to TLS, optionally log in, and quit."""

    type = "smtp"
    Options = SmtpOptions
    metrics = METRICS

    def __init__(self) -> None:
        self.tls = TlsContexts()

    async def open(self, ctx: OpenContext) -> None:
        # load the system's CA store now, not inside the first check's timeout
        await self.tls.get()

    async def check(self, options: SmtpOptions, ctx: ProbeContext) -> Result:
        session = _SmtpSession(time_budget(ctx.timeout))
        return await check_mail(session, options, ctx, self.tls, (25, 465))


class _SmtpSession(MailSession):
    """SMTP through aiosmtplib, on a socket connected here so that the connect is timed."""

    protocol = "SMTP"
    starttls_command = "STARTTLS"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.host = ""
        self.sock: socket.socket | None = None
        self.client: Any = None
        self.implicit: tuple[ssl.SSLContext, str] | None = None

    async def connect(self, host: str, port: int) -> None:
        self.host = host
        self.sock = await _connect(host, port)

    async def start_tls(self, context: ssl.SSLContext, server_name: str) -> None:
        import aiosmtplib

        if self.client is None:
            # implicit TLS: aiosmtplib shakes hands as it opens the session, then reads
            # the greeting
            self.implicit = (context, server_name)
            await self._open()
            return
        # aiosmtplib sends STARTTLS and shakes hands in one call
        try:
            await self.client.starttls(server_hostname=server_name, tls_context=context)
        except aiosmtplib.SMTPResponseException as exc:
            raise Refused(f"answered STARTTLS with {exc.code} {exc.message}") from None

    async def greeting(self) -> None:
        if self.client is None:
            await self._open()

    async def _open(self) -> None:
        import aiosmtplib

        assert self.sock is not None
        # an address literal is a valid EHLO argument whatever this host is called (and
        # looking the name up could block)
        local = self.sock.getsockname()[0]
        literal = f"[IPv6:{local}]" if ":" in local else f"[{local}]"
        context, server_name = self.implicit or (None, self.host)
        self.client = aiosmtplib.SMTP(
            hostname=server_name,
            sock=self.sock,
            use_tls=self.implicit is not None,
            start_tls=False,
            tls_context=context,
            local_hostname=literal,
            timeout=self.timeout,
        )
        try:
            await self.client.connect()
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise Refused(f"greeted with {exc.code} {exc.message}") from None
        finally:
            self.sock = None  # the client owns it now

    async def capabilities(self) -> set[str]:
        import aiosmtplib

        try:
            await self.client.ehlo()
        except aiosmtplib.SMTPHeloError as exc:
            raise Refused(f"answered EHLO with {exc.code} {exc.message}") from None
        return {name.upper() for name in self.client.esmtp_extensions}

    def offers_starttls(self, capabilities: set[str]) -> bool:
        return "STARTTLS" in capabilities

    async def starttls(self) -> None:
        pass  # sent by start_tls, with the handshake

    async def login(self, username: str, password: str, capabilities: set[str]) -> None:
        import aiosmtplib

        if "AUTH" not in capabilities:
            hint = "" if self.ssl_object() is not None else " without TLS"
            raise Refused(f"does not offer AUTH{hint}, so cannot log in as {username!r}")
        try:
            await self.client.login(username, password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            # what the server says about the credentials is not repeated: its code is enough
            raise Refused(
                f"refused the login as {username!r}: authentication failed ({exc.code})"
            ) from None
        except aiosmtplib.SMTPException as exc:
            raise Refused(f"cannot log in as {username!r}: {exc}") from None

    async def quit(self) -> None:
        import aiosmtplib

        try:
            await self.client.quit()
        except aiosmtplib.SMTPResponseException as exc:
            raise Refused(f"answered QUIT with {exc.code} {exc.message}") from None

    def ssl_object(self) -> Any:
        transport = self.client.transport if self.client is not None else None
        return transport.get_extra_info("ssl_object") if transport is not None else None

    async def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.sock is not None:
            self.sock.close()


async def _connect(host: str, port: int) -> socket.socket:
    """Connect a non-blocking socket to the first address of host that accepts."""
    import asyncio

    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    failure: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise failure or OSError(f"no address for {host}")


@hookimpl
def watchkeeper_probes():
    return [SmtpProbe]
