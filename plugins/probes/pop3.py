"""The `pop3` probe: greeting, CAPA, STLS and optionally USER/PASS of a POP3 server."""

from __future__ import annotations

import re

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import OpenContext, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import TlsContexts
from watchkeeper.plugins.probes.mail import (
    METRICS,
    LineSession,
    MailOptions,
    Refused,
    check_mail,
    quote,
)


class Pop3Options(MailOptions):
    """Talk to a POP3 server up to (optionally) USER/PASS, then QUIT."""

    port: int | None = Field(
        None, ge=1, le=65535, description="TCP port (default: 110, or 995 with `tls: implicit`)."
    )


class Pop3Probe(Probe):
    """Greet a POP3 server, upgrade to TLS, optionally log in, and quit."""

    type = "pop3"
    Options = Pop3Options
    metrics = METRICS

    def __init__(self) -> None:
        self.tls = TlsContexts()

    async def open(self, ctx: OpenContext) -> None:
        # load the system's CA store now, not inside the first check's timeout
        await self.tls.get()

    async def check(self, options: Pop3Options, ctx: ProbeContext) -> Result:
        return await check_mail(_Pop3Session(), options, ctx, self.tls, (110, 995))


# RFC 2449 and RFC 3206 response codes: `-ERR [AUTH] ...`
_CODE = re.compile(r"^-ERR \[([A-Z/-]+)\]", re.IGNORECASE)
_LOGIN_CODES = {
    "AUTH": "authentication failed",
    "SYS/TEMP": "a temporary failure on the server",
    "SYS/PERM": "a permanent failure on the server",
    "IN-USE": "the mailbox is in use",
    "LOGIN-DELAY": "logging in again too soon",
}


class _Pop3Session(LineSession):
    """RFC 1939 and RFC 2595's few commands a health check needs: CAPA, STLS, USER/PASS, QUIT."""

    protocol = "POP3"
    starttls_command = "STLS"

    async def greeting(self) -> None:
        line = await self.line()
        if not line.startswith("+OK"):
            raise Refused(f"greeted with {quote(line)}")

    async def capabilities(self) -> set[str]:
        await self.send("CAPA")
        line = await self.line()
        if not line.startswith("+OK"):
            return set()  # CAPA is an extension (RFC 2449): a server may not know it
        capabilities = set()
        while (line := await self.line()) != ".":
            if line.strip():
                capabilities.add(line.split()[0].upper())
        return capabilities

    def offers_starttls(self, capabilities: set[str]) -> bool:
        return "STLS" in capabilities

    async def starttls(self) -> None:
        await self.send("STLS")
        line = await self.line()
        if not line.startswith("+OK"):
            raise Refused(f"answered STLS with {quote(line)}")

    async def login(self, username: str, password: str, capabilities: set[str]) -> None:
        if any(c in value for value in (username, password) for c in "\r\n\0"):
            raise Refused("cannot be sent a username or password with a line break")
        await self.send(f"USER {username}")
        line = await self.line()
        if line.startswith("+OK"):
            await self.send(f"PASS {password}")
            line = await self.line()
            if line.startswith("+OK"):
                return
        # what the server says about the credentials is not repeated, only its code
        code = _CODE.match(line)
        reason = _LOGIN_CODES.get(code.group(1).upper(), code.group(1)) if code else "-ERR"
        raise Refused(f"refused the login as {username!r}: {reason}")

    async def quit(self) -> None:
        await self.send("QUIT")
        line = await self.line()
        if not line.startswith("+OK"):
            raise Refused(f"answered QUIT with {quote(line)}")


@hookimpl
def watchkeeper_probes():
    return [Pop3Probe]
