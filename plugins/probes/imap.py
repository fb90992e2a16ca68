"""The `imap` probe: greeting, CAPABILITY, STARTTLS and optionally LOGIN of an IMAP server."""

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


class ImapOptions(MailOptions):
    """Talk to an IMAP server up to (optionally) LOGIN, then LOGOUT."""

    port: int | None = Field(
        None, ge=1, le=65535, description="TCP port (default: 143, or 993 with `tls: implicit`)."
    )


class ImapProbe(Probe):
    """Greet an IMAP server, upgrade to TLS, optionally log in, and log out."""

    type = "imap"
    Options = ImapOptions
    metrics = METRICS

    def __init__(self) -> None:
        self.tls = TlsContexts()

    async def open(self, ctx: OpenContext) -> None:
        # load the system's CA store now, not inside the first check's timeout
        await self.tls.get()

    async def check(self, options: ImapOptions, ctx: ProbeContext) -> Result:
        return await check_mail(_ImapSession(), options, ctx, self.tls, (143, 993))


# the response code of a tagged answer: `a3 NO [AUTHENTICATIONFAILED] ...`
_CODE = re.compile(r"\[([A-Z-]+)")
_LOGIN_CODES = {
    "AUTHENTICATIONFAILED": "authentication failed",
    "AUTHORIZATIONFAILED": "not authorised",
    "EXPIRED": "the password has expired",
    "UNAVAILABLE": "the authentication service is unavailable",
    "PRIVACYREQUIRED": "the server requires TLS first",
    "CONTACTADMIN": "the account needs the administrator",
}


class _ImapSession(LineSession):
    """RFC 9051's few commands a health check needs: CAPABILITY, STARTTLS, LOGIN, LOGOUT."""

    protocol = "IMAP"
    starttls_command = "STARTTLS"

    def __init__(self) -> None:
        super().__init__()
        self.tags = 0

    async def greeting(self) -> None:
        line = await self.line()
        if not line.upper().startswith(("* OK", "* PREAUTH")):
            raise Refused(f"greeted with {quote(line)}")

    async def command(self, text: str) -> tuple[list[str], str, str]:
        """Send a tagged command; return (its untagged lines, OK/NO/BAD, the tagged line)."""
        self.tags += 1
        tag = f"a{self.tags:03d}"
        await self.send(f"{tag} {text}")
        untagged = []
        while True:
            line = await self.line()
            if line.startswith("* "):
                if line[2:].upper().startswith("BYE") and not text.startswith("LOGOUT"):
                    raise Refused(f"said {quote(line)}")
                untagged.append(line)
                continue
            if line.startswith("+"):
                raise Refused(f"asked for more after {text.split()[0]} ({quote(line)})")
            head, _, rest = line.partition(" ")
            if head == tag:
                status = rest.split(" ", 1)[0].upper()
                return untagged, status, line

    async def capabilities(self) -> set[str]:
        untagged, status, line = await self.command("CAPABILITY")
        if status != "OK":
            raise Refused(f"answered CAPABILITY with {quote(line)}")
        capabilities: set[str] = set()
        for response in untagged:
            words = response.split()
            if len(words) > 1 and words[1].upper() == "CAPABILITY":
                capabilities.update(word.upper() for word in words[2:])
        return capabilities

    def offers_starttls(self, capabilities: set[str]) -> bool:
        return "STARTTLS" in capabilities

    async def starttls(self) -> None:
        _, status, line = await self.command("STARTTLS")
        if status != "OK":
            raise Refused(f"answered STARTTLS with {quote(line)}")

    async def login(self, username: str, password: str, capabilities: set[str]) -> None:
        if "LOGINDISABLED" in capabilities:
            raise Refused(f"does not allow logging in without TLS (LOGINDISABLED) as {username!r}")
        if any(c in value for value in (username, password) for c in "\r\n\0"):
            raise Refused("cannot be sent a username or password with a line break")
        _, status, line = await self.command(f"LOGIN {_quoted(username)} {_quoted(password)}")
        if status != "OK":
            # what the server says about the credentials is not repeated, only its code
            code = _CODE.search(line.partition(" ")[2])
            reason = _LOGIN_CODES.get(code.group(1), code.group(1)) if code else status
            raise Refused(f"refused the login as {username!r}: {reason}")

    async def quit(self) -> None:
        import anyio

        try:
            await self.command("LOGOUT")
        except anyio.EndOfStream:
            pass  # a server may close as soon as it said BYE


def _quoted(text: str) -> str:
    """An IMAP quoted string (RFC 9051 section 4.3)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@hookimpl
def watchkeeper_probes():
    return [ImapProbe]
